//go:build browser

package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/browsertest"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

// createCounter counts the token creates upstream saw, per user.
type createCounter struct {
	next http.Handler
	mu   sync.Mutex
	by   map[string]int
}

func (c *createCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// /v1/partner/user/{userId}/token/create, with or without /api.
	if parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api"), "/"); r.Method == http.MethodPost &&
		len(parts) == 7 && parts[5] == "token" && parts[6] == "create" {
		c.mu.Lock()
		c.by[parts[4]]++
		c.mu.Unlock()
	}
	c.next.ServeHTTP(w, r)
}

func (c *createCounter) count(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[user]
}

// pageScript is the start of every page's module script: check records a
// result, report hands them to browsertest.Run, attempt says what the page
// could see of a fetch.
const pageScript = `
const lines = []; let passed = 0, failed = 0;
const check = (ok, what) => { ok ? passed++ : failed++; lines.push((ok ? "ok   " : "FAIL ") + what); };
const report = () => { window.browsertestResult = { passed, failed, lines }; };
const attempt = async (url, init) => {
  try {
    const r = await fetch(url, init);
    return r.type === "opaque" ? "opaque" : "read " + r.status + " " + (await r.text());
  } catch (e) {
    return "error " + e.name;
  }
};
`

// foreignPage tries what issue 10 found working: simple requests that need
// no preflight (no-cors fetches, form POSTs of every encoding), and reading
// an answer with CORS.
const foreignPage = `
const create = API + "/v1/users/victim/tokens";
let r = await attempt(create, { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"name":"no-cors"}' });
check(r === "opaque", "no-cors text/plain create sent, answer opaque: " + r);
r = await attempt(create, { method: "POST", mode: "no-cors", body: new URLSearchParams({ name: "form" }) });
check(r === "opaque", "no-cors form create sent, answer opaque: " + r);
r = await attempt(create, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"name":"cors"}' });
check(r.startsWith("error"), "CORS create not readable: " + r);
r = await attempt(create, {});
check(r.startsWith("error"), "CORS list not readable: " + r);
for (const [i, enctype] of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"].entries()) {
  const frame = document.createElement("iframe");
  frame.name = "f" + i;
  document.body.appendChild(frame);
  const loaded = new Promise((done) => frame.addEventListener("load", done, { once: true }));
  const f = document.createElement("form");
  f.method = "POST"; f.action = create; f.enctype = enctype; f.target = frame.name;
  const input = document.createElement("input");
  input.name = '{"name":"form","x":"'; input.value = '"}';
  f.appendChild(input);
  document.body.appendChild(f);
  f.submit();
  await loaded;
  check(true, "form " + enctype + " submitted");
}
report();
`

// allowedPage creates and lists with JSON, reading both answers; even it
// cannot send a body that is not JSON.
const allowedPage = `
const tokens = API + "/v1/users/friend/tokens";
let r = await attempt(tokens, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"name":"from-allowed-page"}' });
check(r.startsWith("read 200 ") && r.includes('"token"'), "create read with its token: " + r.slice(0, 40));
r = await attempt(tokens, {});
check(r.startsWith("read 200 ") && r.includes("from-allowed-page"), "list read with the new token");
r = await attempt(tokens, { method: "POST", headers: { "Content-Type": "text/plain" }, body: '{"name":"text"}' });
check(r.startsWith("read 415 "), "text/plain create refused with 415: " + r.slice(0, 40));
report();
`

// TestBrowserCrossOrigin is the attack of issue 10 in a real Chromium: with
// callers let in unauthenticated (so a page needs no credentials), a page
// on an origin not on --cors-origins can neither create a token with a
// simple request (no-cors fetch, form POST) nor read an answer, while a
// page on an allowed origin can create and read.
func TestBrowserCrossOrigin(t *testing.T) {
	const secret = "browser-test-secret"
	up := &createCounter{next: emulator.New(emulator.Options{Secret: secret}), by: map[string]int{}}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()

	// Pages are served from "localhost" and call cbkgate at 127.0.0.1:
	// cross-site, as an attacker's page would be. The API's address is
	// known only once cbkgate listens, hence the indirection.
	var api string
	page := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><title>page</title><body><script type=\"module\">\nconst API = %q;\n%s\n%s</script></body>", api, pageScript, body)
		})
	}
	allowedSrv, foreignSrv := httptest.NewServer(page(allowedPage)), httptest.NewServer(page(foreignPage))
	defer allowedSrv.Close()
	defer foreignSrv.Close()
	allowedOrigin := "http://localhost:" + port(t, allowedSrv)
	foreignOrigin := "http://localhost:" + port(t, foreignSrv)

	cfg, err := config.Load([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=", "--upstream=" + upSrv.URL,
		"--allow-unauthenticated", "--cors-origins=" + allowedOrigin,
	}, func(k string) string { return map[string]string{"CHATBOTKIT_API_SECRET": secret}[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	a, err := app.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	api = "http://" + a.HTTPAddr().String()
	waitReady(t, api)

	browsertest.Run(t, "foreign origin", foreignOrigin+"/", time.Minute)
	if n := up.count("victim"); n != 0 {
		t.Errorf("the foreign page's requests created %d tokens upstream, want none", n)
	}
	// Each of its 7 requests (2 no-cors fetches, the CORS create's
	// preflight, the CORS list, 3 forms) was refused with 403.
	if n := refused(t, logs, http.StatusForbidden); n < 7 {
		t.Errorf("%d requests refused with 403, want the foreign page's 7:\n%s", n, logs.String())
	}

	browsertest.Run(t, "allowed origin", allowedOrigin+"/", time.Minute)
	if n := up.count("friend"); n != 1 {
		t.Errorf("the allowed page created %d tokens upstream, want 1", n)
	}
}

// refused counts the "http call refused" log lines with the given status.
func refused(t *testing.T, logs *testlog.Buffer, status int) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct {
			Msg    string `json:"msg"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "http call refused" && l.Status == status {
			n++
		}
	}
	return n
}

func port(t *testing.T, s *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not 200 within 10s: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
