package chatbotkit

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// scripted answers the n-th request (from 0) with statuses[n], the last one
// repeating; 200 is a one-item page or stream.
func scripted(statuses ...int) http.HandlerFunc {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		st := statuses[min(i, len(statuses)-1)]
		if st != 200 {
			if st == 429 || st == 503 {
				w.Header().Set("Retry-After", "1")
			}
			writeJSON(w, st, `{"message":"try `+strconv.Itoa(i)+`","code":"C"}`)
			return
		}
		writeJSON(w, 200, `{"id":"t1","token":"sk-new","items":[{"id":"t1"}]}`)
	}
}

// listCalls are the retried reads.
var listCalls = map[string]func(*Client) error{
	"page": func(c *Client) error {
		_, err := c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
		return err
	},
}

// writeCalls are the writes, retried only when nothing reached upstream.
var writeCalls = map[string]func(context.Context, *Client) error{
	"create": func(ctx context.Context, c *Client) error {
		_, err := c.Create(ctx, heldSecret, "u", TokenInput{})
		return err
	},
	"update": func(ctx context.Context, c *Client) error {
		_, err := c.Update(ctx, heldSecret, "u", "t", TokenInput{})
		return err
	},
	"delete": func(ctx context.Context, c *Client) error { _, err := c.Delete(ctx, heldSecret, "u", "t"); return err },
}

func TestListRetriesTransientStatuses(t *testing.T) {
	for name, call := range listCalls {
		t.Run(name, func(t *testing.T) {
			srv, rc := serve(t, scripted(429, 502, 503, 504, 200))
			c, sl := newTestClient(t, srv.URL, nil)
			c.maxAttempts = 5
			if err := call(c); err != nil {
				t.Fatal(err)
			}
			if n := rc.count(); n != 5 {
				t.Errorf("%d upstream calls, want 5", n)
			}
			waits := sl.all()
			if len(waits) != 4 {
				t.Fatalf("waits %v", waits)
			}
			// 429 and 503 carried Retry-After: 1.
			if waits[0] < time.Second || waits[2] < time.Second {
				t.Errorf("Retry-After not honoured: %v", waits)
			}
		})
	}
}

func TestListAttemptsAreBounded(t *testing.T) {
	for name, call := range listCalls {
		for _, attempts := range []int{0, 1, 3} { // 0: as New set it
			srv, rc := serve(t, scripted(503))
			c, _ := newTestClient(t, srv.URL, nil)
			if attempts != 0 {
				c.maxAttempts = attempts
			}
			err := call(c)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != 503 || ae.RetryAfter != time.Second {
				t.Errorf("%s: %v", name, err)
			}
			want := attempts
			if want == 0 {
				want = DefaultMaxAttempts
			}
			if n := rc.count(); n != want {
				t.Errorf("%s, maxAttempts %d: %d upstream calls, want %d", name, attempts, n, want)
			}
		}
	}
}

func TestListNotRetriedOnOtherStatuses(t *testing.T) {
	for name, call := range listCalls {
		for _, st := range []int{400, 401, 403, 404, 408, 409, 500, 501} {
			srv, rc := serve(t, scripted(st, 200))
			c, _ := newTestClient(t, srv.URL, nil)
			var ae *APIError
			if err := call(c); !errors.As(err, &ae) || ae.Status != st {
				t.Errorf("%s %d: %v", name, st, err)
			}
			if n := rc.count(); n != 1 {
				t.Errorf("%s %d: %d upstream calls, want 1", name, st, n)
			}
		}
	}
}

func TestWritesNotRetriedAfterAnAnswer(t *testing.T) {
	for name, call := range writeCalls {
		for _, st := range []int{429, 500, 502, 503, 504} {
			srv, rc := serve(t, scripted(st, 200))
			c, sl := newTestClient(t, srv.URL, nil)
			var ae *APIError
			if err := call(context.Background(), c); !errors.As(err, &ae) || ae.Status != st {
				t.Errorf("%s %d: %v", name, st, err)
			}
			if n := rc.count(); n != 1 || len(sl.all()) != 0 {
				t.Errorf("%s %d: %d upstream calls, %d waits; want exactly one call", name, st, n, len(sl.all()))
			}
		}
	}
}

