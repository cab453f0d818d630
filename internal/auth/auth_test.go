package auth_test

//lint:file-ignore SA1019 the contract requires reflection v1alpha too (older grpcurl and IDEs speak only it); this file proves it is served.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/secret"
)

const (
	keyOne = "cbkgate-key-one"
	keyTwo = "cbkgate-key-two-which-is-longer"
)

var testKeys = []secret.Value{keyOne, keyTwo}

func callCtx(t *testing.T, authz ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if len(authz) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.MD{"authorization": authz})
	}
	return ctx
}

// checkResult asserts the code of err, that a refused call never reached
// the service, that an admitted one saw wantSecret, and that no error
// message carries a presented value.
func checkResult(t *testing.T, err error, ts *tokenServer, wantCode codes.Code, wantMsg string, wantSecret secret.Value, presented []string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != wantCode {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), wantCode)
	}
	if wantCode == codes.Unauthenticated {
		checkErrorInfo(t, st.Proto())
	}
	if wantMsg != "" && !strings.Contains(st.Message(), wantMsg) {
		t.Errorf("message = %q, want it to contain %q", st.Message(), wantMsg)
	}
	for _, p := range presented {
		for _, f := range strings.Fields(p) {
			if len(f) > 6 && strings.Contains(st.Message(), f) {
				t.Errorf("message %q contains presented value %q", st.Message(), f)
			}
		}
	}
	calls := ts.seen()
	if wantCode != codes.OK {
		if len(calls) != 0 {
			t.Errorf("refused call reached the service: %v", calls)
		}
		return
	}
	if len(calls) != 1 {
		t.Fatalf("service saw %d calls, want 1", len(calls))
	}
	if calls[0].secret != wantSecret {
		t.Errorf("upstream secret = %q, want %q", calls[0].secret.Reveal(), wantSecret.Reveal())
	}
}

func TestPassThrough(t *testing.T) {
	const upstream = "cbk-secret-abcdef"
	tests := []struct {
		name       string
		authz      []string
		wantCode   codes.Code
		wantMsg    string
		wantSecret secret.Value
	}{
		{"bearer", []string{"Bearer " + upstream}, codes.OK, "", upstream},
		{"lower-case scheme", []string{"bearer " + upstream}, codes.OK, "", upstream},
		{"upper-case scheme", []string{"BEARER " + upstream}, codes.OK, "", upstream},
		{"missing", nil, codes.Unauthenticated, "missing authorization metadata: send `authorization: Bearer <ChatBotKit secret>`", ""},
		{"other scheme", []string{"Basic " + upstream}, codes.Unauthenticated, "malformed authorization metadata", ""},
		{"scheme only", []string{"Bearer"}, codes.Unauthenticated, "malformed", ""},
		{"empty value", []string{"Bearer "}, codes.Unauthenticated, "malformed", ""},
		{"two values", []string{"Bearer " + upstream + " extra-value"}, codes.Unauthenticated, "malformed", ""},
		{"double space (RFC 6750: 1*SP)", []string{"Bearer  " + upstream}, codes.OK, "", upstream},
		{"no scheme", []string{upstream}, codes.Unauthenticated, "malformed", ""},
		{"two metadata values", []string{"Bearer " + upstream, "Bearer other-secret-123"}, codes.Unauthenticated, "more than one authorization metadata value", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, auth.Options{PassThrough: true}), nil)
			c := dial(t, addr, nil)
			_, err := c.tokens().Create(callCtx(t, tt.authz...), &tokenv1.CreateRequest{UserId: "u"})
			checkResult(t, err, ts, tt.wantCode, tt.wantMsg, tt.wantSecret, tt.authz)
		})
	}
}

