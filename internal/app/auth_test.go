package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// everyRPC runs each RPC once through c and returns the codes by name.
func everyRPC(t *testing.T, c caller) map[string]*status.Status {
	t.Helper()
	out := map[string]*status.Status{}
	_, out["List"] = c.list(t, &tokenv1.ListRequest{UserId: "auth-user"})
	created, st := c.create(t, &tokenv1.CreateRequest{UserId: "auth-user", Name: "n"})
	out["Create"] = st
	id := "tok_does_not_exist"
	if st == nil {
		id = created.GetId()
	}
	_, out["Update"] = c.update(t, &tokenv1.UpdateRequest{UserId: "auth-user", TokenId: id, Name: ptr("m")})
	_, out["Delete"] = c.delete(t, &tokenv1.DeleteRequest{UserId: "auth-user", TokenId: id})
	return out
}

func ptr[T any](v T) *T { return &v }

// wantAll checks that every RPC ended with want; for UNAUTHENTICATED
// refusals by cbkgate itself, the message must not echo the credential.
func wantAll(t *testing.T, what string, got map[string]*status.Status, want codes.Code, credential string) {
	t.Helper()
	for rpc, st := range got {
		if st.Code() != want {
			t.Errorf("%s: %s: %v %q, want %v", what, rpc, st.Code(), st.Message(), want)
		}
		if credential != "" && strings.Contains(st.Message(), credential) {
			t.Errorf("%s: %s: the error message echoes the credential: %q", what, rpc, st.Message())
		}
	}
}