// TestWritesRetriedWhenConnectionRefused: the first dials go to a port
// nothing listens on (a real ECONNREFUSED), later ones to the server.
func TestWritesRetriedWhenConnectionRefused(t *testing.T) {
	for name, call := range writeCalls {
		srv, rc := serve(t, scripted(200))
		dead := closedAddr(t)
		var dials atomic.Int32
		tr := NewTransport()
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) <= 2 {
				addr = dead
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		c, sl := newTestClient(t, srv.URL, func(o *Options) { o.Transport = tr })
		t.Cleanup(tr.CloseIdleConnections)
		if err := call(context.Background(), c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d, n, w := dials.Load(), rc.count(), len(sl.all()); d != 3 || n != 1 || w != 2 {
			t.Errorf("%s: %d dials, %d upstream calls, %d waits; want 3, 1, 2", name, d, n, w)
		}
	}
}

func TestRefusedEverywhere(t *testing.T) {
	base := "http://" + closedAddr(t)
	c, sl := newTestClient(t, base, nil)
	c.maxAttempts = 3
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: %v, want ErrUnavailable wrapping ECONNREFUSED", name, err)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v looks like a context error", name, err)
		}
	}
	for name, call := range writeCalls {
		check(name, call(context.Background(), c))
	}
	for name, call := range listCalls {
		check(name, call(c))
	}
	if w := len(sl.all()); w != (len(writeCalls)+len(listCalls))*2 {
		t.Errorf("%d waits, want 2 per call", w)
	}
}

// resetOnce resets the connection of the first request after reading it
// whole, then behaves like scripted(200).
func resetOnce(t *testing.T, reset bool) http.HandlerFunc {
	var n atomic.Int32
	ok := scripted(200)
	return func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			hijackWrite(t, w, "", reset)
			return
		}
		ok(w, r)
	}
}

func TestWritesNotRetriedAfterReset(t *testing.T) {
	for name, call := range writeCalls {
		for _, reset := range []bool{true, false} {
			srv, rc := serve(t, resetOnce(t, reset))
			c, _ := newTestClient(t, srv.URL, nil)
			err := call(context.Background(), c)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s (RST %v): %v, want ErrUnavailable", name, reset, err)
			}
			if n := rc.count(); n != 1 {
				t.Errorf("%s (RST %v): %d upstream calls, want 1", name, reset, n)
			}
		}
	}
}

func TestListRetriedAfterReset(t *testing.T) {
	for name, call := range listCalls {
		for _, reset := range []bool{true, false} {
			srv, rc := serve(t, resetOnce(t, reset))
			c, _ := newTestClient(t, srv.URL, nil)
			if err := call(c); err != nil {
				t.Errorf("%s (RST %v): %v", name, reset, err)
			}
			if n := rc.count(); n != 2 {
				t.Errorf("%s (RST %v): %d upstream calls, want 2", name, reset, n)
			}
		}
	}
}

