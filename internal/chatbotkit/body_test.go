package chatbotkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBodyCaps(t *testing.T) {
	page := `{"items":[],"cursor":"` + strings.Repeat("c", 100) + `"}`
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("cursor") {
		case "chunked": // no Content-Length: the cap is found by reading
			w.Write([]byte(page[:50]))
			w.(http.Flusher).Flush()
			w.Write([]byte(page[50:]))
		default:
			writeJSON(w, 200, page)
		}
	})
	ctx := context.Background()
	small, _ := newTestClient(t, srv.URL, nil)
	small.maxBody = int64(len(page)) - 1
	exact, _ := newTestClient(t, srv.URL, nil)
	exact.maxBody = int64(len(page))

	for _, cur := range []string{"", "chunked"} {
		before := rc.count()
		if _, err := small.ListPage(ctx, heldSecret, "u", ListOptions{Cursor: cur}); !errors.Is(err, ErrResponseTooLarge) {
			t.Errorf("page %q over the cap: %v", cur, err)
		}
		if n := rc.count() - before; n != 1 {
			t.Errorf("page %q: a cap hit was retried: %d calls", cur, n)
		}
		if _, err := exact.ListPage(ctx, heldSecret, "u", ListOptions{Cursor: cur}); err != nil {
			t.Errorf("page %q at the cap: %v", cur, err)
		}
	}
}

func TestBodiesCutShort(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	cases := map[string]string{
		"Content-Length not met":  head + "Content-Length: 500\r\n\r\n" + `{"items":[{"id":"t1"},`,
		"chunked, no last chunk":  head + "Transfer-Encoding: chunked\r\n\r\n10\r\n" + `{"items":[{"id":` + "\r\n",
		"chunk cut in the middle": head + "Transfer-Encoding: chunked\r\n\r\n40\r\n" + `{"items":[{"id":`,
		"header cut":              "HTTP/1.1 200 OK\r\nContent-Le",
	}
	for name, raw := range cases {
		for _, reset := range []bool{false, true} {
			srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) { hijackWrite(t, w, raw, reset) })
			c, _ := newTestClient(t, srv.URL, nil)
			c.maxAttempts = 2
			page, err := c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
			if !errors.Is(err, ErrUnavailable) || page != nil {
				t.Errorf("%s (RST %v): %v, want ErrUnavailable", name, reset, err)
			}
			if n := rc.count(); n != 2 {
				t.Errorf("%s: %d calls: a cut-short read should be retried", name, n)
			}
			// Writes: an answer cut short is not a reason to send again.
			before := rc.count()
			if _, err := c.Create(context.Background(), heldSecret, "u", TokenInput{}); !errors.Is(err, ErrUnavailable) {
				t.Errorf("create, %s: %v", name, err)
			}
			if n := rc.count() - before; n != 1 {
				t.Errorf("create, %s: %d calls", name, n)
			}
		}
	}
}

// blockingServer blocks every request until its context ends, and reports
// that it started and that it saw the end.
type blockingServer struct {
	started, ended chan struct{}
	once1, once2   sync.Once
}

func newBlockingServer(t *testing.T, prefix string) (*httptest.Server, *blockingServer) {
	b := &blockingServer{started: make(chan struct{}), ended: make(chan struct{})}
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if prefix != "" {
			w.Write([]byte(prefix))
			w.(http.Flusher).Flush()
		}
		b.once1.Do(func() { close(b.started) })
		select {
		case <-r.Context().Done():
			b.once2.Do(func() { close(b.ended) })
		case <-time.After(safety):
		}
	})
	return srv, b
}

func (b *blockingServer) checkEnded(t *testing.T, what string) {
	t.Helper()
	select {
	case <-b.ended:
	case <-time.After(safety):
		t.Errorf("%s: the upstream request was not cancelled", what)
	}
}

func TestCancelReachesUpstream(t *testing.T) {
	calls := map[string]func(context.Context, *Client) error{
		"list": func(ctx context.Context, c *Client) error {
			_, err := c.ListPage(ctx, heldSecret, "u", ListOptions{})
			return err
		},
	}
	for k, v := range writeCalls {
		calls[k] = v
	}
	for name, call := range calls {
		srv, b := newBlockingServer(t, "")
		if name == "list" {
			// Headers and part of the body sent: cancelled while reading it.
			srv, b = newBlockingServer(t, `{"items":[`)
		}
		c, _ := newTestClient(t, srv.URL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-b.started; cancel() }()
		err := call(ctx, c)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v, want context.Canceled", name, err)
		}
		b.checkEnded(t, name)
	}
}

// cancelOnRead cancels the call's context on the body's first Read, so the
// cancel lands while the client is reading the body, not waiting for headers.
type cancelOnRead struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnRead) Read(p []byte) (int, error) {
	b.cancel()
	return b.ReadCloser.Read(p)
}