func TestAPIKeys(t *testing.T) {
	tests := []struct {
		name     string
		authz    []string
		wantCode codes.Code
		wantMsg  string
	}{
		{"first key", []string{"Bearer " + keyOne}, codes.OK, ""},
		{"second key", []string{"bearer " + keyTwo}, codes.OK, ""},
		{"wrong key", []string{"Bearer not-a-configured-key"}, codes.Unauthenticated, "invalid API key"},
		{"prefix of a key", []string{"Bearer " + keyTwo[:len(keyTwo)-1]}, codes.Unauthenticated, "invalid API key"},
		{"key with suffix", []string{"Bearer " + keyOne + "x"}, codes.Unauthenticated, "invalid API key"},
		{"missing", nil, codes.Unauthenticated, "missing authorization metadata: send `authorization: Bearer <API key>`"},
		{"malformed", []string{"Token " + keyOne}, codes.Unauthenticated, "malformed authorization metadata"},
		{"two metadata values, both good", []string{"Bearer " + keyOne, "Bearer " + keyTwo}, codes.Unauthenticated, "more than one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, auth.Options{APIKeys: testKeys}), nil)
			c := dial(t, addr, nil)
			_, err := c.tokens().Create(callCtx(t, tt.authz...), &tokenv1.CreateRequest{UserId: "u"})
			// A held secret: the service must see the zero Value, never the key.
			checkResult(t, err, ts, tt.wantCode, tt.wantMsg, "", tt.authz)
		})
	}
}

func TestClientCerts(t *testing.T) {
	p := newPKI(t)
	type clientCert int
	const (
		noCert clientCert = iota
		goodCert
		rogueCert
	)
	tests := []struct {
		name       string
		opts       auth.Options
		clientAuth tls.ClientAuthType
		cert       clientCert
		authz      []string
		wantCode   codes.Code
		wantMsg    string
	}{
		{"certs only, verified cert", auth.Options{AcceptClientCerts: true}, tls.VerifyClientCertIfGiven, goodCert, nil, codes.OK, ""},
		{"certs only, no cert", auth.Options{AcceptClientCerts: true}, tls.VerifyClientCertIfGiven, noCert, nil, codes.Unauthenticated, "verified TLS client certificate is required"},
		{"certs only, no cert, a key is no use", auth.Options{AcceptClientCerts: true}, tls.VerifyClientCertIfGiven, noCert, []string{"Bearer " + keyOne}, codes.Unauthenticated, "client certificate"},
		// The handshake accepts any certificate here, so only the
		// interceptor's check of the verified chains stands in the way.
		{"certs only, unverified cert", auth.Options{AcceptClientCerts: true}, tls.RequireAnyClientCert, rogueCert, nil, codes.Unauthenticated, "verified TLS client certificate is required"},
		{"either, cert and no key", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.VerifyClientCertIfGiven, goodCert, nil, codes.OK, ""},
		{"either, key and no cert", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.VerifyClientCertIfGiven, noCert, []string{"Bearer " + keyTwo}, codes.OK, ""},
		{"either, cert and wrong key", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.VerifyClientCertIfGiven, goodCert, []string{"Bearer wrong-key-value"}, codes.OK, ""},
		{"either, neither", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.VerifyClientCertIfGiven, noCert, nil, codes.Unauthenticated, "or connect with a TLS client certificate"},
		{"either, wrong key and no cert", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.VerifyClientCertIfGiven, noCert, []string{"Bearer wrong-key-value"}, codes.Unauthenticated, "invalid API key"},
		{"either, unverified cert", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, tls.RequireAnyClientCert, rogueCert, nil, codes.Unauthenticated, "missing authorization metadata"},
		{"keys only, cert is no use", auth.Options{APIKeys: testKeys}, tls.VerifyClientCertIfGiven, goodCert, nil, codes.Unauthenticated, "missing authorization metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, tt.opts), &tls.Config{
				Certificates: []tls.Certificate{p.server},
				ClientCAs:    p.pool,
				ClientAuth:   tt.clientAuth,
				MinVersion:   tls.VersionTLS12,
			})
			clientTLS := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
			switch tt.cert {
			case goodCert:
				clientTLS.Certificates = []tls.Certificate{p.client}
			case rogueCert:
				// Sent even though the server's CA list does not name its
				// issuer, as a hostile client would.
				clientTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &p.rogueClient, nil
				}
			}
			c := dial(t, addr, clientTLS)
			_, err := c.tokens().Create(callCtx(t, tt.authz...), &tokenv1.CreateRequest{UserId: "u"})
			checkResult(t, err, ts, tt.wantCode, tt.wantMsg, "", tt.authz)
		})
	}
}

