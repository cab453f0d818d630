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
	item := `{"type":"item","data":{"id":"t1"}}` // 34 bytes
	page := `{"items":[],"cursor":"` + strings.Repeat("c", 100) + `"}`
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("cursor") {
		case "chunked": // no Content-Length: the cap is found by reading
			w.Write([]byte(page[:50]))
			w.(http.Flusher).Flush()
			w.Write([]byte(page[50:]))
		case "stream-ok":
			w.Write([]byte(jsonl(item, item)))
		case "stream-long":
			w.Write([]byte(jsonl(item, item+strings.Repeat(" ", 100), item)))
		case "stream-endless":
			// One endless line: the client must stop reading at the cap.
			chunk := []byte(strings.Repeat("x", 4096))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			writeJSON(w, 200, page)
		}
	})
	ctx := context.Background()
	small, _ := newTestClient(t, srv.URL, func(o *Options) { o.MaxBodyBytes = int64(len(page)) - 1; o.MaxLineBytes = len(item) })
	exact, _ := newTestClient(t, srv.URL, func(o *Options) { o.MaxBodyBytes = int64(len(page)) })

	for _, cur := range []string{"", "chunked"} {
		if _, err := small.ListPage(ctx, "", "u", ListOptions{Cursor: cur}); !errors.Is(err, ErrResponseTooLarge) {
			t.Errorf("page %q over the cap: %v", cur, err)
		}
		if _, err := exact.ListPage(ctx, "", "u", ListOptions{Cursor: cur}); err != nil {
			t.Errorf("page %q at the cap: %v", cur, err)
		}
	}
	if ids, err := collect(ctx, small, "", "u", ListOptions{Cursor: "stream-ok"}); err != nil || len(ids) != 2 {
		t.Errorf("lines at the cap: %v %v", ids, err)
	}
	if ids, err := collect(ctx, small, "", "u", ListOptions{Cursor: "stream-long"}); !errors.Is(err, ErrResponseTooLarge) || len(ids) != 1 {
		t.Errorf("a line over the cap: %v %v", ids, err)
	}
	before := rc.count()
	if _, err := collect(ctx, small, "", "u", ListOptions{Cursor: "stream-endless"}); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("an endless line: %v", err)
	}
	if n := rc.count() - before; n != 1 {
		t.Errorf("a cap hit was retried: %d calls", n)
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
			c, _ := newTestClient(t, srv.URL, func(o *Options) { o.MaxAttempts = 2 })
			page, err := c.ListPage(context.Background(), "", "u", ListOptions{})
			if !errors.Is(err, ErrUnavailable) || page != nil {
				t.Errorf("%s (RST %v): %v, want ErrUnavailable", name, reset, err)
			}
			if n := rc.count(); n != 2 {
				t.Errorf("%s: %d calls: a cut-short read should be retried", name, n)
			}
			// Writes: an answer cut short is not a reason to send again.
			before := rc.count()
			if _, err := c.Create(context.Background(), "", "u", TokenInput{}); !errors.Is(err, ErrUnavailable) {
				t.Errorf("create, %s: %v", name, err)
			}
			if n := rc.count() - before; n != 1 {
				t.Errorf("create, %s: %d calls", name, n)
			}
		}
	}
}

func TestStreamCutShort(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Type: application/jsonl\r\n"
	two := jsonl(`{"type":"item","data":{"id":"a"}}`, `{"type":"item","data":{"id":"b"}}`)
	cases := map[string]struct {
		raw     string
		reset   bool
		wantIDs int
		wantErr error
	}{
		"clean end, close-delimited":      {head + "Connection: close\r\n\r\n" + two, false, 2, nil},
		"valid last line without newline": {head + "Connection: close\r\n\r\n" + two + `{"type":"item","data":{"id":"c"}}`, false, 3, nil},
		"partial last line":               {head + "Connection: close\r\n\r\n" + two + `{"type":"item","da`, false, 2, ErrUnavailable},
		"partial last line, reset":        {head + "Connection: close\r\n\r\n" + two + `{"type":"item","da`, true, 2, ErrUnavailable},
		"Content-Length not met":          {head + "Content-Length: 1000\r\n\r\n" + two, false, 2, ErrUnavailable},
		"chunked, no last chunk":          {head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(two), two), false, 2, ErrUnavailable},
		"chunked, reset":                  {head + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(two), two), true, 2, ErrUnavailable},
	}
	for name, tc := range cases {
		srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) { hijackWrite(t, w, tc.raw, tc.reset) })
		c, _ := newTestClient(t, srv.URL, nil)
		ids, err := collect(context.Background(), c, "", "u", ListOptions{})
		if len(ids) != tc.wantIDs || (tc.wantErr == nil && err != nil) || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: yielded %v, err %v; want %d items and %v", name, ids, err, tc.wantIDs, tc.wantErr)
		}
		if n := rc.count(); n != 1 {
			t.Errorf("%s: %d calls after items were yielded", name, n)
		}
	}
}

func TestStreamYieldsAsItArrives(t *testing.T) {
	proceed := make(chan struct{})
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(jsonl(`{"type":"item","data":{"id":"a"}}`)))
		w.(http.Flusher).Flush()
		select {
		case <-proceed: // the client saw "a" before "b" was sent
		case <-time.After(safety):
			return
		}
		w.Write([]byte(jsonl(`{"type":"item","data":{"id":"b"}}`)))
	})
	c, _ := newTestClient(t, srv.URL, nil)
	var ids []string
	err := c.ListStream(context.Background(), "", "u", ListOptions{}, func(tok Token) error {
		ids = append(ids, tok.ID)
		if tok.ID == "a" {
			close(proceed)
		}
		return nil
	})
	if err != nil || strings.Join(ids, ",") != "a,b" {
		t.Fatalf("%v %v", ids, err)
	}
}

