package failtest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
)

// hostileIDs are ids the contract accepts that would change the upstream
// route if they were not escaped as one path segment.
var hostileIDs = []string{
	"a/b", "../../admin", "x/../../y", "?take=1000", "#frag", "%2e%2e", "%2F", "a b+c",
	"..;", "...", "\\..\\", "é/ü", "@host", ";list", "token/list", "..%2f",
}

// TestUpstreamIDsOneSegment: every id the contract accepts, however hostile,
// reaches the upstream as exactly the id, in its own path segment, on the
// route the call names: never two segments, another route or a query.
func TestUpstreamIDsOneSegment(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	name := "n"
	for _, id := range hostileIDs {
		if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: id}); err != nil {
			t.Fatalf("List user %q: %v", id, err)
		}
		if _, err := g.Client().Create(g.ctx(), &tokenv1.CreateRequest{UserId: id}); err != nil {
			t.Fatalf("Create user %q: %v", id, err)
		}
		if _, err := g.Client().Update(g.ctx(), &tokenv1.UpdateRequest{UserId: id, TokenId: id, Name: &name}); err != nil {
			t.Fatalf("Update %q: %v", id, err)
		}
		if _, err := g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: id}); err != nil {
			t.Fatalf("Delete token %q: %v", id, err)
		}
	}
	reqs := up.Requests()
	if len(reqs) != 4*len(hostileIDs) {
		t.Fatalf("%d upstream requests, want %d", len(reqs), 4*len(hostileIDs))
	}
	for i, r := range reqs {
		id := hostileIDs[i/4]
		want := []struct {
			route       fu.Route
			user, token string
		}{{fu.List, id, ""}, {fu.Create, id, ""}, {fu.Update, id, id}, {fu.Delete, "u1", id}}[i%4]
		if r.Route != want.route || r.UserID != want.user || r.TokenID != want.token {
			t.Errorf("id %q: upstream got %s %s (route %s, user %q, token %q), want route %s, user %q, token %q",
				id, r.Method, r.EscapedPath, r.Route, r.UserID, r.TokenID, want.route, want.user, want.token)
		}
		if r.Route == fu.List && len(r.Query) > 1 {
			t.Errorf("id %q: list query %v", id, r.Query)
		}
		if r.Header.Get("Authorization") != "Bearer "+heldSecret {
			t.Errorf("id %q: upstream Authorization %q", id, r.Header.Get("Authorization"))
		}
	}
}

// TestUpstreamIDsOverHTTP: through the gateway an id is one URL path
// segment, so it cannot carry "/", but everything else arrives upstream as
// the id, in one segment.
func TestUpstreamIDsOverHTTP(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	for _, id := range []string{"a b+c", "%2e%2e", "..%2f", "?take=1000", "#frag", "é", "...", "@host;x"} {
		path := "/v1/users/" + url.PathEscape(id) + "/tokens/" + url.PathEscape(id)
		res := g.do(g.ctx(), http.MethodDelete, path, "")
		if res.status != http.StatusOK {
			t.Fatalf("DELETE %s: %d %s", path, res.status, res.body)
		}
		r := up.Requests()[len(up.Requests())-1]
		if r.Route != fu.Delete || r.UserID != id || r.TokenID != id {
			t.Errorf("id %q sent as %s: upstream got %s (user %q, token %q)", id, path, r.EscapedPath, r.UserID, r.TokenID)
		}
	}
	// "." and ".." are refused before anything goes upstream.
	for _, id := range []string{".", ".."} {
		_, err := g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: id})
		wantCode(t, err, codes.InvalidArgument)
	}
	wantCalls(t, up, fu.Delete, 8)
}

// TestUpstreamConnectionReuse: calls share one pooled upstream client, so
// sequential calls of every kind, over gRPC and HTTP, reuse one connection.
func TestUpstreamConnectionReuse(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.List, fu.Page("", fu.Tokens("tok_", 3)...))
	name := "n"
	for range 5 {
		if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := g.create(g.ctx()); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Client().Update(g.ctx(), &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Name: &name}); err != nil {
			t.Fatal(err)
		}
		if res := g.do(g.ctx(), http.MethodDelete, "/v1/users/u1/tokens/t1", ""); res.status != http.StatusOK {
			t.Fatalf("HTTP delete: %d", res.status)
		}
	}
	if n := up.Conns(); n != 1 {
		t.Errorf("20 sequential calls used %d upstream connections, want 1", n)
	}
	if !strings.HasPrefix(up.Requests()[0].Header.Get("User-Agent"), "cbkgate/") {
		t.Errorf("User-Agent %q", up.Requests()[0].Header.Get("User-Agent"))
	}
}