func TestAllowUnauthenticated(t *testing.T) {
	tests := []struct {
		name  string
		authz []string
	}{
		{"no metadata", nil},
		{"garbage metadata", []string{"garbage"}},
		{"a bearer is not forwarded", []string{"Bearer caller-value-123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, auth.Options{AllowUnauthenticated: true}), nil)
			c := dial(t, addr, nil)
			_, err := c.tokens().Create(callCtx(t, tt.authz...), &tokenv1.CreateRequest{UserId: "u"})
			checkResult(t, err, ts, codes.OK, "", "", nil)
		})
	}
}

// TestExempt: health and reflection need no credentials in any mode.
func TestExempt(t *testing.T) {
	modes := []struct {
		name string
		opts auth.Options
	}{
		{"pass-through", auth.Options{PassThrough: true}},
		{"api keys", auth.Options{APIKeys: testKeys}},
		{"client certs (none presented)", auth.Options{AcceptClientCerts: true}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, m.opts), nil)
			c := dial(t, addr, nil)

			resp, err := healthpb.NewHealthClient(c.conn).Check(callCtx(t), &healthpb.HealthCheckRequest{Service: tokenv1.TokenService_ServiceDesc.ServiceName})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health Check = %v, %v; want SERVING", resp, err)
			}

			rs, err := reflectionpb.NewServerReflectionClient(c.conn).ServerReflectionInfo(callCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
				t.Fatal(err)
			}
			rr, err := rs.Recv()
			if err != nil {
				t.Fatalf("reflection v1: %v", err)
			}
			if !hasService(rr.GetListServicesResponse().GetService(), tokenv1.TokenService_ServiceDesc.ServiceName) {
				t.Errorf("reflection v1 does not list TokenService: %v", rr)
			}
			_ = rs.CloseSend()

			rsa, err := reflectionv1alphapb.NewServerReflectionClient(c.conn).ServerReflectionInfo(callCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.Send(&reflectionv1alphapb.ServerReflectionRequest{MessageRequest: &reflectionv1alphapb.ServerReflectionRequest_ListServices{}}); err != nil {
				t.Fatal(err)
			}
			if _, err := rsa.Recv(); err != nil {
				t.Fatalf("reflection v1alpha: %v", err)
			}
			_ = rsa.CloseSend()

			// The service itself still needs credentials.
			_, err = c.tokens().Create(callCtx(t), &tokenv1.CreateRequest{UserId: "u"})
			checkResult(t, err, ts, codes.Unauthenticated, "", "", nil)
		})
	}
}

func hasService(list []*reflectionpb.ServiceResponse, name string) bool {
	for _, s := range list {
		if s.GetName() == name {
			return true
		}
	}
	return false
}