func TestYieldErrorStopsTheStream(t *testing.T) {
	stop := errors.New("client went away")
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			fmt.Fprintf(w, `{"type":"item","data":{"id":"t%d"}}`+"\n", i)
		}
	})
	c, _ := newTestClient(t, srv.URL, nil)
	var n int
	err := c.ListStream(context.Background(), "", "u", ListOptions{}, func(Token) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 || rc.count() != 1 {
		t.Errorf("err %v after %d items and %d calls; want the yield error itself after 3 and 1", err, n, rc.count())
	}
	// Stopped at the first item: still no retry.
	n = 0
	err = c.ListStream(context.Background(), "", "u", ListOptions{}, func(Token) error { n++; return &APIError{Status: 503} })
	if n != 1 || rc.count() != 2 {
		t.Errorf("a yield error was retried: %v, %d items, %d calls", err, n, rc.count())
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
			_, err := c.ListPage(ctx, "", "u", ListOptions{})
			return err
		},
		"stream": func(ctx context.Context, c *Client) error {
			_, err := collect(ctx, c, "", "u", ListOptions{})
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
		for _, name := range []string{"page", "stream"} {
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
				o.MaxAttempts = 1 // a second attempt would find the cancel in send
				o.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					resp, err := tr.RoundTrip(r)
					if err == nil {
						resp.Body = &cancelOnRead{resp.Body, cancel}
					}
					return resp, err
				})}
			})
			var err error
			if name == "page" {
				_, err = c.ListPage(ctx, "", "u", ListOptions{})
			} else {
				_, err = collect(ctx, c, "", "u", ListOptions{})
			}
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
				t.Errorf("%s, status %d: %v, want context.Canceled", name, status, err)
			}
			select {
			case <-ended:
			case <-time.After(safety):
				t.Errorf("%s, status %d: the upstream request was not cancelled", name, status)
			}
		}
	}
}

func TestDeadlineReachesUpstream(t *testing.T) {
	srv, b := newBlockingServer(t, "")
	c, _ := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Create(ctx, "", "u", TokenInput{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Errorf("%v, want context.DeadlineExceeded", err)
	}
	b.checkEnded(t, "create")
}

// TestCancelMidStream: the client cancels while handling the first item; the
// stream ends with context.Canceled and the upstream sees it.
func TestCancelMidStream(t *testing.T) {
	srv, b := newBlockingServer(t, jsonl(`{"type":"item","data":{"id":"a"}}`))
	c, _ := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n int
	err := c.ListStream(ctx, "", "u", ListOptions{}, func(Token) error { n++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("%v after %d items", err, n)
	}
	b.checkEnded(t, "stream")
}

// TestClientTimeoutIsUnavailable: an http.Client timeout is not the caller's
// deadline and must not look like one.
func TestClientTimeoutIsUnavailable(t *testing.T) {
	srv, b := newBlockingServer(t, "")
	c, _ := newTestClient(t, srv.URL, func(o *Options) {
		o.HTTPClient = &http.Client{Transport: NewTransport(), Timeout: 50 * time.Millisecond}
		o.MaxAttempts = 1
	})
	_, err := c.ListPage(context.Background(), "", "u", ListOptions{})
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
	_, err := c.Create(context.Background(), "", "u", TokenInput{})
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
		case r.Header.Get("Accept") == "application/jsonl":
			for i := 0; i < 50; i++ {
				fmt.Fprintf(w, `{"type":"item","data":{"id":"t%d"}}`+"\n", i)
			}
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
	ctx := context.Background()
	round := func() error {
		if _, err := c.ListPage(ctx, "", "u", ListOptions{}); err != nil {
			return err
		}
		if ids, err := collect(ctx, c, "", "u", ListOptions{}); err != nil || len(ids) != 50 {
			return fmt.Errorf("stream: %d, %v", len(ids), err)
		}
		if _, err := c.Create(ctx, "", "u", TokenInput{}); err != nil {
			return err
		}
		if _, err := c.Update(ctx, "", "u", "t", TokenInput{}); err != nil {
			return err
		}
		if _, err := c.Delete(ctx, "", "missing", "t"); err == nil {
			return errors.New("want a 404")
		}
		return nil
	}
	for i := 0; i < 40; i++ {
		if err := round(); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("200 sequential calls used %d connections, want 1", n)
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := round(); err != nil {
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
	// request (800) is not.
	if n := conns.Load(); n > 1+3*workers {
		t.Errorf("%d concurrent workers opened %d connections", workers, n)
	}
	if rc.count() != 200+workers*100 {
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
	c, _ := newTestClient(t, srv.URL, func(o *Options) { o.MaxAttempts = 1 })
	ctx := context.Background()
	var errs []error
	for _, cur := range []string{"echo", "cut", "malformed"} {
		_, err := c.ListPage(ctx, "", "u", ListOptions{Cursor: cur})
		errs = append(errs, err)
		_, err = collect(ctx, c, "", "u", ListOptions{Cursor: cur})
		errs = append(errs, err)
	}
	dead, _ := newTestClient(t, "http://"+closedAddr(t), func(o *Options) { o.MaxAttempts = 1 })
	_, err := dead.Create(ctx, "", "u", TokenInput{})
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
