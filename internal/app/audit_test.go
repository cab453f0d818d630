package app_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestAuditTrail: every Create, Update and Delete, allowed or refused, over
// either transport and whichever layer refused it, writes exactly one audit
// line with the contract's fields, and never the token's value.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	held := unique("cbk-held-SECRET")
	key := unique("cbkgate-key-SECRET")
	_, up := newEmulator(t, held)
	s := startServer(t, up.URL, gatetest.Held(held), gatetest.Args("--api-keys-file="+writeKeys(t, "auditor "+key)))
	g, h := s.grpcCaller(bearer(key)), s.httpCaller(bearer(key))
	wrongG, wrongH := s.grpcCaller(bearer("wrong-"+key)), s.httpCaller(bearer("wrong-"+key))
	user := "audit-user"

	type want struct {
		action, user, token string
		code                codes.Code
		allowed             bool
	}
	var wants []want
	var minted []string

	c1, st := g.create(t, &tokenv1.CreateRequest{UserId: user, Name: "n"})
	if st != nil {
		t.Fatal(st.Err())
	}
	minted = append(minted, c1.GetToken())
	wants = append(wants, want{"token.create", user, c1.GetId(), codes.OK, true})

	c2, st := h.create(t, &tokenv1.CreateRequest{UserId: user})
	if st != nil {
		t.Fatal(st.Err())
	}
	minted = append(minted, c2.GetToken())
	wants = append(wants, want{"token.create", user, c2.GetId(), codes.OK, true})

	_, st = g.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: c1.GetId(), Name: ptr("m")})
	wantCode(t, "update", st, codes.OK)
	wants = append(wants, want{"token.update", user, c1.GetId(), codes.OK, true})

	_, st = h.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: "tok_unknown", Name: ptr("m")})
	wantCode(t, "update of an unknown token", st, codes.NotFound)
	wants = append(wants, want{"token.update", user, "tok_unknown", codes.NotFound, true})

	// Refused by authentication on the gRPC side, and on the HTTP side
	// before any gRPC call.
	_, st = wrongG.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: c1.GetId()})
	wantCode(t, "gRPC delete, wrong key", st, codes.Unauthenticated)
	wants = append(wants, want{"token.delete", user, c1.GetId(), codes.Unauthenticated, false})
	_, st = wrongH.create(t, &tokenv1.CreateRequest{UserId: user})
	wantCode(t, "HTTP create, wrong key", st, codes.Unauthenticated)
	wants = append(wants, want{"token.create", user, "", codes.Unauthenticated, false})
	_, st = wrongH.delete(t, &tokenv1.DeleteRequest{UserId: "a b", TokenId: c2.GetId()})
	wantCode(t, "HTTP delete, wrong key", st, codes.Unauthenticated)
	wants = append(wants, want{"token.delete", "a b", c2.GetId(), codes.Unauthenticated, false})

	// Refused by validation, and by the HTTP body limit before gRPC.
	_, st = g.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: ".."})
	wantCode(t, "delete with token id ..", st, codes.InvalidArgument)
	wants = append(wants, want{"token.delete", user, "..", codes.InvalidArgument, true})
	resp, _ := h.do(t, http.MethodPatch, tokenPath(user, c2.GetId()), bytes.Repeat([]byte(" "), 2<<20))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized update: HTTP %d, want 413", resp.StatusCode)
	}
	wants = append(wants, want{"token.update", user, c2.GetId(), codes.ResourceExhausted, true})

	_, st = h.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: c2.GetId()})
	wantCode(t, "delete", st, codes.OK)
	wants = append(wants, want{"token.delete", user, c2.GetId(), codes.OK, true})

	// Reads are not audited.
	if _, st := g.list(t, &tokenv1.ListRequest{UserId: user}); st != nil {
		t.Fatal(st.Err())
	}

	var audits []map[string]any
	for _, l := range s.Logs().JSON(t) {
		if l["msg"] == "audit" {
			audits = append(audits, l)
		}
	}
	if len(audits) != len(wants) {
		t.Fatalf("%d audit lines, want %d:\n%s", len(audits), len(wants), s.Logs().String())
	}
	for i, w := range wants {
		a := audits[i]
		for k, v := range map[string]any{"level": "INFO", "action": w.action, "user_id": w.user, "token_id": w.token, "code": w.code.String()} {
			if a[k] != v {
				t.Errorf("audit line %d: %s = %v, want %v (%v)", i, k, a[k], v, a)
			}
		}
		if id, _ := a["request_id"].(string); id == "" {
			t.Errorf("audit line %d without request_id: %v", i, a)
		}
		caller, _ := a["caller"].(string)
		if w.allowed && caller != "key:auditor" {
			t.Errorf("audit line %d of an authenticated call names caller %q, want key:auditor", i, caller)
		}
		if !w.allowed && caller != "unauthenticated" {
			t.Errorf("audit line %d of a refused call names caller %q, want unauthenticated", i, caller)
		}
	}
	all := s.Logs().String()
	for _, secret := range append(minted, key, held) {
		if strings.Contains(all, secret) {
			t.Errorf("the log holds a secret or token value")
		}
	}
}
