package app_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestConnectErrorDetails: a validation error reaches Connect and gRPC-Web
// clients with the same details as gRPC and REST clients see: ErrorInfo
// {cbkgate, INVALID_ARGUMENT} and a BadRequest naming each bad field.
func TestConnectErrorDetails(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-connect-details"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret))} {
		t.Run(c.String(), func(t *testing.T) {
			for name, st := range map[string]interface {
				Code() codes.Code
				Details() []any
			}{
				"list":   second(c.list(t, &tokenv1.ListRequest{UserId: "a\x01", Limit: -1})),
				"create": second(c.create(t, &tokenv1.CreateRequest{UserId: "a\x01"})),
			} {
				if st == nil || st.Code() != codes.InvalidArgument {
					t.Fatalf("%s: %v, want INVALID_ARGUMENT", name, st)
				}
				d := st.Details()
				if len(d) != 2 {
					t.Fatalf("%s: details %v, want ErrorInfo and BadRequest", name, d)
				}
				info, ok := d[0].(*errdetails.ErrorInfo)
				if !ok || info.GetReason() != "INVALID_ARGUMENT" || info.GetDomain() != "cbkgate" {
					t.Errorf("%s: first detail %v", name, d[0])
				}
				br, ok := d[1].(*errdetails.BadRequest)
				if !ok || len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != "user_id" {
					t.Errorf("%s: second detail %v", name, d[1])
				}
			}
		})
	}
	if n := up.Count(); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
}

func second[A, B any](_ A, b B) B { return b }

// TestConnectHTTP: the Connect routes answer CORS for the headers of the
// Connect and gRPC-Web protocols, expose the status headers to pages, and
// refuse an oversized body without an upstream call.
func TestConnectHTTP(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-connect-http"
	const origin = "https://app.example"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL, gatetest.Args("--cors-origins="+origin))
	route := s.URL() + "/cbkgate.token.v1.TokenService/Create"
	send := func(t *testing.T, method string, body []byte, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(callCtx(t), method, route, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := s.HTTPClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	t.Run("preflight", func(t *testing.T) {
		resp, _ := send(t, http.MethodOptions, nil, map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization, content-type, connect-protocol-version, connect-timeout-ms, grpc-timeout, x-grpc-web, x-user-agent",
		})
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("preflight: HTTP %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-grpc-web", "x-user-agent", "authorization", "content-type"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("Allow-Headers %q lacks %s", allowed, h)
			}
		}
	})

	t.Run("Connect without Connect-Protocol-Version, as curl sends it", func(t *testing.T) {
		resp, body := send(t, http.MethodPost, []byte(`{"user_id":"u-curl","name":"n"}`), map[string]string{
			"Content-Type": "application/json", "Authorization": bearer(secret),
		})
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"token"`)) {
			t.Fatalf("HTTP %d %s", resp.StatusCode, body)
		}
	})

	t.Run("call from the allowed origin", func(t *testing.T) {
		resp, body := send(t, http.MethodPost, []byte(`{"user_id":"u-connect","name":"n"}`), map[string]string{
			"Origin": origin, "Content-Type": "application/json", "Connect-Protocol-Version": "1",
			"Authorization": bearer(secret),
		})
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"token"`)) {
			t.Fatalf("Connect Create: HTTP %d %s", resp.StatusCode, body)
		}
		exposed := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
		for _, h := range []string{"grpc-status", "grpc-message", "grpc-status-details-bin"} {
			if !strings.Contains(exposed, h) {
				t.Errorf("Expose-Headers %q lacks %s", exposed, h)
			}
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		before := up.Count()
		big := `{"user_id":"u","name":"` + strings.Repeat("x", 2<<20) + `"}`
		resp, body := send(t, http.MethodPost, []byte(big), map[string]string{"Content-Type": "application/json", "Authorization": bearer(secret)})
		// A message over the cap: 413, resource_exhausted with
		// ErrorInfo PAYLOAD_TOO_LARGE (Connect would say 429, which reads
		// as "try again later"), never a 2xx or a 404.
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(body, []byte(`"resource_exhausted"`)) ||
			!bytes.Contains(body, []byte(`"PAYLOAD_TOO_LARGE"`)) {
			t.Fatalf("a 2 MiB Connect body: HTTP %d %.300s", resp.StatusCode, body)
		}
		if n := up.Count() - before; n != 0 {
			t.Errorf("%d upstream requests, want none", n)
		}
	})
}

// TestConnectRefusals: a call the HTTP layer refuses before gRPC
// (authentication) reaches Connect and gRPC-Web clients in their own
// protocol with the same status as REST clients get: code, message and
// details; the Connect unary answer is a 401 with the challenge.
func TestConnectRefusals(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-connect-refusals"
	_, up := newEmulator(t, secret)
	keys := writeKeys(t, "key-connect-0123456789")
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys))

	_, want := s.httpCaller("").create(t, &tokenv1.CreateRequest{UserId: "u", Name: "n"})
	if want == nil || want.Code() != codes.Unauthenticated {
		t.Fatalf("REST without a key: %v, want UNAUTHENTICATED", want)
	}
	for _, c := range []*connectCaller{s.connectCaller(""), s.grpcWebCaller(""), s.connectCaller("Bearer wrong-key")} {
		_, got := c.create(t, &tokenv1.CreateRequest{UserId: "u", Name: "n"})
		if got == nil || got.Code() != codes.Unauthenticated {
			t.Errorf("%v: %v, want UNAUTHENTICATED", c, got)
			continue
		}
		if c.authz == "" && (got.Message() != want.Message() || len(got.Details()) != len(want.Details())) {
			t.Errorf("%v: %q %v, want the REST refusal's %q %v", c, got.Message(), got.Details(), want.Message(), want.Details())
		}
		for i, d := range got.Details() {
			if _, ok := d.(error); ok {
				t.Errorf("%v: detail %d does not decode: %v", c, i, d)
			}
		}
	}

	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, s.URL()+"/cbkgate.token.v1.TokenService/Create",
		strings.NewReader(`{"user_id":"u"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" ||
		!bytes.Contains(body, []byte(`"code":"unauthenticated"`)) {
		t.Errorf("Connect unary refusal: HTTP %d, WWW-Authenticate %q, body %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if n := up.Count(); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
}
