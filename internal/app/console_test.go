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
// even on a cross-site navigation (a link from a wiki), while the API
// still wants the key. Their requests are counted under the route
// "/console/", never their paths, and none is logged as refused.
func TestConsoleServedWithoutKey(t *testing.T) {
	_, up := newEmulator(t, "console-secret")
	s := startServer(t, up.URL, gatetest.Held("console-secret"),
		gatetest.Args("--api-keys-file="+writeKeys(t, "ops ops-key"), "--console"))
	h := s.httpCaller("")
	h.header = http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"navigate"}}
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
	if resp, _ := h.do(t, http.MethodGet, "/console/u1/secret", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET an unknown console file: %d, want 404", resp.StatusCode)
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
	if n := strings.Count(logs, `"msg":"http call refused"`); n != 2 {
		t.Errorf("%d refusal lines, want 2 (the keyless API call and the unknown file):\n%s", n, logs)
	}
}
