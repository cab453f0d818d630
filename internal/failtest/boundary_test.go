package failtest

// One boundary for every surface, on the HTTP port: every refusal is a
// JSON google.rpc.Status with cbkgate's ErrorInfo (and a BadRequest naming
// the field when a field is wrong), in words, never Go error text, and a
// request from a foreign origin is refused on every path. None reaches
// the upstream.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// goErrorText is what a Go error's text looks like in an answer.
var goErrorText = []string{"strconv.", "proto:", "json:", "invalid character", "unexpected EOF", "syntax error", "parsing "}

// refusal is one request and the refusal it must get.
type refusal struct {
	name, method, path, body string
	header                   []string // name, value pairs
	status                   int
	reason                   string
	field                    string // a BadRequest violation must name it ("": no BadRequest needed)
}

// send sends the request (with a JSON Content-Type unless header sets one)
// and reads the whole answer.
func (c refusal) send(ctx context.Context, t *testing.T, g *gate) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, g.URL()+c.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		req.Header.Set(c.header[i], c.header[i+1])
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// check fails the test unless the answer is the refusal c wants.
func (c refusal) check(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != c.status {
		t.Fatalf("HTTP %d %s, want %d", resp.StatusCode, body, c.status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	for _, s := range goErrorText {
		if strings.Contains(string(body), s) {
			t.Errorf("the answer carries Go error text %q: %s", s, body)
		}
	}
	st := gatetest.Status(t, body)
	ei := gatetest.ErrorInfo(st)
	if ei.GetDomain() != "cbkgate" || ei.GetReason() != c.reason {
		t.Errorf("ErrorInfo %q/%q, want cbkgate/%s: %s", ei.GetDomain(), ei.GetReason(), c.reason, body)
	}
	if st.Message() == "" {
		t.Errorf("no message: %s", body)
	}
	if c.field == "" {
		return
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetDescription() == "" {
					t.Errorf("violation of %q without a description", v.GetField())
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	if !slices.Contains(fields, c.field) {
		t.Errorf("BadRequest fields %q, want one naming %q: %s", fields, c.field, body)
	}
}

// TestHostileHTTPRefusalsAreStatuses: each way a request can fail to
// decode or to find its route, on the REST routes (NDJSON and SSE), the
// Connect paths, the health probes and the OpenAPI document, is answered
// with its HTTP status and a JSON google.rpc.Status carrying ErrorInfo
// (domain cbkgate, a stable reason) and, when a field is wrong, a
// BadRequest naming it; in words, never Go error text; none reaches the
// upstream. Before: ?pagesize=5 was ignored (200), ?page_size=abc answered
// `strconv.ParseInt: parsing "abc": invalid syntax`, a wrong body type
// `proto: (line 1:9): invalid value for string field name: 5`, and 404s,
// 405s and decode errors carried no ErrorInfo (404s off /v1 were text).
func TestHostileHTTPRefusalsAreStatuses(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	const (
		list  = "/v1/users/u1/tokens"
		token = "/v1/users/u1/tokens/tok1"
		rpc   = "/cbkgate.token.v1.TokenService/"
	)
	sse := []string{"Accept", "text/event-stream"}
	bad := http.StatusBadRequest
	inv := "INVALID_ARGUMENT"
	cases := []refusal{
		// Query parameters: a typo, a wrong type, a field the path gives,
		// one given twice, any on a route that reads none.
		{name: "misspelt query parameter", method: "GET", path: list + "?pagesize=5", status: bad, reason: inv, field: "pagesize"},
		{name: "misspelt query parameter, SSE", method: "GET", path: list + "?pagesize=5", header: sse, status: bad, reason: inv, field: "pagesize"},
		{name: "page_size not a number", method: "GET", path: list + "?page_size=abc", status: bad, reason: inv, field: "page_size"},
		{name: "page_size not a number, SSE", method: "GET", path: list + "?page_size=abc", header: sse, status: bad, reason: inv, field: "page_size"},
		{name: "pageSize (JSON name) too big", method: "GET", path: list + "?pageSize=99999999999", status: bad, reason: inv, field: "page_size"},
		{name: "limit not a number", method: "GET", path: list + "?limit=1.5", status: bad, reason: inv, field: "limit"},
		{name: "order not an order", method: "GET", path: list + "?order=SIDEWAYS", status: bad, reason: inv, field: "order"},
		{name: "page_size twice", method: "GET", path: list + "?page_size=1&page_size=2", status: bad, reason: inv, field: "page_size"},
		{name: "user_id in the query", method: "GET", path: list + "?user_id=u2", status: bad, reason: inv, field: "user_id"},
		{name: "HEAD (not served) with a typo", method: "HEAD", path: list + "?pagesize=5", status: http.StatusMethodNotAllowed},
		{name: "query on Create", method: "POST", path: list + "?name=x", body: `{}`, status: bad, reason: inv, field: "name"},
		{name: "query on Update", method: "PATCH", path: token + "?name=x", body: `{}`, status: bad, reason: inv, field: "name"},
		{name: "query on Delete", method: "DELETE", path: token + "?request_id=x", status: bad, reason: inv, field: "request_id"},
		// Bodies: wrong types, unknown fields, not JSON.
		{name: "name a number", method: "POST", path: list, body: `{"name":5}`, status: bad, reason: inv, field: "name"},
		{name: "meta a string", method: "POST", path: list, body: `{"meta":"x"}`, status: bad, reason: inv, field: "meta"},
		{name: "unknown field", method: "POST", path: list, body: `{"nme":"x"}`, status: bad, reason: inv, field: "nme"},
		{name: "JSON name of a field, wrong type", method: "POST", path: list, body: `{"userId":1}`, status: bad, reason: inv, field: "user_id"},
		{name: "several bad fields", method: "POST", path: list, body: `{"name":"a","config":3,"bogus":1}`, status: bad, reason: inv, field: "config"},
		{name: "Update description a bool", method: "PATCH", path: token, body: `{"description":true}`, status: bad, reason: inv, field: "description"},
		{name: "Update unknown field", method: "PATCH", path: token, body: `{"name":"a","tags":[]}`, status: bad, reason: inv, field: "tags"},
		{name: "body cut short", method: "POST", path: list, body: `{"name":`, status: bad, reason: inv},
		{name: "body not an object", method: "POST", path: list, body: `[1,2]`, status: bad, reason: inv},
		{name: "trailing garbage", method: "POST", path: list, body: `{"name":"a"} {}`, status: bad, reason: inv},
		{name: "bad Grpc-Timeout", method: "GET", path: list, header: []string{"Grpc-Timeout", "soon"}, status: bad, reason: inv},
		// Routes.
		{name: "unknown /v1 path", method: "GET", path: "/v1/users/u1", status: http.StatusNotFound, reason: "NOT_FOUND"},
		{name: "unknown path, SSE", method: "GET", path: "/v1/users/u1/tokens/t/x", header: sse, status: http.StatusNotFound, reason: "NOT_FOUND"},
		{name: "unknown path off /v1", method: "GET", path: "/admin", status: http.StatusNotFound, reason: "NOT_FOUND"},
		{name: "unknown Connect method", method: "POST", path: rpc + "Rotate", body: `{}`, status: http.StatusNotFound, reason: "NOT_FOUND"},
		{name: "PUT on the list route", method: "PUT", path: list, body: `{}`, status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "GET on a token", method: "GET", path: token, status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "GET on a token, SSE", method: "GET", path: token, header: sse, status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "GET on Connect Create", method: "GET", path: rpc + "Create", status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "POST on /healthz", method: "POST", path: "/healthz", body: `{}`, status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "DELETE on /readyz", method: "DELETE", path: "/readyz", status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		{name: "POST on /openapi.json", method: "POST", path: "/openapi.json", body: `{}`, status: http.StatusMethodNotAllowed, reason: "METHOD_NOT_ALLOWED"},
		// Body rules.
		{name: "body over 1 MiB", method: "POST", path: list, body: `{"name":"` + strings.Repeat("x", 1<<20) + `"}`,
			status: http.StatusRequestEntityTooLarge, reason: "PAYLOAD_TOO_LARGE"},
		{name: "text/plain body", method: "POST", path: list, body: `{}`, header: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, reason: "UNSUPPORTED_MEDIA_TYPE"},
		// A compressed body: the gateway took gzip's bytes for bad JSON
		// (400 "not valid JSON") and acted on a body labelled br as if it
		// were plain (200, a token created).
		{name: "gzip body", method: "POST", path: list, body: string(gzipped([]byte(`{"name":"n"}`))), header: []string{"Content-Encoding", "gzip"},
			status: http.StatusUnsupportedMediaType, reason: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "body labelled br", method: "POST", path: list, body: `{"name":"n"}`, header: []string{"Content-Encoding", "br"},
			status: http.StatusUnsupportedMediaType, reason: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "Update body labelled deflate", method: "PATCH", path: token, body: `{"name":"n"}`, header: []string{"Content-Encoding", "deflate"},
			status: http.StatusUnsupportedMediaType, reason: "UNSUPPORTED_MEDIA_TYPE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := c.send(g.ctx(), t, g)
			if c.method == http.MethodHead {
				if resp.StatusCode != c.status {
					t.Fatalf("HTTP %d, want %d", resp.StatusCode, c.status)
				}
				return
			}
			c.check(t, resp, body)
			if c.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
	if n := up.Count(); n != 0 {
		t.Errorf("%d requests reached the upstream: %v", n, replies(up))
	}
	// The good spellings still pass (the check is not a blanket refusal).
	for _, path := range []string{list + "?page_size=2&order=ORDER_ASC&limit=3&cursor=c", list + "?pageSize=2"} {
		if res := g.do(g.ctx(), "GET", path, ""); res.status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, res.status, res.body)
		}
	}
}

// TestHostileForeignOriginOnEveryPath: with --cors-origins naming one
// origin, a request carrying another Origin (or marked cross-site without
// an allowed one) is 403 CROSS_ORIGIN on every path of the HTTP port: the
// REST routes, SSE, the Connect and gRPC-Web paths, the OpenAPI document,
// the health probes and unknown paths, preflights included, whatever the
// method; none reaches the upstream. The health probes follow the same
// rule (kubelet and load balancers send no Origin). Requests without an
// Origin, and from the allowed one, are served. Before: GET /openapi.json
// and the probes answered a foreign origin 200.
func TestHostileForeignOriginOnEveryPath(t *testing.T) {
	up := fu.Start(t)
	const allowed = "https://app.example"
	g := startGate(t, up.URL, gatetest.Args("--cors-origins", allowed))
	const (
		list  = "/v1/users/u1/tokens"
		token = "/v1/users/u1/tokens/tok1"
		rpc   = "/cbkgate.token.v1.TokenService/"
	)
	type req struct{ method, path, body string }
	requests := []req{
		{"GET", list, ""}, {"HEAD", list, ""}, {"POST", list, `{"name":"n"}`},
		{"PATCH", token, `{"name":"n"}`}, {"DELETE", token, ""},
		{"POST", rpc + "Create", `{"user_id":"u1"}`}, {"POST", rpc + "List", `{"user_id":"u1"}`},
		{"GET", "/openapi.json", ""}, {"GET", "/healthz", ""}, {"GET", "/readyz", ""}, {"GET", "/nowhere", ""},
	}
	foreign := [][]string{
		{"Origin", "http://evil.test"},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://evil.test", "Accept", "text/event-stream"},
		{"Origin", "http://evil.test", "Content-Type", "application/grpc-web+proto", "X-Grpc-Web", "1"},
	}
	for _, r := range requests {
		for _, h := range foreign {
			c := refusal{method: r.method, path: r.path, body: r.body, header: h, status: http.StatusForbidden, reason: "CROSS_ORIGIN"}
			resp, body := c.send(g.ctx(), t, g)
			if r.method == http.MethodHead {
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("HEAD %s %q: %d, want 403", r.path, h, resp.StatusCode)
				}
				continue
			}
			t.Run(r.method+" "+r.path+" "+strings.Join(h, "="), func(t *testing.T) { c.check(t, resp, body) })
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("%s %s: a refused origin got Access-Control-Allow-Origin %q", r.method, r.path, v)
			}
		}
		// The preflight for it.
		pre := refusal{method: "OPTIONS", path: r.path, status: http.StatusForbidden, reason: "CROSS_ORIGIN",
			header: []string{"Origin", "http://evil.test", "Access-Control-Request-Method", r.method}}
		resp, body := pre.send(g.ctx(), t, g)
		t.Run("preflight "+r.method+" "+r.path, func(t *testing.T) { pre.check(t, resp, body) })
	}
	if n := up.Count(); n != 0 {
		t.Fatalf("%d requests from a foreign origin reached the upstream: %v", n, replies(up))
	}

	// No Origin (curl, kubelet) and the allowed origin are served.
	for _, h := range [][]string{nil, {"Origin", allowed}} {
		for _, path := range []string{"/openapi.json", "/healthz", "/readyz", list} {
			c := refusal{method: "GET", path: path, header: h}
			resp, body := c.send(g.ctx(), t, g)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s %q: %d %s, want 200", path, h, resp.StatusCode, body)
			}
			if h != nil && resp.Header.Get("Access-Control-Allow-Origin") != allowed && path != "/healthz" && path != "/readyz" {
				t.Errorf("GET %s from the allowed origin: Access-Control-Allow-Origin %q", path, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			if path == "/openapi.json" && !json.Valid(body) {
				t.Errorf("GET /openapi.json: not JSON")
			}
		}
	}
	wantCalls(t, up, fu.List, 2)
}