// TestAuthPassThrough: with no held secret each caller's Bearer value goes
// upstream; without one cbkgate refuses before any upstream call; a wrong
// one is refused upstream and comes back as UNAUTHENTICATED with ErrorInfo.
func TestAuthPassThrough(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-passthrough"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)

	transports := []struct {
		name string
		mk   func(authz string) caller
	}{
		{"grpc", func(a string) caller { return s.grpcCaller(a) }},
		{"http", func(a string) caller { return s.httpCaller(a) }},
		{"connect", func(a string) caller { return s.connectCaller(a) }},
		{"grpcweb", func(a string) caller { return s.grpcWebCaller(a) }},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// Missing or malformed: refused by cbkgate, nothing upstream.
			for _, authz := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer two values"} {
				before := up.Count()
				wantAll(t, "authorization "+authz, everyRPC(t, tr.mk(authz)), codes.Unauthenticated, "")
				if n := up.Count() - before; n != 0 {
					t.Errorf("authorization %q: %d upstream requests, want none", authz, n)
				}
			}

			// Wrong secret: upstream refuses; its 401 comes back with ErrorInfo.
			before := up.Count()
			got := everyRPC(t, tr.mk(bearer("not-the-secret")))
			wantAll(t, "wrong secret", got, codes.Unauthenticated, "not-the-secret")
			for rpc, st := range got {
				if st.Code() == codes.Unauthenticated {
					t.Run(rpc, func(t *testing.T) { gatetest.WantErrorInfo(t, st, "NOT_AUTHENTICATED", http.StatusUnauthorized) })
				}
			}
			if n := up.Count() - before; n < 4 {
				t.Errorf("wrong secret: %d upstream requests, want one per call", n)
			}

			wantAll(t, "right secret", everyRPC(t, tr.mk(bearer(secret))), codes.OK, "")
		})
	}

	// Every HTTP 401 carries the one challenge, whoever refused: cbkgate
	// (no bearer) or ChatBotKit (a wrong one), on the JSON API and on the
	// Connect routes alike.
	for _, tc := range []struct{ name, path, contentType, body string }{
		{"JSON create", tokensPath("u"), "application/json", `{"name":"n"}`},
		{"JSON list", tokensPath("u"), "", ""},
		{"Connect create", "/cbkgate.token.v1.TokenService/Create", "application/json", `{"user_id":"u"}`},
	} {
		for _, authz := range []string{"", bearer("not-the-secret")} {
			method := http.MethodPost
			if tc.body == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(callCtx(t), method, s.URL()+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if strings.HasPrefix(tc.path, "/cbkgate.") {
				req.Header.Set("Connect-Protocol-Version", "1")
			}
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			resp, err := s.HTTPClient(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if wa := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(wa) != 1 || wa[0] != `Bearer realm="cbkgate"` {
				t.Errorf("%s with %q: HTTP %d, WWW-Authenticate %q; want 401 and exactly Bearer realm=\"cbkgate\"", tc.name, authz, resp.StatusCode, wa)
			}
		}
	}
}

// TestAuthAPIKeys: with a held secret and --api-keys-file, a listed key
// lets a caller in over either transport; a wrong or missing key, or the
// upstream secret itself, is refused and nothing goes upstream.
func TestAuthAPIKeys(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-apikeys"
	_, up := newEmulator(t, secret)
	keys := writeKeys(t, "key-one-0123456789", "key-two-abcdefghij")
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys))

	cases := []struct {
		name  string
		authz string
		want  codes.Code
	}{
		{"first key", bearer("key-one-0123456789"), codes.OK},
		{"second key, lowercase scheme", "bearer key-two-abcdefghij", codes.OK},
		{"missing", "", codes.Unauthenticated},
		{"wrong key", bearer("key-three-nope"), codes.Unauthenticated},
		{"prefix of a key", bearer("key-one-01234"), codes.Unauthenticated},
		{"the upstream secret is no API key", bearer(secret), codes.Unauthenticated},
	}
	for _, tc := range cases {
		for _, c := range []caller{s.grpcCaller(tc.authz), s.httpCaller(tc.authz), s.connectCaller(tc.authz)} {
			before := up.Count()
			wantAll(t, tc.name+" over "+c.String(), everyRPC(t, c), tc.want, strings.TrimPrefix(tc.authz, "Bearer "))
			if n := up.Count() - before; tc.want != codes.OK && n != 0 {
				t.Errorf("%s over %v: %d upstream requests, want none", tc.name, c, n)
			}
		}
	}

	// The refusal over HTTP is a 401 with a Bearer challenge.
	h := s.httpCaller(bearer("key-three-nope"))
	resp, b := h.do(t, http.MethodGet, tokensPath("u"), nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("wrong key over HTTP: %d, WWW-Authenticate %q, body %s; want 401 with a Bearer challenge",
			resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
	}
}