// TestTrustedPeer: a connection the TrustedPeer func recognises (standing in
// for the in-process gateway) is admitted as the caller named in the
// gateway's metadata, and still needs the Bearer value in pass-through
// mode; on any other connection that metadata is ignored, so it cannot be
// used to claim an identity.
func TestTrustedPeer(t *testing.T) {
	const upstream = "cbk-secret-via-gateway"
	const claimed = "key:admin"
	gw := func(authz ...string) []string { return authz } // readability only
	tests := []struct {
		name       string
		opts       auth.Options
		trusted    bool
		callers    []string // values of the gateway's caller metadata
		authz      []string
		wantCode   codes.Code
		wantSecret secret.Value
		wantCaller string
	}{
		{"keys, trusted, caller, no key", auth.Options{APIKeys: testKeys, HeldSecret: "held"}, true, []string{claimed}, nil, codes.OK, "held", claimed},
		{"keys, trusted, caller, any header", auth.Options{APIKeys: testKeys}, true, []string{claimed}, gw("Bearer " + keyOne), codes.OK, "", claimed},
		{"keys, trusted, no caller", auth.Options{APIKeys: testKeys}, true, nil, gw("Bearer " + keyOne), codes.Unauthenticated, "", ""},
		{"keys, trusted, two callers", auth.Options{APIKeys: testKeys}, true, []string{claimed, "key:other"}, nil, codes.Unauthenticated, "", ""},
		{"keys, untrusted, no key", auth.Options{APIKeys: testKeys}, false, nil, nil, codes.Unauthenticated, "", ""},
		{"keys, untrusted, claimed caller, no key", auth.Options{APIKeys: testKeys}, false, []string{claimed}, nil, codes.Unauthenticated, "", ""},
		{"keys, untrusted, claimed caller, real key", auth.Options{APIKeys: testKeys}, false, []string{claimed}, gw("Bearer " + keyOne), codes.OK, "", keyName(keyOne)},
		{"certs, trusted, caller", auth.Options{AcceptClientCerts: true}, true, []string{"cert:someone"}, nil, codes.OK, "", "cert:someone"},
		{"certs, untrusted, claimed caller", auth.Options{AcceptClientCerts: true}, false, []string{"cert:someone"}, nil, codes.Unauthenticated, "", ""},
		{"pass-through, trusted, bearer", auth.Options{PassThrough: true}, true, []string{"bearer:0123abcd"}, gw("Bearer " + upstream), codes.OK, upstream, "bearer:0123abcd"},
		{"pass-through, trusted, no bearer", auth.Options{PassThrough: true}, true, []string{"bearer:0123abcd"}, nil, codes.Unauthenticated, "", ""},
		{"pass-through, untrusted, claimed caller", auth.Options{PassThrough: true}, false, []string{claimed}, gw("Bearer " + upstream), codes.OK, upstream, bearerName(upstream)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var trusted atomic.Value // string: the trusted client's local address
			trusted.Store("")
			tt.opts.TrustedPeer = func(a net.Addr) bool { return a.String() == trusted.Load().(string) }
			addr, ts := startGRPC(t, mustNew(t, tt.opts), nil)
			trustedClient := dial(t, addr, nil)
			trusted.Store(trustedClient.localAddr())
			other := dial(t, addr, nil)
			if trustedClient.localAddr() == "" || trustedClient.localAddr() == other.localAddr() {
				t.Fatalf("clients not told apart: %q, %q", trustedClient.localAddr(), other.localAddr())
			}
			c := other
			if tt.trusted {
				c = trustedClient
			}
			ctx := callCtx(t, tt.authz...)
			for _, id := range tt.callers {
				ctx = metadata.AppendToOutgoingContext(ctx, auth.GatewayCallerKey, id)
			}
			_, err := c.tokens().Create(ctx, &tokenv1.CreateRequest{UserId: "u"})
			checkResult(t, err, ts, tt.wantCode, "", tt.wantSecret, tt.authz)
			if calls := ts.seen(); tt.wantCode == codes.OK && len(calls) == 1 && calls[0].caller != tt.wantCaller {
				t.Errorf("caller = %q, want %q", calls[0].caller, tt.wantCaller)
			}
		})
	}
}

// keyName is the identity of a bare key from the keys file.
func keyName(key string) string {
	d := sha256.Sum256([]byte(key))
	return "key:key-" + hex.EncodeToString(d[:4])
}

// bearerName is the identity of a pass-through caller.
func bearerName(b string) string {
	d := sha256.Sum256([]byte(b))
	return "bearer:" + hex.EncodeToString(d[:8])
}

// TestStream: the stream interceptor authenticates server streams and the
// handler's stream.Context() carries the upstream secret.
func TestStream(t *testing.T) {
	const upstream = "cbk-secret-for-list"
	tests := []struct {
		name       string
		opts       auth.Options
		authz      []string
		wantCode   codes.Code
		wantSecret secret.Value
	}{
		{"pass-through", auth.Options{PassThrough: true}, []string{"Bearer " + upstream}, codes.OK, upstream},
		{"pass-through, missing", auth.Options{PassThrough: true}, nil, codes.Unauthenticated, ""},
		{"keys", auth.Options{APIKeys: testKeys}, []string{"Bearer " + keyOne}, codes.OK, ""},
		{"keys, wrong", auth.Options{APIKeys: testKeys}, []string{"Bearer nope-nope-nope"}, codes.Unauthenticated, ""},
		{"allow all", auth.Options{AllowUnauthenticated: true}, nil, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, tt.opts), nil)
			c := dial(t, addr, nil)
			stream, err := c.tokens().List(callCtx(t, tt.authz...), &tokenv1.ListRequest{UserId: "u"})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				_, err = stream.Recv()
				if err != nil {
					break
				}
				n++
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			checkResult(t, err, ts, tt.wantCode, "", tt.wantSecret, tt.authz)
			if tt.wantCode == codes.OK && n != listLen {
				t.Errorf("received %d messages, want %d", n, listLen)
			}
		})
	}
}

