package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestBrowserProtection: a request from a foreign origin (by Origin or by
// Sec-Fetch-Site) is 403, a POST or PATCH body a browser could send without
// a preflight is 415, and neither reaches the gRPC server; clients that
// are not browsers (no Origin), curl -d included, are unaffected.
func TestBrowserProtection(t *testing.T) {
	const (
		allowed = "https://app.example"
		foreign = "https://evil.example"
		create  = "/v1/users/u1/tokens"
		token   = "/v1/users/u1/tokens/t1"
	)
	type tc struct {
		name         string
		method, path string
		hdr          []string
		want         int
	}
	own := func(e *env) string { return e.url } // the server's own origin
	listed := []tc{
		{"no origin, JSON", "POST", create, []string{"Content-Type", "application/json"}, 200},
		{"no origin, JSON with charset", "POST", create, []string{"Content-Type", "application/json; charset=utf-8"}, 200},
		{"no origin, JSON in capitals", "POST", create, []string{"Content-Type", "Application/JSON"}, 200},
		{"no origin, no Content-Type", "POST", create, nil, 200},
		{"no origin, form (curl -d)", "POST", create, []string{"Content-Type", "application/x-www-form-urlencoded"}, 200},
		{"no origin, text/plain", "POST", create, []string{"Content-Type", "text/plain"}, 415},
		{"no origin, multipart", "POST", create, []string{"Content-Type", "multipart/form-data; boundary=x"}, 415},
		{"no origin, PATCH text/plain", "PATCH", token, []string{"Content-Type", "text/plain;charset=UTF-8"}, 415},
		{"no origin, two Content-Types", "POST", create, []string{"Content-Type", "application/json", "Content-Type", "text/plain"}, 415},
		{"no origin, unparseable Content-Type", "POST", create, []string{"Content-Type", "application/json; ="}, 415},
		{"allowed origin, JSON", "POST", create, []string{"Origin", allowed, "Content-Type", "application/json"}, 200},
		{"allowed origin, form", "POST", create, []string{"Origin", allowed, "Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"allowed origin, text/plain", "POST", create, []string{"Origin", allowed, "Content-Type", "text/plain"}, 415},
		{"allowed origin, cross-site fetch", "POST", create, []string{"Origin", allowed, "Sec-Fetch-Site", "cross-site", "Content-Type", "application/json"}, 200},
		{"allowed origin, GET", "GET", create, []string{"Origin", allowed}, 200},
		{"foreign origin, JSON", "POST", create, []string{"Origin", foreign, "Content-Type", "application/json"}, 403},
		{"foreign origin, text/plain", "POST", create, []string{"Origin", foreign, "Content-Type", "text/plain"}, 403},
		{"foreign origin, GET", "GET", create, []string{"Origin", foreign}, 403},
		{"foreign origin, HEAD", "HEAD", create, []string{"Origin", foreign}, 403},
		{"foreign origin, DELETE", "DELETE", token, []string{"Origin", foreign}, 403},
		{"foreign origin, preflight", "OPTIONS", create, []string{"Origin", foreign, "Access-Control-Request-Method", "POST"}, 403},
		{"cross-site fetch without Origin", "POST", create, []string{"Sec-Fetch-Site", "cross-site", "Content-Type", "application/json"}, 403},
		{"same-site fetch without Origin", "DELETE", token, []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"same-origin fetch", "POST", create, []string{"Sec-Fetch-Site", "same-origin", "Content-Type", "application/json"}, 200},
		{"user-typed navigation", "GET", create, []string{"Sec-Fetch-Site", "none"}, 200},
		{"DELETE with text/plain", "DELETE", token, []string{"Content-Type", "text/plain"}, 200},
	}
	for _, c := range listed {
		t.Run("listed origins/"+c.name, func(t *testing.T) {
			f := &fake{}
			e := start(t, f, Options{CORSOrigins: []string{allowed}})
			checkBrowser(t, e, f, c.method, c.path, c.hdr, c.want)
		})
	}

	// No CORS origins: only the server's own origin passes.
	t.Run("no origins/own origin", func(t *testing.T) {
		f := &fake{}
		e := start(t, f, Options{})
		checkBrowser(t, e, f, "POST", create, []string{"Origin", own(e), "Content-Type", "application/json"}, 200)
	})
	t.Run("no origins/other origin", func(t *testing.T) {
		f := &fake{}
		e := start(t, f, Options{})
		checkBrowser(t, e, f, "POST", create, []string{"Origin", allowed, "Content-Type", "application/json"}, 403)
	})
	// "*": every origin may call, but the body rule still holds.
	t.Run("any origin/JSON", func(t *testing.T) {
		f := &fake{}
		e := start(t, f, Options{CORSOrigins: []string{"*"}})
		checkBrowser(t, e, f, "POST", create, []string{"Origin", foreign, "Content-Type", "application/json"}, 200)
	})
	t.Run("any origin/text/plain", func(t *testing.T) {
		f := &fake{}
		e := start(t, f, Options{CORSOrigins: []string{"*"}})
		checkBrowser(t, e, f, "POST", create, []string{"Origin", foreign, "Content-Type", "text/plain"}, 415)
	})
}

func checkBrowser(t *testing.T, e *env, f *fake, method, path string, hdr []string, want int) {
	t.Helper()
	body := ""
	if method == "POST" || method == "PATCH" {
		body = `{"name":"n"}`
	}
	resp, b := e.do(t, method, path, body, hdr...)
	if resp.StatusCode != want {
		t.Fatalf("%s %s %q: HTTP %d %s, want %d", method, path, hdr, resp.StatusCode, b, want)
	}
	reached := len(f.called()) > 0
	if (want == 200) != reached {
		t.Errorf("reached the gRPC server: %v, want %v", reached, want == 200)
	}
	if want == 200 || method == "HEAD" {
		return
	}
	// Refusals are JSON google.rpc.Status with ErrorInfo, like every error.
	var st struct {
		Code    int
		Details []struct {
			Type   string `json:"@type"`
			Reason string
			Domain string
		}
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.Details) == 0 || st.Details[0].Domain != "cbkgate" {
		t.Errorf("body %s: not a Status with cbkgate ErrorInfo (%v)", b, err)
	}
	if wantReason := map[int]string{403: "CROSS_ORIGIN", 415: "UNSUPPORTED_MEDIA_TYPE"}[want]; len(st.Details) > 0 && st.Details[0].Reason != wantReason {
		t.Errorf("reason %q, want %q", st.Details[0].Reason, wantReason)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "" && want == http.StatusForbidden {
		t.Errorf("a refused origin got Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
