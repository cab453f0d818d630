package app

import (
	"net/http"
	"sync"
	"time"
)

// httpLimits holds the HTTP listener's limits on each request:
// bodyTimeout for its body, stalledReaderTimeout for each write of its
// answer (a streamed List the client stopped reading), and, on HTTP/2, its
// connection's budget of body bytes (see byteBudget). A peer that misses a
// deadline gets its connection (HTTP/1) or stream (HTTP/2) closed and the
// handler's read or write fails, which ends the call and its upstream work.
func httpLimits(next http.Handler) http.Handler {
	body, stalled := timeouts.body, timeouts.stalled
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := &deadlines{rc: http.NewResponseController(w), h2: r.ProtoMajor >= 2}
		defer d.stop()
		if hasBody(r) {
			// Also bounds net/http's own discarding of an HTTP/1 body the
			// handler did not read (a call refused before its body). Once
			// the body has been read to its end, net/http lifts the
			// deadline itself (HTTP/1: its background read; HTTP/2: a
			// deadline does nothing to a body already complete), so a long
			// call is not cut by it.
			d.readWithin(body)
			if b, ok := r.Context().Value(httpBudgetKey{}).(*byteBudget); ok && d.h2 {
				bb := &budgetedBody{ReadCloser: r.Body, ctx: r.Context(), budget: b, expired: d.readExpired}
				r.Body = bb
				defer bb.done()
			}
		}
		next.ServeHTTP(&stallWriter{ResponseWriter: w, d: d, after: stalled}, r)
	})
}

// hasBody reports whether a request may still send body bytes. net/http
// gives every HTTP/2 request a Body; one whose HEADERS ended the stream has
// a ContentLength of 0, as has an HTTP/1 request without a body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// deadlines sets a request's read and write deadlines. On HTTP/1 they are
// the connection's. On HTTP/2 net/http arms a timer per stream for each,
// which holds the whole stream until it fires, and it arms it even when the
// stream has already been reset: a client opening and resetting streams
// (HEADERS then RST_STREAM, CVE-2023-44487) made the server keep 50,000 of
// them, 22 MiB, for the 30 s of bodyTimeout. So on HTTP/2 the timers are
// cbkgate's own, stopped when the handler returns, and only when one fires
// is net/http told: a deadline in the past acts at once and arms nothing.
type deadlines struct {
	rc *http.ResponseController
	h2 bool

	mu          sync.Mutex
	stopped     bool // the handler has returned: rc is not to be used
	read, write *time.Timer
	readExpired chan struct{} // closed when the read deadline passes
}

// readWithin gives the request body d to arrive.
func (d *deadlines) readWithin(after time.Duration) {
	if !d.h2 {
		_ = d.rc.SetReadDeadline(time.Now().Add(after))
		return
	}
	d.readExpired = make(chan struct{})
	d.read = time.AfterFunc(after, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		close(d.readExpired)
		if !d.stopped {
			_ = d.rc.SetReadDeadline(time.Now().Add(-time.Second))
		}
	})
}

// writeBy moves the write deadline to t.
func (d *deadlines) writeBy(t time.Time) {
	if !d.h2 {
		_ = d.rc.SetWriteDeadline(t)
		return
	}
	if d.write == nil {
		d.write = time.AfterFunc(time.Until(t), d.writeMissed)
		return
	}
	d.write.Reset(time.Until(t))
}

func (d *deadlines) writeMissed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		_ = d.rc.SetWriteDeadline(time.Now().Add(-time.Second))
	}
}

// stop ends the timers; the handler has returned.
func (d *deadlines) stop() {
	if !d.h2 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	if d.read != nil {
		d.read.Stop()
	}
	if d.write != nil {
		d.write.Stop()
	}
}

// stallWriter gives every write of an answer stalledReaderTimeout to go
// out. The deadline moves on at most once per 1/60 of the timeout, so a
// fast stream does not pay for it on every token.
type stallWriter struct {
	http.ResponseWriter
	d     *deadlines
	after time.Duration
	until time.Time
}

func (s *stallWriter) extend() {
	now := time.Now()
	if s.until.Sub(now) < s.after-s.after/60 {
		s.until = now.Add(s.after)
		s.d.writeBy(s.until)
	}
}

func (s *stallWriter) WriteHeader(code int) {
	s.extend()
	s.ResponseWriter.WriteHeader(code)
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.extend()
	return s.ResponseWriter.Write(p)
}

// Flush is http.Flusher, for handlers that stream with it.
func (s *stallWriter) Flush() { _ = s.FlushError() }

// FlushError is what http.ResponseController (grpc-gateway's streaming
// uses one) calls to flush: it passes on the error of a flush that missed
// its deadline, which ends the stream.
func (s *stallWriter) FlushError() error {
	s.extend()
	return s.d.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