func TestUpstreamSecretContext(t *testing.T) {
	if v := auth.UpstreamSecret(context.Background()); !v.IsZero() {
		t.Errorf("UpstreamSecret(Background) = %q, want zero", v.Reveal())
	}
	ctx := auth.WithUpstreamSecret(context.Background(), "abc")
	if v := auth.UpstreamSecret(ctx); v.Reveal() != "abc" {
		t.Errorf("UpstreamSecret = %q, want abc", v.Reveal())
	}
}

// httpCase is one request to HTTPMiddleware.
type httpCase struct {
	name     string
	method   string
	headers  map[string][]string
	wantCode int
	wantMsg  string
}

func TestHTTPMiddleware(t *testing.T) {
	preflight := map[string][]string{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}}
	modes := []struct {
		name  string
		opts  auth.Options
		cases []httpCase
	}{
		{"pass-through", auth.Options{PassThrough: true}, []httpCase{
			{"bearer", "GET", map[string][]string{"Authorization": {"Bearer cbk-http-secret"}}, 200, ""},
			{"missing", "GET", nil, 401, "missing Authorization header: send `Authorization: Bearer <ChatBotKit secret>`"},
			{"malformed", "POST", map[string][]string{"Authorization": {"Basic cbk-http-secret"}}, 401, "malformed Authorization header"},
			{"two headers", "GET", map[string][]string{"Authorization": {"Bearer cbk-http-secret", "Bearer cbk-http-other"}}, 401, "more than one"},
			{"preflight", "OPTIONS", preflight, 200, ""},
			{"OPTIONS that is not a preflight", "OPTIONS", map[string][]string{"Origin": {"https://app.example"}}, 401, "missing"},
		}},
		{"api keys", auth.Options{APIKeys: testKeys}, []httpCase{
			{"right key", "POST", map[string][]string{"Authorization": {"Bearer " + keyTwo}}, 200, ""},
			{"wrong key", "POST", map[string][]string{"Authorization": {"Bearer wrong-http-key"}}, 401, "invalid API key"},
			{"missing", "DELETE", nil, 401, "missing Authorization header: send `Authorization: Bearer <API key>`"},
			{"two headers", "GET", map[string][]string{"Authorization": {"Bearer " + keyOne, "Bearer " + keyTwo}}, 401, "more than one"},
			{"preflight", "OPTIONS", preflight, 200, ""},
		}},
		{"client certs over plaintext", auth.Options{AcceptClientCerts: true}, []httpCase{
			{"no TLS", "GET", nil, 401, "verified TLS client certificate is required"},
			{"a key is no use", "GET", map[string][]string{"Authorization": {"Bearer " + keyOne}}, 401, "verified TLS client certificate is required"},
			{"preflight", "OPTIONS", preflight, 200, ""},
		}},
		{"allow all", auth.Options{AllowUnauthenticated: true}, []httpCase{
			{"nothing", "GET", nil, 200, ""},
			{"garbage", "GET", map[string][]string{"Authorization": {"garbage"}}, 200, ""},
		}},
	}
	for _, m := range modes {
		a := mustNew(t, m.opts)
		for _, tc := range m.cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				var reached atomic.Bool
				h := a.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					reached.Store(true)
					w.WriteHeader(http.StatusOK)
				}))
				srv := httptest.NewServer(h)
				t.Cleanup(srv.Close)
				req, err := http.NewRequest(tc.method, srv.URL+"/v1/users/u/tokens", nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, vs := range tc.headers {
					for _, v := range vs {
						req.Header.Add(k, v)
					}
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				checkHTTP(t, resp, tc, reached.Load())
			})
		}
	}
}

func checkHTTP(t *testing.T, resp *http.Response, tc httpCase, reached bool) {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != tc.wantCode {
		t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.wantCode)
	}
	if tc.wantCode == http.StatusOK {
		if !reached {
			t.Error("the wrapped handler was not reached")
		}
		return
	}
	if reached {
		t.Error("a refused request reached the wrapped handler")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if wa := resp.Header.Values("WWW-Authenticate"); len(wa) != 1 || wa[0] != auth.Challenge {
		t.Errorf("WWW-Authenticate = %q, want exactly %q", wa, auth.Challenge)
	}
	var st spb.Status
	if err := protojson.Unmarshal(body, &st); err != nil {
		t.Fatalf("body %s is not a google.rpc.Status: %v", body, err)
	}
	checkErrorInfo(t, &st)
	if st.GetCode() != int32(codes.Unauthenticated) || !strings.Contains(st.GetMessage(), tc.wantMsg) {
		t.Errorf("status = %d %q, want 16 containing %q", st.GetCode(), st.GetMessage(), tc.wantMsg)
	}
	for _, vs := range tc.headers {
		for _, v := range vs {
			for _, f := range strings.Fields(v) {
				if len(f) > 6 && strings.Contains(string(body), f) {
					t.Errorf("body %s contains presented value %q", body, f)
				}
			}
		}
	}
}