func TestBackoffSchedule(t *testing.T) {
	c, err := New(Options{BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	var asked []int64
	c.randN = func(n int64) int64 { asked = append(asked, n); return n - 1 }
	want := []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}
	for i, w := range want {
		if got := c.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := c.backoff(200); got != 2*time.Second {
		t.Errorf("backoff(200) = %v", got)
	}
	if asked[0] != int64(100*time.Millisecond)+1 {
		t.Errorf("jitter drawn from [0, %d)", asked[0])
	}
	c.randN = func(int64) int64 { return 0 }
	if got := c.backoff(3); got != 0 {
		t.Errorf("full jitter must reach 0, got %v", got)
	}
	c.maxBackoff = 250 * time.Millisecond
	c.randN = func(n int64) int64 { return n - 1 }
	if got := c.backoff(3); got != 250*time.Millisecond {
		t.Errorf("maxBackoff not applied: %v", got)
	}
}

func TestBackoffWaitsBetweenAttempts(t *testing.T) {
	srv, _ := serve(t, scripted(502))
	c, sl := newTestClient(t, srv.URL, nil)
	c.maxAttempts = 4
	c.maxBackoff = time.Second
	c.randN = func(n int64) int64 { return n - 1 }
	_, _ = c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	got := sl.all()
	if len(got) != len(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("waits %v, want %v", got, want)
		}
	}
}

// TestDeadlineShorterThanWait uses the real sleep: the client must give up
// at once, not sleep into the deadline.
func TestDeadlineShorterThanWait(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		deadline   time.Duration // 0: none
	}{
		{"Retry-After past the deadline", "30", 5 * time.Second},
		{"Retry-After beyond the longest wait", "3600", 0},
		{"backoff past the deadline", "", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				writeJSON(w, 503, `{"message":"busy","code":"SERVICE_UNAVAILABLE"}`)
			})
			c, _ := newTestClient(t, srv.URL, nil)
			c.maxBackoff = 10 * time.Second
			c.sleep = sleepCtx
			c.randN = func(n int64) int64 { return n - 1 } // a 100 ms backoff
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			start := time.Now()
			_, err := c.ListPage(ctx, heldSecret, "u", ListOptions{})
			elapsed := time.Since(start)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != 503 {
				t.Fatalf("%v, want the 503", err)
			}
			if n := rc.count(); n != 1 {
				t.Errorf("%d upstream calls, want 1", n)
			}
			if elapsed > 2*time.Second || (tc.deadline > 0 && elapsed >= tc.deadline) {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

func TestCancelDuringRetryWait(t *testing.T) {
	first := make(chan struct{})
	var once sync.Once
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "20")
		writeJSON(w, 429, `{"message":"later","code":"TOO_MANY_REQUESTS"}`)
		once.Do(func() { close(first) })
	})
	c, _ := newTestClient(t, srv.URL, nil)
	c.sleep = sleepCtx
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-first; cancel() }()
	done := make(chan error, 1)
	go func() { _, err := c.ListPage(ctx, heldSecret, "u", ListOptions{}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Errorf("%v, want context.Canceled", err)
		}
	case <-time.After(safety):
		t.Fatal("the retry wait ignored the cancel")
	}
	if n := rc.count(); n != 1 {
		t.Errorf("%d upstream calls", n)
	}
}

// TestNonTracingTransport: a transport that reports no trace events and
// fails with a dial error is retried; one that fails otherwise is not.
func TestNonTracingTransport(t *testing.T) {
	var calls atomic.Int32
	var fail error
	c, _ := newTestClient(t, "http://127.0.0.1:1", func(o *Options) {
		o.Transport = roundTripFunc(func(*http.Request) (*http.Response, error) {
			calls.Add(1)
			return nil, fail
		})
	})
	c.maxAttempts = 3
	fail = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if _, err := c.Create(context.Background(), heldSecret, "u", TokenInput{}); !errors.Is(err, ErrUnavailable) || calls.Load() != 3 {
		t.Errorf("dial error: %v after %d calls, want 3", err, calls.Load())
	}
	calls.Store(0)
	fail = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	if _, err := c.Create(context.Background(), heldSecret, "u", TokenInput{}); !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ECONNRESET) || calls.Load() != 1 {
		t.Errorf("reset: %v after %d calls, want 1", err, calls.Load())
	}
}

// TestCertificateFailureNotRetried: a certificate the client does not trust
// is ErrUnavailable, and asking again would meet the same certificate.
func TestCertificateFailureNotRetried(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(scripted(200))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL, nil) // NewTransport does not trust the test CA
	_, err := c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
	var verr *tls.CertificateVerificationError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &verr) {
		t.Errorf("%v, want ErrUnavailable wrapping a certificate error", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	// The same server through a client that trusts it works.
	trusted, _ := newTestClient(t, srv.URL, func(o *Options) { o.Transport = srv.Client().Transport })
	if _, err := trusted.ListPage(context.Background(), heldSecret, "u", ListOptions{}); err != nil {
		t.Errorf("trusted: %v", err)
	}
}
