package app_test

// The callers of the end-to-end tests: a real cbkgate (internal/gatetest)
// in front of internal/faultyupstream (forwarding to the emulator, or
// misbehaving as scripted),
// driven through a real gRPC connection and a real net/http client against
// the gateway.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// callTimeout bounds every single call a test makes, so a hang fails the
// test instead of the whole run.
const callTimeout = gatetest.CallTimeout

// newEmulator returns an emulator accepting secret, behind a faulty
// upstream that forwards every request to it (and records them, so tests
// count them, read their headers or script a fault first).
func newEmulator(t *testing.T, secret string) (*emulator.Emulator, *fu.Server) {
	t.Helper()
	emu := emulator.New(emulator.Options{Secret: secret})
	up := fu.Start(t)
	up.SetDefaultAll(fu.Forward(emu))
	return emu, up
}

// newEndlessList returns an upstream whose listing never ends: every page
// is full and names a next cursor.
func newEndlessList(t *testing.T) *fu.Server {
	t.Helper()
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.FullPages())
	return up
}

// server is one running cbkgate (internal/gatetest), with this package's
// callers on it.
type server struct{ *gatetest.Gate }

// startServer runs cbkgate in front of upstreamURL until the test ends;
// without options in pass-through mode, logging at debug level.
func startServer(t *testing.T, upstreamURL string, opts ...gatetest.Option) *server {
	t.Helper()
	return &server{gatetest.Start(t, upstreamURL, opts...)}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// caller is TokenService through one transport, with one credential. Every
// error comes back as the google.rpc.Status the caller saw.
type caller interface {
	String() string
	list(t *testing.T, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, *status.Status)
	create(t *testing.T, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, *status.Status)
	update(t *testing.T, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, *status.Status)
	delete(t *testing.T, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, *status.Status)
}

// grpcCaller calls over a real gRPC connection.
type grpcCaller struct {
	c     tokenv1.TokenServiceClient
	authz string // authorization metadata value; "" sends none
}

func (s *server) grpcCaller(authz string) *grpcCaller {
	return &grpcCaller{c: tokenv1.NewTokenServiceClient(s.Dial(nil)), authz: authz}
}

func (g *grpcCaller) String() string { return "grpc" }

func (g *grpcCaller) ctx(t *testing.T) context.Context {
	ctx := callCtx(t)
	if g.authz != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", g.authz)
	}
	return ctx
}

func (g *grpcCaller) list(t *testing.T, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, *status.Status) {
	stream, err := g.c.List(g.ctx(t), req)
	if err != nil {
		return nil, status.Convert(err)
	}
	out, err := gatetest.Recv(stream)
	if err != nil {
		return out, status.Convert(err)
	}
	return out, nil
}

func (g *grpcCaller) create(t *testing.T, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, *status.Status) {
	r, err := g.c.Create(g.ctx(t), req)
	return r, status.Convert(err)
}

func (g *grpcCaller) update(t *testing.T, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, *status.Status) {
	r, err := g.c.Update(g.ctx(t), req)
	return r, status.Convert(err)
}

func (g *grpcCaller) delete(t *testing.T, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, *status.Status) {
	r, err := g.c.Delete(g.ctx(t), req)
	return r, status.Convert(err)
}

// httpCaller calls the JSON gateway with net/http. Besides decoding, it
// checks what every gateway answer must satisfy: proto field names, an
// error's HTTP status matching its code, NDJSON framing for List.
type httpCaller struct {
	base   string
	client *http.Client
	authz  string // Authorization header; "" sends none
	header http.Header
}

func (s *server) httpCaller(authz string) *httpCaller {
	return &httpCaller{base: s.URL(), client: s.HTTPClient(nil), authz: authz}
}

func (h *httpCaller) String() string { return "http" }

func tokensPath(userID string) string {
	return "/v1/users/" + url.PathEscape(userID) + "/tokens"
}

func tokenPath(userID, tokenID string) string {
	return tokensPath(userID) + "/" + url.PathEscape(tokenID)
}