func TestHTTPMiddlewareClientCert(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name     string
		opts     auth.Options
		cert     bool
		authz    string
		wantCode int
		wantMsg  string
	}{
		{"certs only, with cert", auth.Options{AcceptClientCerts: true}, true, "", 200, ""},
		{"certs only, without cert", auth.Options{AcceptClientCerts: true}, false, "", 401, "verified TLS client certificate is required"},
		{"either, with cert", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, true, "", 200, ""},
		{"either, key without cert", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, false, "Bearer " + keyOne, 200, ""},
		{"either, neither", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, false, "", 401, "or connect with a TLS client certificate"},
		{"keys only, cert is no use", auth.Options{APIKeys: testKeys}, true, "", 401, "missing Authorization header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reached atomic.Bool
			srv := httptest.NewUnstartedServer(mustNew(t, tt.opts).HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached.Store(true)
			})))
			srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: p.pool, MinVersion: tls.VersionTLS12}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			tr := srv.Client().Transport.(*http.Transport).Clone()
			if tt.cert {
				tr.TLSClientConfig.Certificates = []tls.Certificate{p.client}
			}
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			t.Cleanup(tr.CloseIdleConnections)
			req, err := http.NewRequest("GET", srv.URL+"/v1/users/u/tokens", nil)
			if err != nil {
				t.Fatal(err)
			}
			tc := httpCase{name: tt.name, wantCode: tt.wantCode, wantMsg: tt.wantMsg}
			if tt.authz != "" {
				req.Header.Set("Authorization", tt.authz)
				tc.headers = map[string][]string{"Authorization": {tt.authz}}
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			checkHTTP(t, resp, tc, reached.Load())
		})
	}
}

func TestHTTPMiddlewareReportsRefusals(t *testing.T) {
	var reasons []string
	opts := auth.Options{APIKeys: testKeys, OnHTTPRefused: func(r *http.Request, reason, message string) {
		reasons = append(reasons, r.Method+" "+r.URL.Path+": "+message+" ("+reason+")")
	}}
	h := mustNew(t, opts).HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, key := range []string{keyOne, "wrong-http-key"} {
		req := httptest.NewRequest("POST", "/v1/users/u/tokens", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if len(reasons) != 1 || reasons[0] != "POST /v1/users/u/tokens: invalid API key (INVALID_CREDENTIALS)" {
		t.Fatalf("refusals reported = %q, want only the wrong key's", reasons)
	}
	if strings.Contains(reasons[0], "wrong-http-key") {
		t.Fatalf("the reason carries the presented key: %q", reasons[0])
	}
}

// checkErrorInfo asserts that a refusal carries ErrorInfo in the cbkgate
// domain first, MISSING_CREDENTIALS when nothing usable was presented and
// INVALID_CREDENTIALS when something wrong was.
func checkErrorInfo(t *testing.T, st *spb.Status) {
	t.Helper()
	if len(st.GetDetails()) == 0 {
		t.Fatalf("status %q has no details, want ErrorInfo", st.GetMessage())
	}
	var info errdetails.ErrorInfo
	if err := st.GetDetails()[0].UnmarshalTo(&info); err != nil {
		t.Fatalf("first detail is not ErrorInfo: %v", err)
	}
	want := apierr.ReasonInvalidCredentials
	if strings.HasPrefix(st.GetMessage(), "missing") || strings.Contains(st.GetMessage(), "certificate is required") ||
		strings.Contains(st.GetMessage(), "without exactly one authenticated caller") {
		want = apierr.ReasonMissingCredentials
	}
	if info.GetDomain() != apierr.Domain || info.GetReason() != want {
		t.Errorf("ErrorInfo = %s/%s for %q, want %s/%s", info.GetDomain(), info.GetReason(), st.GetMessage(), apierr.Domain, want)
	}
}

// TestCallerIdentity: each mode names an admitted caller as the contract
// says, over gRPC (the HTTP side is HTTPMiddleware's test).
func TestCallerIdentity(t *testing.T) {
	p := newPKI(t)
	const upstream = "cbk-secret-identity"
	tests := []struct {
		name   string
		opts   auth.Options
		cert   bool
		authz  []string
		caller string
	}{
		{"pass-through", auth.Options{PassThrough: true}, false, []string{"Bearer " + upstream}, bearerName(upstream)},
		{"api key", auth.Options{APIKeys: testKeys}, false, []string{"Bearer " + keyTwo}, keyName(keyTwo)},
		{"client certificate", auth.Options{AcceptClientCerts: true}, true, nil, "cert:good client"},
		{"certificate wins over a key", auth.Options{AcceptClientCerts: true, APIKeys: testKeys}, true, []string{"Bearer " + keyOne}, "cert:good client"},
		{"unauthenticated", auth.Options{AllowUnauthenticated: true}, false, []string{"Bearer " + keyOne}, "anonymous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ts := startGRPC(t, mustNew(t, tt.opts), &tls.Config{
				Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool,
				ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
			})
			clientTLS := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
			if tt.cert {
				clientTLS.Certificates = []tls.Certificate{p.client}
			}
			c := dial(t, addr, clientTLS)
			if _, err := c.tokens().Create(callCtx(t, tt.authz...), &tokenv1.CreateRequest{UserId: "u"}); err != nil {
				t.Fatal(err)
			}
			if calls := ts.seen(); len(calls) != 1 || calls[0].caller != tt.caller {
				t.Fatalf("calls %v, want one as %q", calls, tt.caller)
			}
		})
	}
}

