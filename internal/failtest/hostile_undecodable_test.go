package failtest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestHostileUndecodableMessage: a request message that is not protobuf
// (here a length that runs past the end) was answered on every surface by
// grpc-go itself: INTERNAL with "proto: cannot parse invalid wire-format
// data" as its message, HTTP 500 over Connect, an ERROR call line, and for
// a unary call no call line or audit line at all. Now it is INVALID_ARGUMENT
// with ErrorInfo on the gRPC port, gRPC-Web and Connect, unary and
// streaming, for a caller with a key and a grant that cannot judge a
// request without a user_id; a caller without a valid key is still told
// UNAUTHENTICATED. Nothing goes upstream.
func TestHostileUndecodableMessage(t *testing.T) {
	dir := t.TempDir()
	const key = "sk-undecodable-0123456789abcdef"
	keyFile, grantsFile := filepath.Join(dir, "keys"), filepath.Join(dir, "grants")
	if err := os.WriteFile(keyFile, []byte("signup "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grantsFile, []byte("key:signup create,list acme-*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.Args("--api-keys-file="+keyFile, "--grants-file="+grantsFile))
	grpcPort := grpcPortClient()
	notProto := []byte{0x0a, 0xff} // field 1, a length of 255 with no bytes after it

	type surface struct {
		name, method string
		httpStatus   int
		send         func(authz string) rpcResult
	}
	var surfaces []surface
	for _, method := range []string{"Create", "List"} {
		surfaces = append(surfaces,
			surface{"gRPC port " + method, method, http.StatusOK, func(authz string) rpcResult {
				// A content-subtype grpc-go has no codec for used to log a
				// grpc-go warning on each call as well.
				return g.postGRPCPort(grpcPort, method, map[string]string{"Authorization": authz, "Content-Type": "application/grpc+xml"}, envelope(0, notProto))
			}},
			surface{"gRPC-Web " + method, method, http.StatusOK, func(authz string) rpcResult {
				return g.postRPC(method, map[string]string{"Authorization": authz, "Content-Type": "application/grpc-web+proto"}, envelope(0, notProto))
			}},
		)
	}
	surfaces = append(surfaces,
		surface{"Connect unary", "Create", http.StatusBadRequest, func(authz string) rpcResult {
			return g.postRPC("Create", map[string]string{"Authorization": authz, "Content-Type": "application/proto"}, notProto)
		}},
		surface{"Connect streaming", "List", http.StatusOK, func(authz string) rpcResult {
			return g.postRPC("List", map[string]string{"Authorization": authz, "Content-Type": "application/connect+proto"}, envelope(0, notProto))
		}},
	)

	for _, s := range surfaces {
		before, beforeGRPC := g.Logs().String(), grpcLogs.Lines()
		res := s.send("Bearer " + key)
		if res.status != s.httpStatus {
			t.Errorf("%s: HTTP %d, want %d: %.300s", s.name, res.status, s.httpStatus, res.body)
		}
		if res.st == nil || res.st.Code() != codes.InvalidArgument || !ownReason(res.st, "INVALID_ARGUMENT") {
			t.Errorf("%s: %v (ErrorInfo %v), want INVALID_ARGUMENT with ErrorInfo INVALID_ARGUMENT in domain cbkgate", s.name, res.st, gatetest.ErrorInfo(res.st))
		} else if msg := res.st.Message(); strings.Contains(msg, "proto:") || strings.Contains(msg, "grpc:") {
			t.Errorf("%s: the message carries a library's error text: %q", s.name, msg)
		}
		lines := strings.TrimPrefix(g.Logs().String(), before)
		call := `"method":"/cbkgate.token.v1.TokenService/` + s.method + `","code":"InvalidArgument"`
		if !strings.Contains(lines, call) || strings.Contains(lines, `"level":"ERROR"`) {
			t.Errorf("%s: want one INFO call line with code InvalidArgument, got:\n%s", s.name, lines)
		}
		if s.method == "Create" && !strings.Contains(lines, `"msg":"audit","action":"token.create"`) {
			t.Errorf("%s: no audit line for the refused create:\n%s", s.name, lines)
		}
		if n := grpcLogs.Lines() - beforeGRPC; n != 0 {
			t.Errorf("%s: grpc-go logged %d lines:\n%s", s.name, n, grpcLogs.String())
		}

		res = s.send("Bearer sk-not-a-key-0123456789abcdef")
		if res.st == nil || res.st.Code() != codes.Unauthenticated {
			t.Errorf("%s without a valid key: %v, want UNAUTHENTICATED", s.name, res.st)
		}
	}
	wantCalls(t, up, fu.List, 0)
	wantCalls(t, up, fu.Create, 0)
}