func TestCancelWhileReadingBody(t *testing.T) {
	for _, status := range []int{200, 503} {
		// The server sends the headers and one byte, then waits.
		var once sync.Once
		ended := make(chan struct{})
		srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			w.Write([]byte(" "))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				once.Do(func() { close(ended) })
			case <-time.After(safety):
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		tr := NewTransport()
		t.Cleanup(tr.CloseIdleConnections)
		c, _ := newTestClient(t, srv.URL, func(o *Options) {
			o.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := tr.RoundTrip(r)
				if err == nil {
					resp.Body = &cancelOnRead{resp.Body, cancel}
				}
				return resp, err
			})
		})
		c.maxAttempts = 1 // a second attempt would find the cancel in send
		_, err := c.ListPage(ctx, heldSecret, "u", ListOptions{})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Errorf("status %d: %v, want context.Canceled", status, err)
		}
		select {
		case <-ended:
		case <-time.After(safety):
			t.Errorf("status %d: the upstream request was not cancelled", status)
		}
	}
}

func TestDeadlineReachesUpstream(t *testing.T) {
	srv, b := newBlockingServer(t, "")
	c, _ := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Create(ctx, heldSecret, "u", TokenInput{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Errorf("%v, want context.DeadlineExceeded", err)
	}
	b.checkEnded(t, "create")
}

// TestClientTimeoutIsUnavailable: an http.Client timeout is not the caller's
// deadline and must not look like one.
func TestClientTimeoutIsUnavailable(t *testing.T) {
	srv, b := newBlockingServer(t, "")
	c, _ := newTestClient(t, srv.URL, nil)
	c.maxAttempts = 1
	c.hc.Timeout = 50 * time.Millisecond
	_, err := c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v, want ErrUnavailable and not DeadlineExceeded", err)
	}
	b.checkEnded(t, "list")
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusMovedPermanently)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	_, err := c.Create(context.Background(), heldSecret, "u", TokenInput{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 301 || rc.count() != 1 {
		t.Errorf("%v", err)
	}
}

// TestConnectionReuse counts the connections the server accepts across many
// calls of every kind, successes and errors, sequential and concurrent.
func TestConnectionReuse(t *testing.T) {
	var conns atomic.Int32
	rc := &recorder{}
	srv := httptest.NewUnstartedServer(rc.wrap(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/missing/"):
			writeJSON(w, 404, `{"message":"no such token","code":"NOT_FOUND"}`)
		case strings.HasSuffix(r.URL.Path, "/list"):
			writeJSON(w, 200, `{"items":[{"id":"t1"}],"cursor":"t1"}`)
		default:
			writeJSON(w, 200, `{"id":"t1","token":"sk-x"}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL, nil)
	// For the sequential calls, a transport that never holds two
	// connections: otherwise net/http may dial for the next request while
	// the previous answer's connection is still on its way back to the
	// pool, and the count would measure that race rather than reuse. A
	// connection that is not reused (a body left unread) is still closed
	// and replaced, and counted.
	sequential, _ := newTestClient(t, srv.URL, func(o *Options) {
		tr := NewTransport()
		tr.MaxConnsPerHost = 1
		o.Transport = tr
	})
	ctx := context.Background()
	round := func(c *Client) error {
		if _, err := c.ListPage(ctx, heldSecret, "u", ListOptions{}); err != nil {
			return err
		}
		if _, err := c.Create(ctx, heldSecret, "u", TokenInput{}); err != nil {
			return err
		}
		if _, err := c.Update(ctx, heldSecret, "u", "t", TokenInput{}); err != nil {
			return err
		}
		if _, err := c.Delete(ctx, heldSecret, "missing", "t"); err == nil {
			return errors.New("want a 404")
		}
		return nil
	}
	// Each round makes 4 requests.
	for i := 0; i < 40; i++ {
		if err := round(sequential); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("160 sequential calls used %d connections, want 1", n)
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := round(c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The transport may dial for a request that another connection serves
	// first, so a few more connections than workers are fine; one per
	// request (640) is not.
	if n := conns.Load(); n > 1+3*workers {
		t.Errorf("%d concurrent workers opened %d connections", workers, n)
	}
	if rc.count() != 4*(40+workers*20) {
		t.Errorf("%d requests", rc.count())
	}
}

// TestNoSecretInErrors: whatever fails, the credential does not appear in the
// error string, even when the upstream echoes it.
func TestNoSecretInErrors(t *testing.T) {
	cred := heldSecret.Reveal()
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch r.URL.Query().Get("cursor") {
		case "echo":
			writeJSON(w, 401, `{"message":"bad secret `+strings.TrimPrefix(auth, "Bearer ")+`","code":"NOT_AUTHENTICATED"}`)
		case "cut":
			hijackWrite(t, w, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{", true)
		default:
			writeJSON(w, 200, `{"items":"`+auth+`"}`)
		}
	})
	c, _ := newTestClient(t, srv.URL, nil)
	c.maxAttempts = 1
	ctx := context.Background()
	var errs []error
	for _, cur := range []string{"echo", "cut", "malformed"} {
		_, err := c.ListPage(ctx, heldSecret, "u", ListOptions{Cursor: cur})
		errs = append(errs, err)
	}
	dead, _ := newTestClient(t, "http://"+closedAddr(t), nil)
	dead.maxAttempts = 1
	_, err := dead.Create(ctx, heldSecret, "u", TokenInput{})
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(s, cred) {
			t.Errorf("case %d: the secret leaks: %s", i, s)
		}
	}
	var ae *APIError
	if !errors.As(errs[0], &ae) || ae.Message != "bad secret [REDACTED]" {
		t.Errorf("echoed secret: %v", errs[0])
	}
}