// TestCertName: the common name, else the first DNS name, else the
// certificate's fingerprint; never bytes that are not printable ASCII, and
// never longer than 64 bytes. A name that had to be shortened or changed
// carries the digest of the whole name, so two long CNs sharing their
// first 64 bytes (which once shared one identity) stay two callers.
func TestCertName(t *testing.T) {
	cn := func(n string, dns ...string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: n}, DNSNames: dns, Raw: []byte("der of " + n)}
	}
	digest := func(s string) string {
		d := sha256.Sum256([]byte(s))
		return hex.EncodeToString(d[:8])
	}
	long := strings.Repeat("x", 70)
	shared := strings.Repeat("s", 64) // two names sharing their first 64 bytes
	// "é" is two bytes; at 46 and 47 it straddles the cut, which moves before it.
	straddle := strings.Repeat("u", 46) + "é" + strings.Repeat("v", 30)
	exact := strings.Repeat("e", 64)
	for _, tc := range []struct {
		c    *x509.Certificate
		want string
	}{
		{cn("billing-service", "billing.internal"), "billing-service"},
		{cn("", "billing.internal", "other"), "billing.internal"},
		{cn(""), "sha256:" + digest("der of ")},
		{cn(exact), exact},
		{cn("tab\tand é"), "tab?and ??~" + digest("tab\tand é")},
		{cn("a~b"), "a?b~" + digest("a~b")},
		{cn(long), strings.Repeat("x", 47) + "~" + digest(long)},
		{cn(shared + "-one"), strings.Repeat("s", 47) + "~" + digest(shared+"-one")},
		{cn(shared + "-two"), strings.Repeat("s", 47) + "~" + digest(shared+"-two")},
		{cn(straddle), strings.Repeat("u", 46) + "~" + digest(straddle)},
	} {
		got := auth.CertName(tc.c)
		if got != tc.want {
			t.Errorf("certName(%q, %q) = %q, want %q", tc.c.Subject.CommonName, tc.c.DNSNames, got, tc.want)
		}
		if len(got) > 64 {
			t.Errorf("certName(%q) is %d bytes long", tc.c.Subject.CommonName, len(got))
		}
	}
	if a, b := auth.CertName(cn(shared+"-one")), auth.CertName(cn(shared+"-two")); a == b {
		t.Errorf("two CNs sharing their first 64 bytes share the identity %q", a)
	}
}
