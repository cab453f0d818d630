package failtest

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestFaultPassThroughUpstream401: in pass-through mode the caller's own
// ChatBotKit secret goes upstream as is; when ChatBotKit rejects it with 401
// and echoes it in its message, the caller sees UNAUTHENTICATED (HTTP 401
// with WWW-Authenticate: Bearer realm="cbkgate", for List too) with ErrorInfo, the list is not retried,
// and the secret appears neither in the status message nor in cbkgate's
// logs.
func TestFaultPassThroughUpstream401(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.PassThrough())
	reject := fu.Error(401, "NOT_AUTHENTICATED", "invalid secret "+g.bearer)
	up.SetDefault(fu.List, reject)
	up.SetDefault(fu.Create, reject)

	_, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	st := wantCode(t, err, codes.Unauthenticated)
	gatetest.WantErrorInfo(t, st, "NOT_AUTHENTICATED", 401)
	if strings.Contains(st.Message(), g.bearer) {
		t.Errorf("status message %q carries the caller's secret", st.Message())
	}
	wantCalls(t, up, fu.List, 1)
	if got := up.Requests()[0].Header.Get("Authorization"); got != "Bearer "+g.bearer {
		t.Errorf("upstream Authorization %q, want the caller's bearer", got)
	}

	res := g.do(g.ctx(), http.MethodPost, "/v1/users/u1/tokens", `{"name":"n"}`)
	if res.status != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") != `Bearer realm="cbkgate"` {
		t.Errorf("HTTP: %d, WWW-Authenticate %q; want 401, Bearer", res.status, res.header.Get("WWW-Authenticate"))
	}
	if strings.Contains(string(res.body), g.bearer) {
		t.Errorf("HTTP body carries the caller's secret: %s", res.body)
	}
	wantCalls(t, up, fu.Create, 1)

	// A List refused upstream before its first token carries the same
	// challenge as every other 401.
	res = g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
	if wa := res.header.Values("WWW-Authenticate"); res.status != http.StatusUnauthorized || len(wa) != 1 || wa[0] != `Bearer realm="cbkgate"` {
		t.Errorf("HTTP List: %d, WWW-Authenticate %q; want 401 and exactly one Bearer realm=\"cbkgate\"", res.status, wa)
	}
	wantCalls(t, up, fu.List, 2)
	if strings.Contains(g.Logs().String(), g.bearer) {
		t.Error("cbkgate logged the caller's secret")
	}
}
