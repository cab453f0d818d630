package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// routesFrom lists the routes of up's requests from the seq-th (1-based) on.
func routesFrom(up *fu.Server, seq int) []fu.Route {
	var out []fu.Route
	for _, r := range up.Requests() {
		if r.Seq >= seq {
			out = append(out, r.Route)
		}
	}
	return out
}

// An Update that sets meta keeps the cbkgate.* markers of a token made by
// a Create with a request_id, on every surface (ChatBotKit, and so the
// emulator, replaces meta whole): it reads the listing, then updates. One
// without meta sends the update alone. Each writes one audit line, and
// no line holds the secret.
func TestUpdateMetaKeepsMarkersOnEverySurface(t *testing.T) {
	_, up := newEmulator(t, "held")
	s := startServer(t, up.URL, gatetest.Held("held"))
	g, h := s.grpcCaller(""), s.httpCaller("")
	created, st := g.create(t, &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "marked-1",
		Meta: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(1)}}})
	if st.Code() != codes.OK {
		t.Fatal(st)
	}
	metaOf := func() map[string]*structpb.Value {
		t.Helper()
		got, st := g.list(t, &tokenv1.ListRequest{UserId: "u1"})
		if st.Code() != codes.OK || len(got) != 1 || got[0].GetToken().GetId() != created.GetId() {
			t.Fatalf("listing: %v %v", got, st)
		}
		return got[0].GetToken().GetMeta().GetFields()
	}
	markers := metaOf()
	attempt := markers["cbkgate.attempt"].GetStringValue()
	if attempt == "" || markers["cbkgate.request_id"].GetStringValue() != "marked-1" {
		t.Fatalf("the created token's meta: %v", markers)
	}
	// Each update answers its HTTP status (200 when OK) and its body.
	updates := []struct {
		via    string
		update func() (int, string)
	}{
		{"grpc", func() (int, string) {
			_, st := g.update(t, &tokenv1.UpdateRequest{UserId: "u1", TokenId: created.GetId(),
				Meta: &structpb.Struct{Fields: map[string]*structpb.Value{"via": structpb.NewStringValue("grpc")}}})
			return runtime.HTTPStatusFromCode(st.Code()), st.String()
		}},
		{"gateway", func() (int, string) {
			resp, b := h.do(t, http.MethodPatch, tokenPath("u1", created.GetId()), []byte(`{"meta":{"via":"gateway"}}`))
			return resp.StatusCode, string(b)
		}},
		{"connect", func() (int, string) {
			code, _, b := post(t, s, "/cbkgate.token.v1.TokenService/Update", "application/json",
				`{"userId":"u1","tokenId":"`+created.GetId()+`","meta":{"via":"connect"}}`)
			return code, string(b)
		}},
	}
	for _, u := range updates {
		from := up.Count() + 1
		if code, b := u.update(); code != http.StatusOK {
			t.Fatalf("update over %s: %d %s", u.via, code, b)
		}
		if got := routesFrom(up, from); len(got) != 2 || got[0] != fu.List || got[1] != fu.Update {
			t.Fatalf("an update with meta over %s sent %v upstream, want [list update]", u.via, got)
		}
		m := metaOf()
		if len(m) != 3 || m["via"].GetStringValue() != u.via ||
			m["cbkgate.request_id"].GetStringValue() != "marked-1" || m["cbkgate.attempt"].GetStringValue() != attempt {
			t.Fatalf("meta after the update over %s: %v", u.via, m)
		}
	}
	from := up.Count() + 1
	if resp, b := h.do(t, http.MethodPatch, tokenPath("u1", created.GetId()), []byte(`{"name":"renamed"}`)); resp.StatusCode != http.StatusOK {
		t.Fatalf("update without meta: %d %s", resp.StatusCode, b)
	}
	if got := routesFrom(up, from); len(got) != 1 || got[0] != fu.Update {
		t.Fatalf("an update without meta sent %v upstream, want [update]", got)
	}
	audits := 0
	for _, l := range s.Logs().JSON(t) {
		if l["msg"] == "audit" && l["action"] == "token.update" {
			audits++
			if l["token_id"] != created.GetId() || l["code"] != "OK" {
				t.Errorf("audit line: %v", l)
			}
		}
	}
	if audits != len(updates)+1 {
		t.Fatalf("%d token.update audit lines, want %d", audits, len(updates)+1)
	}
	if strings.Contains(s.Logs().String(), created.GetToken()) {
		t.Fatal("the token's secret was logged")
	}
}

// At --caller-rate=1 (a burst of 2) an Update with meta spends both
// requests of the burst, its lookup's and its update's: the next unary
// call is RATE_LIMITED and reaches no upstream.
func TestUpdateMetaLookupCountsAgainstCallerRate(t *testing.T) {
	emu, up := newEmulator(t, "held")
	emu.Seed("u1", 1)
	s := startServer(t, up.URL, gatetest.Held("held"), gatetest.Args("--caller-rate=1"))
	g := s.grpcCaller("")
	// The token's id, from the emulator itself: a List through cbkgate
	// would spend the caller's rate.
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, up.URL+"/v1/partner/user/u1/token/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer held")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Items []struct{ ID string } }
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("the emulator's listing: %v %v", page, err)
	}
	id := page.Items[0].ID

	n := up.Count()
	if _, st := g.update(t, &tokenv1.UpdateRequest{UserId: "u1", TokenId: id,
		Meta: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewBoolValue(true)}}}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	_, st := g.delete(t, &tokenv1.DeleteRequest{UserId: "u1", TokenId: id})
	if ei := gatetest.ErrorInfo(st); st.Code() != codes.ResourceExhausted || ei.GetDomain() != "cbkgate" || ei.GetReason() != "RATE_LIMITED" {
		t.Fatalf("a delete right after an update with meta at --caller-rate=1: %v %v, want RESOURCE_EXHAUSTED RATE_LIMITED", st, ei)
	}
	if got := up.Count() - n; got != 2 {
		t.Fatalf("%d upstream requests, want 2 (the lookup and the update)", got)
	}
}