// TestAuthClientCert: with a held secret and --tls-client-ca, callers in
// with a certificate the CA signed; without one the API refuses them but
// health answers; a certificate from another CA fails the handshake.
func TestAuthClientCert(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-mtls"
	_, up := newEmulator(t, secret)
	p := newPKI(t)
	s := startServer(t, up.URL,
		gatetest.Held(secret),
		gatetest.Args("--tls-cert="+p.certFile, "--tls-key="+p.keyFile, "--tls-client-ca="+p.caFile),
		gatetest.ClientTLS(p.clientTLS()),
	)
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("HTTP listener %s is not TLS", s.URL())
	}

	rogueCA := testpki.NewCA(t, "some other CA")
	rogue := rogueCA.Issue(t, "rogue client", x509.ExtKeyUsageClientAuth).TLS()

	grpcWith := func(cert *tls.Certificate) caller {
		return &grpcCaller{c: tokenv1.NewTokenServiceClient(s.Dial(cert))}
	}
	httpWith := func(cert *tls.Certificate) caller {
		return &httpCaller{base: s.URL(), client: s.HTTPClient(cert)}
	}

	t.Run("with client certificate", func(t *testing.T) {
		// Over HTTPS the gateway still reaches the gRPC server over its
		// in-memory, plaintext connection: that hop must work with TLS on.
		wantAll(t, "grpc", everyRPC(t, grpcWith(&p.client)), codes.OK, "")
		wantAll(t, "http", everyRPC(t, httpWith(&p.client)), codes.OK, "")
	})

	t.Run("without client certificate", func(t *testing.T) {
		before := up.Count()
		wantAll(t, "grpc", everyRPC(t, grpcWith(nil)), codes.Unauthenticated, "")
		h := httpWith(nil).(*httpCaller)
		resp, b := h.do(t, http.MethodGet, tokensPath("u"), nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET without certificate: HTTP %d %s, want 401", resp.StatusCode, b)
		}
		wantAll(t, "http", everyRPC(t, h), codes.Unauthenticated, "")
		if n := up.Count() - before; n != 0 {
			t.Errorf("%d upstream requests without a certificate, want none", n)
		}

		// Probes need no certificate.
		resp, b = h.do(t, http.MethodGet, "/healthz", nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz over HTTPS without certificate: %d %s, want 200", resp.StatusCode, b)
		}
		hc := healthpb.NewHealthClient(s.Dial(nil))
		hr, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("gRPC health over TLS without certificate: %v, %v; want SERVING", hr, err)
		}
	})

	t.Run("certificate from another CA", func(t *testing.T) {
		_, st := grpcWith(&rogue).create(t, &tokenv1.CreateRequest{UserId: "u"})
		if st.Code() == codes.OK {
			t.Error("gRPC with a certificate from another CA succeeded")
		}
		h := httpWith(&rogue).(*httpCaller)
		req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, s.URL()+tokensPath("u"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := h.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("HTTPS with a certificate from another CA succeeded")
			}
		}
	})
}

// TestAuthAPIKeysOrClientCert: with both configured, either gets in.
func TestAuthAPIKeysOrClientCert(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-both"
	_, up := newEmulator(t, secret)
	p := newPKI(t)
	keys := writeKeys(t, "key-both-0123456789")
	s := startServer(t, up.URL,
		gatetest.Held(secret),
		gatetest.Args("--tls-cert="+p.certFile, "--tls-key="+p.keyFile, "--tls-client-ca="+p.caFile, "--api-keys-file="+keys),
		gatetest.ClientTLS(p.clientTLS()),
	)

	for _, tc := range []struct {
		name  string
		cert  *tls.Certificate
		authz string
		want  codes.Code
	}{
		{"key, no certificate", nil, bearer("key-both-0123456789"), codes.OK},
		{"certificate, no key", &p.client, "", codes.OK},
		{"neither", nil, "", codes.Unauthenticated},
		{"wrong key, no certificate", nil, bearer("wrong"), codes.Unauthenticated},
	} {
		g := &grpcCaller{c: tokenv1.NewTokenServiceClient(s.Dial(tc.cert)), authz: tc.authz}
		h := &httpCaller{base: s.URL(), client: s.HTTPClient(tc.cert), authz: tc.authz}
		for _, c := range []caller{g, h} {
			wantAll(t, tc.name+" over "+c.String(), everyRPC(t, c), tc.want, "")
		}
	}
}

