package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cbkgate/cbkgate/internal/console"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestConsoleOffByDefault: outside dev mode, without --console, nothing is
// served under /console/.
func TestConsoleOffByDefault(t *testing.T) {
	_, up := newEmulator(t, "console-secret")
	s := startServer(t, up.URL, gatetest.Held("console-secret"), gatetest.Args("--api-keys-file="+writeKeys(t, "ops ops-key")))
	h := s.httpCaller("")
	for _, p := range []string{"/console/", "/console", "/console/console.js", "/console/favicon.svg"} {
		if resp, _ := h.do(t, http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without --console: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestConsoleServedWithoutKey: with --console the page and its files are
// public (the key is typed into the page, which sends it with each call),
// while the API still wants the key. The origin rule holds there as on
// every path of the port: a cross-site request is refused. Other methods
// are 405 and unknown files 404, in the API's error shape. The requests
// are counted under the route "/console/", never their paths.
func TestConsoleServedWithoutKey(t *testing.T) {
	_, up := newEmulator(t, "console-secret")
	s := startServer(t, up.URL, gatetest.Held("console-secret"),
		gatetest.Args("--api-keys-file="+writeKeys(t, "ops ops-key"), "--console"))
	h := s.httpCaller("")
	// What a browser sends for a typed or bookmarked address.
	h.header = http.Header{"Sec-Fetch-Site": {"none"}, "Sec-Fetch-Mode": {"navigate"}}
	for _, p := range []string{"/console/", "/console/console.js", "/console/console.css", "/console/favicon.svg"} {
		resp, body := h.do(t, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d with %d bytes, want 200 with the file", p, resp.StatusCode, len(body))
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", p, got, console.CSP)
		}
	}
	if resp, _ := s.httpCaller("").do(t, http.MethodGet, tokensPath("u1"), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the API without a key: %d, want 401", resp.StatusCode)
	}
	if resp, body := h.do(t, http.MethodGet, "/console/u1/secret", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"NOT_FOUND"`) {
		t.Errorf("GET an unknown console file: %d %s, want 404 NOT_FOUND", resp.StatusCode, body)
	}
	if resp, body := h.do(t, http.MethodPost, "/console/", []byte("{}")); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /console/: %d %s (Allow %q), want 405 with Allow: GET, HEAD", resp.StatusCode, body, resp.Header.Get("Allow"))
	}
	foreign := s.httpCaller("")
	foreign.header = http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}}
	resp, _ := foreign.do(t, http.MethodGet, "/console/", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /console/ cross-site: %d, want 403", resp.StatusCode)
	}
	// Every answer under the console's path runs under its policy, the
	// refusals too (they had none).
	if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP {
		t.Errorf("GET /console/ cross-site: Content-Security-Policy %q, want %q", got, console.CSP)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/console/u1/secret"}, {http.MethodGet, "/console/index.html"}, {http.MethodPost, "/console/"},
	} {
		if resp, _ := h.do(t, c.method, c.path, nil); resp.Header.Get("Content-Security-Policy") != console.CSP {
			t.Errorf("%s %s: %d without the console's Content-Security-Policy", c.method, c.path, resp.StatusCode)
		}
	}

	all := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	if n := all[`cbkgate_http_requests_total{code="200",method="GET",route="/console/"}`]; n != 4 {
		t.Errorf("cbkgate_http_requests_total for the console's 200s: %v, want 4", n)
	}
	for k := range all {
		if strings.Contains(k, "/console/u1") || strings.Contains(k, "console.js") {
			t.Errorf("a metric names a raw path: %s", k)
		}
	}
	logs := s.Logs().String()
	if n := strings.Count(logs, `"msg":"http call refused"`); n != 7 {
		t.Errorf("%d refusal lines, want 7 (the keyless API call, the unknown file, the POST, the cross-site GET, and the three asked for their policy):\n%s", n, logs)
	}
}