// do sends one request and returns the response with its whole body.
func (h *httpCaller) do(t *testing.T, method, path string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(callCtx(t), method, h.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.authz != "" {
		req.Header.Set("Authorization", h.authz)
	}
	for k, vs := range h.header {
		req.Header[k] = vs
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

// camelCase keys the gateway must never write: it uses proto names.
var camelKeys = []string{`"createTime"`, `"updateTime"`, `"userId"`, `"tokenId"`, `"pageSize"`}

func checkProtoNames(t *testing.T, body []byte) {
	t.Helper()
	for _, k := range camelKeys {
		if bytes.Contains(body, []byte(k)) {
			t.Errorf("gateway JSON has the JSON name %s instead of the proto name: %s", k, body)
		}
	}
}

// unary decodes a unary gateway answer into out, or its error.
func (h *httpCaller) unary(t *testing.T, method, path string, body []byte, out proto.Message) *status.Status {
	t.Helper()
	resp, b := h.do(t, method, path, body)
	checkProtoNames(t, b)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if resp.StatusCode != http.StatusOK {
		st := gatetest.Status(t, b)
		if want := runtime.HTTPStatusFromCode(st.Code()); resp.StatusCode != want {
			t.Errorf("%s %s: HTTP %d for %v, want %d", method, path, resp.StatusCode, st.Code(), want)
		}
		return st
	}
	if err := protojson.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
	}
	return nil
}

// bodyJSON renders a request body with proto field names, without the
// fields that travel in the path.
func bodyJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *httpCaller) create(t *testing.T, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, *status.Status) {
	body := proto.Clone(req).(*tokenv1.CreateRequest)
	body.UserId = ""
	out := &tokenv1.CreateResponse{}
	if st := h.unary(t, http.MethodPost, tokensPath(req.GetUserId()), bodyJSON(t, body), out); st != nil {
		return nil, st
	}
	return out, nil
}

func (h *httpCaller) update(t *testing.T, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, *status.Status) {
	body := proto.Clone(req).(*tokenv1.UpdateRequest)
	body.UserId, body.TokenId = "", ""
	out := &tokenv1.UpdateResponse{}
	if st := h.unary(t, http.MethodPatch, tokenPath(req.GetUserId(), req.GetTokenId()), bodyJSON(t, body), out); st != nil {
		return nil, st
	}
	return out, nil
}

func (h *httpCaller) delete(t *testing.T, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, *status.Status) {
	out := &tokenv1.DeleteResponse{}
	if st := h.unary(t, http.MethodDelete, tokenPath(req.GetUserId(), req.GetTokenId()), nil, out); st != nil {
		return nil, st
	}
	return out, nil
}

// listQuery renders a ListRequest's query parameters with proto names.
func listQuery(req *tokenv1.ListRequest) string {
	q := url.Values{}
	if req.GetOrder() != tokenv1.Order_ORDER_UNSPECIFIED {
		q.Set("order", req.GetOrder().String())
	}
	if req.GetCursor() != "" {
		q.Set("cursor", req.GetCursor())
	}
	if req.GetPageSize() != 0 {
		q.Set("page_size", strconv.Itoa(int(req.GetPageSize())))
	}
	if req.GetLimit() != 0 {
		q.Set("limit", strconv.Itoa(int(req.GetLimit())))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ndjson is a decoded List answer of the gateway.
type ndjson struct {
	httpStatus int
	results    []*tokenv1.ListResponse
	err        *status.Status // the final {"error"} line, if any
}

// listRaw runs List over HTTP and decodes the NDJSON answer line by line:
// zero or more {"result"} lines, then at most one {"error"} line, last.
func (h *httpCaller) listRaw(t *testing.T, req *tokenv1.ListRequest) ndjson {
	t.Helper()
	resp, b := h.do(t, http.MethodGet, tokensPath(req.GetUserId())+listQuery(req), nil)
	checkProtoNames(t, b)
	out := ndjson{httpStatus: resp.StatusCode}
	if resp.StatusCode != http.StatusOK && !bytes.HasPrefix(b, []byte(`{"error"`)) {
		// Refused before the gateway ran the call (authentication, a bad
		// query parameter): a plain google.rpc.Status.
		out.err = gatetest.Status(t, b)
		if want := runtime.HTTPStatusFromCode(out.err.Code()); resp.StatusCode != want {
			t.Errorf("List over HTTP: HTTP %d for %v, want %d", resp.StatusCode, out.err.Code(), want)
		}
		return out
	}
	out.results, out.err = gatetest.NDJSON(t, b)
	switch {
	case out.err == nil && resp.StatusCode != http.StatusOK:
		t.Errorf("List over HTTP: HTTP %d with no error line", resp.StatusCode)
	case out.err != nil && len(out.results) == 0:
		if want := runtime.HTTPStatusFromCode(out.err.Code()); resp.StatusCode != want {
			t.Errorf("List over HTTP failing before the first token: HTTP %d for %v, want %d", resp.StatusCode, out.err.Code(), want)
		}
	case out.err != nil:
		if resp.StatusCode != http.StatusOK {
			t.Errorf("List over HTTP failing after tokens: HTTP %d, want 200 (the status line went out with the first token)", resp.StatusCode)
		}
	}
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("List over HTTP: Content-Type %q, want application/x-ndjson", ct)
		}
	}
	return out
}

func (h *httpCaller) list(t *testing.T, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, *status.Status) {
	r := h.listRaw(t, req)
	return r.results, r.err
}

// wantCode fails the test unless st has code want (nil is OK).
func wantCode(t *testing.T, what string, st *status.Status, want codes.Code) {
	t.Helper()
	got := codes.OK
	if st != nil {
		got = st.Code()
	}
	if got != want {
		t.Fatalf("%s: code %v (%q), want %v", what, got, st.Message(), want)
	}
}

// ---- certificates ----

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files into a temporary directory.
type pki struct {
	caFile, certFile, keyFile string
	roots                     *x509.CertPool
	client                    tls.Certificate // signed by the CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cbkgate test CA")
	srv := ca.Issue(t, "cbkgate test server", x509.ExtKeyUsageServerAuth)
	return &pki{
		caFile:   testpki.WriteFile(t, dir, "ca.pem", ca.CertPEM()),
		certFile: testpki.WriteFile(t, dir, "server.pem", srv.CertPEM()),
		keyFile:  testpki.WriteFile(t, dir, "server-key.pem", srv.KeyPEM(t)),
		roots:    ca.Pool(),
		client:   ca.Issue(t, "cbkgate test client", x509.ExtKeyUsageClientAuth).TLS(),
	}
}

// clientTLS is the base client configuration: trusts the CA, no certificate.
func (p *pki) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// writeKeys writes an API keys file and returns its path.
func writeKeys(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-keys")
	content := "# test keys\n\n" + strings.Join(keys, "\n") + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func bearer(v string) string { return "Bearer " + v }

// unique returns a distinctive value with the given prefix.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%s", prefix, strings.ToLower(rand.Text()))
}