// TestAuthAllowUnauthenticated: a held secret with --allow-unauthenticated
// lets callers in with no credentials; without it the server does not
// start.
func TestAuthAllowUnauthenticated(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-open"
	_, up := newEmulator(t, secret)
	env := map[string]string{"CHATBOTKIT_API_SECRET": secret}

	args := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--upstream=" + up.URL}
	cfg, err := config.Load(args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.New(cfg, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("app.New with a held secret and no way to authenticate callers succeeded; want a refusal to start")
	}

	s := startServer(t, up.URL, gatetest.Held(secret))
	for _, c := range []caller{s.grpcCaller(""), s.httpCaller(""), s.connectCaller("")} {
		wantAll(t, "no credentials over "+c.String(), everyRPC(t, c), codes.OK, "")
	}
}

// TestCORS: preflights from an allowed origin are answered without
// authentication; actual responses to it carry Access-Control-Allow-Origin;
// other origins are refused with 403 and get no CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-cors"
	const origin = "https://app.example"
	_, up := newEmulator(t, secret)
	keys := writeKeys(t, "key-cors-0123456789")
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--cors-origins="+origin, "--api-keys-file="+keys))

	send := func(t *testing.T, method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(callCtx(t), method, s.URL()+path, nil)
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
		resp.Body.Close()
		return resp
	}
	corsHeaders := func(h http.Header) []string {
		var out []string
		for k := range h {
			if strings.HasPrefix(k, "Access-Control-") {
				out = append(out, k)
			}
		}
		return out
	}

	t.Run("preflight from allowed origin", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{"GET", tokensPath("u")},
			{"POST", tokensPath("u")},
			{"PATCH", tokenPath("u", "t")},
			{"DELETE", tokenPath("u", "t")},
		} {
			before := up.Count()
			resp := send(t, http.MethodOptions, tc.path, map[string]string{
				"Origin":                         origin,
				"Access-Control-Request-Method":  tc.method,
				"Access-Control-Request-Headers": "authorization, content-type",
			})
			h := resp.Header
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("preflight %s %s: HTTP %d, want 204", tc.method, tc.path, resp.StatusCode)
			}
			if h.Get("Access-Control-Allow-Origin") != origin {
				t.Errorf("preflight %s: Allow-Origin %q, want %q", tc.method, h.Get("Access-Control-Allow-Origin"), origin)
			}
			if !strings.Contains(h.Get("Access-Control-Allow-Methods"), tc.method) {
				t.Errorf("preflight %s: Allow-Methods %q lacks it", tc.method, h.Get("Access-Control-Allow-Methods"))
			}
			allowHeaders := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
			if !strings.Contains(allowHeaders, "authorization") || !strings.Contains(allowHeaders, "content-type") {
				t.Errorf("preflight %s: Allow-Headers %q, want Authorization and Content-Type", tc.method, allowHeaders)
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("preflight %s: Allow-Credentials sent", tc.method)
			}
			if n := up.Count() - before; n != 0 {
				t.Errorf("preflight went upstream %d times", n)
			}
		}
	})

	t.Run("actual request from allowed origin", func(t *testing.T) {
		resp := send(t, http.MethodGet, tokensPath("u"), map[string]string{"Origin": origin, "Authorization": bearer("key-cors-0123456789")})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("GET from %s: HTTP %d, Allow-Origin %q; want 200 and the origin", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		// A refusal is readable by the page too.
		resp = send(t, http.MethodGet, tokensPath("u"), map[string]string{"Origin": origin})
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("GET from %s without a key: HTTP %d, Allow-Origin %q; want 401 and the origin", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})

	t.Run("disallowed origin", func(t *testing.T) {
		const other = "https://evil.example"
		resp := send(t, http.MethodOptions, tokensPath("u"), map[string]string{
			"Origin": other, "Access-Control-Request-Method": "GET",
		})
		if got := corsHeaders(resp.Header); len(got) != 0 || resp.StatusCode/100 == 2 {
			t.Errorf("preflight from %s: HTTP %d with CORS headers %v; want a refusal without any", other, resp.StatusCode, got)
		}
		// Even with a valid key, a foreign page's request is refused
		// before it costs an upstream call.
		before := up.Count()
		resp = send(t, http.MethodGet, tokensPath("u"), map[string]string{"Origin": other, "Authorization": bearer("key-cors-0123456789")})
		if got := corsHeaders(resp.Header); resp.StatusCode != http.StatusForbidden || len(got) != 0 {
			t.Errorf("GET from %s: HTTP %d with CORS headers %v; want 403 without any", other, resp.StatusCode, got)
		}
		if n := up.Count() - before; n != 0 {
			t.Errorf("GET from %s: %d upstream requests, want none", other, n)
		}
	})
}
