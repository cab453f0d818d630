package chatbotkit

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// heldSecret is the credential the tests' calls spend, as cbkgate's held
// one; long enough to be redacted from echoed upstream messages.
const heldSecret = secret.Value("sk-held-0123456789abcdef")

// safety bounds a wait that only a broken client would reach; tests never
// sleep to synchronise.
const safety = 10 * time.Second

// seen is what a test server received.
type seen struct {
	Method      string
	EscapedPath string
	RequestURI  string
	Query       string
	Header      http.Header
	Body        string
}

// recorder wraps a handler and keeps every request it received.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rc *recorder) wrap(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, seen{
			Method:      r.Method,
			EscapedPath: r.URL.EscapedPath(),
			RequestURI:  r.RequestURI,
			Query:       r.URL.RawQuery,
			Header:      r.Header.Clone(),
			Body:        string(b),
		})
		rc.mu.Unlock()
		h(w, r)
	})
}

func (rc *recorder) all() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.reqs...)
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

func (rc *recorder) last(t *testing.T) seen {
	t.Helper()
	all := rc.all()
	if len(all) == 0 {
		t.Fatal("the server received no request")
	}
	return all[len(all)-1]
}

// sleeper records the waits the retry loop asks for and does not wait.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// serve starts a loopback test server (httptest listens on 127.0.0.1) that
// records requests and answers with h.
func serve(t *testing.T, h http.HandlerFunc) (*httptest.Server, *recorder) {
	t.Helper()
	rc := &recorder{}
	srv := httptest.NewServer(rc.wrap(h))
	t.Cleanup(srv.Close)
	return srv, rc
}

// newTestClient returns a client for baseURL with the default transport and
// a recording sleeper; edit adjusts the options first.
func newTestClient(t *testing.T, baseURL string, edit func(*Options)) (*Client, *sleeper) {
	t.Helper()
	opts := Options{BaseURL: baseURL}
	if edit != nil {
		edit(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s := &sleeper{}
	c.sleep = s.sleep
	t.Cleanup(c.CloseIdleConnections)
	return c, s
}

// writeJSON answers with a status and a raw JSON body.
func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// hijackWrite sends raw as the whole response, bypassing net/http's framing,
// then closes the connection; with reset the close sends a TCP RST.
func hijackWrite(t *testing.T, w http.ResponseWriter, raw string, reset bool) {
	conn, bufrw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	bufrw.WriteString(raw)
	bufrw.Flush()
	if reset {
		conn.(*net.TCPConn).SetLinger(0)
	}
	conn.Close()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
