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
)

// TestConnectErrorDetails: a validation error reaches Connect and gRPC-Web
// clients with the same details as gRPC and REST clients see: ErrorInfo
// {cbkgate, INVALID_ARGUMENT} and a BadRequest naming each bad field.
func TestConnectErrorDetails(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-connect-details"
	_, count, up := newEmulator(t, secret)
	s := startServer(t, up.URL, nil, nil, nil)
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
	if n := count.count(); n != 0 {
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
	_, count, up := newEmulator(t, secret)
	s := startServer(t, up.URL, []string{"--cors-origins=" + origin}, nil, nil)
	route := s.httpURL + "/cbkgate.token.v1.TokenService/Create"
	send := func(t *testing.T, method string, body []byte, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(callCtx(t), method, route, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := s.httpClient(nil).Do(req)
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
		before := count.count()
		big := `{"user_id":"u","name":"` + strings.Repeat("x", 2<<20) + `"}`
		resp, body := send(t, http.MethodPost, []byte(big), map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("a 2 MiB Connect body was accepted: %s", body)
		}
		if n := count.count() - before; n != 0 {
			t.Errorf("%d upstream requests, want none", n)
		}
	})
}
