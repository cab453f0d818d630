// Package faultyupstream is a scriptable, misbehaving stand-in for
// ChatBotKit's partner user token API, for tests only: no production code
// imports it. Where internal/emulator is the well-behaved upstream, this one
// answers each request with whatever the test scripted for its route: an
// error status with a {message, code} body and headers such as Retry-After,
// a connection reset, a body cut short (a JSON page shorter than its
// Content-Length, a JSONL stream ending mid-line), malformed JSON, a body
// larger than any cap, a slow answer, or no answer at all until released or
// until the request's context ends.
//
// It serves real HTTP/1.1 on 127.0.0.1 and records, per route, how often it
// was called and what each request looked like, including whether and when
// the request's context was cancelled while it was being held. Waiting on
// those records is event-driven (see Server.Wait), so tests never sleep.
package faultyupstream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Route is one of the four token endpoints.
type Route string

const (
	List   Route = "list"
	Create Route = "create"
	Update Route = "update"
	Delete Route = "delete"
	// Unknown is any path that is not one of the four endpoints. It answers
	// 404; a test that sees it has found an id that became another route.
	Unknown Route = "unknown"
)

// Token is a token as the upstream lists it.
type Token struct {
	ID          string         `json:"id"`
	Name        string         `json:"name,omitempty"`
	Description string         `json:"description,omitempty"`
	Meta        map[string]any `json:"meta,omitempty"`
	CreatedAt   int64          `json:"createdAt"`
	UpdatedAt   int64          `json:"updatedAt"`
}

// Tokens returns n tokens with ids prefix0 .. prefix(n-1).
func Tokens(prefix string, n int) []Token {
	out := make([]Token, n)
	for i := range out {
		ms := int64(1_700_000_000_000 + i)
		out[i] = Token{ID: prefix + strconv.Itoa(i), Name: "name " + strconv.Itoa(i), CreatedAt: ms, UpdatedAt: ms}
	}
	return out
}

// Request is what the server recorded about one request.
type Request struct {
	Seq         int // 1-based, across routes, in arrival order
	Route       Route
	Method      string
	EscapedPath string
	Query       url.Values
	Header      http.Header
	Body        string
	// UserID and TokenID are the unescaped path segments ("" when absent).
	UserID, TokenID string
	Reply           string // the name of the reply it got
	Arrived         time.Time
	// Held: the reply kept the request waiting (Hang, Slow). Cancelled: its
	// context ended while it was held, at CancelledAt.
	Held        bool
	Cancelled   bool
	CancelledAt time.Time
	// Done: the handler has returned.
	Done bool
	// BytesWritten counts the body bytes of an Oversized reply that went out.
	BytesWritten int64
}

// Reply is how the server answers one request. Build one with the
// functions of this package.
type Reply struct {
	name   string
	header http.Header
	serve  func(s *Server, rec int, w http.ResponseWriter, r *http.Request)
}

// String names the reply, for failure messages.
func (r Reply) String() string { return r.name }

// WithHeader returns r with a response header added (e.g. Retry-After).
// Replies that hijack the connection ignore it.
func (r Reply) WithHeader(key, value string) Reply {
	h := r.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Add(key, value)
	r.header = h
	r.name += fmt.Sprintf(" +%s: %s", key, value)
	return r
}

// Server is a running faulty upstream. Create it with New; Close it.
type Server struct {
	// URL is the base URL to configure as the upstream: http://127.0.0.1:port.
	URL string

	srv *http.Server
	lis net.Listener

	mu       sync.Mutex
	closed   bool
	active   int           // handlers running
	changed  chan struct{} // closed and replaced on every change to the records
	scripts  map[Route][]Reply
	defaults map[Route]Reply
	reqs     []Request
	released chan struct{} // closed by Release
	nextID   int
	conns    int // connections accepted
}

// New starts a server on 127.0.0.1 with an empty script: every route gets
// its default reply (an empty page, a new token, the id it was given).
func New() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:      "http://" + lis.Addr().String(),
		lis:      lis,
		changed:  make(chan struct{}),
		scripts:  map[Route][]Reply{},
		defaults: map[Route]Reply{},
		released: make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.conns++
				s.mu.Unlock()
			}
		},
	}
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Close releases held requests, closes the listener and every connection,
// and waits for all handlers to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.Release()
	_ = s.srv.Close()
	for {
		s.mu.Lock()
		n, ch := s.active, s.changed
		s.mu.Unlock()
		if n == 0 {
			return
		}
		<-ch
	}
}

// Script queues replies for a route: the next requests to it get them in
// order; once they are used up, the route's default answers.
func (s *Server) Script(route Route, replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[route] = append(s.scripts[route], replies...)
}

// SetDefault sets the reply for requests to route that find no scripted one.
func (s *Server) SetDefault(route Route, reply Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaults[route] = reply
}

// Release lets every held request (Hang) go, now and from now on.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.released:
	default:
		close(s.released)
	}
}

// Calls returns how many requests reached route.
func (s *Server) Calls(route Route) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Route == route {
			n++
		}
	}
	return n
}

// Conns returns how many connections the server has accepted.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Requests returns a copy of the records of every request so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	copy(out, s.reqs)
	return out
}

// Wait blocks until cond holds for the records, or timeout passes; it
// reports whether cond held. cond is evaluated on every change, not by
// polling.
func (s *Server) Wait(timeout time.Duration, cond func([]Request) bool) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.reqs)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		}
	}
}

// Held counts the requests being held right now.
func Held(reqs []Request) int {
	n := 0
	for _, r := range reqs {
		if r.Held && !r.Done && !r.Cancelled {
			n++
		}
	}
	return n
}

// Cancelled counts the requests whose context ended while they were held.
func Cancelled(reqs []Request) int {
	n := 0
	for _, r := range reqs {
		if r.Cancelled {
			n++
		}
	}
	return n
}

// update changes record i under the lock and wakes waiters.
func (s *Server) update(i int, f func(*Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.reqs[i])
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	route, userID, tokenID := parseRoute(r.URL.EscapedPath())

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.active++
	var reply Reply
	if q := s.scripts[route]; len(q) > 0 {
		reply, s.scripts[route] = q[0], q[1:]
	} else if d, ok := s.defaults[route]; ok {
		reply = d
	} else {
		reply = s.builtinDefault(route, tokenID)
	}
	s.reqs = append(s.reqs, Request{
		Seq:         len(s.reqs) + 1,
		Route:       route,
		Method:      r.Method,
		EscapedPath: r.URL.EscapedPath(),
		Query:       r.URL.Query(),
		Header:      r.Header.Clone(),
		Body:        string(body),
		UserID:      userID,
		TokenID:     tokenID,
		Reply:       reply.name,
		Arrived:     time.Now(),
	})
	rec := len(s.reqs) - 1
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()

	defer s.update(rec, func(q *Request) { q.Done = true; s.active-- })
	for k, vs := range reply.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	reply.serve(s, rec, w, r)
}

// builtinDefault is the well-behaved answer; called with s.mu held.
func (s *Server) builtinDefault(route Route, tokenID string) Reply {
	switch route {
	case List:
		return Page("")
	case Create:
		s.nextID++
		return Created(fmt.Sprintf("tok_new_%d", s.nextID), fmt.Sprintf("secret_%d", s.nextID))
	case Update, Delete:
		return ID(tokenID)
	default:
		return Error(http.StatusNotFound, "NOT_FOUND", "no such route")
	}
}

// parseRoute recognises /v1/partner/user/{u}/token/{list,create} and
// /v1/partner/user/{u}/token/{t}/{update,delete}, optionally under /api.
func parseRoute(escaped string) (route Route, userID, tokenID string) {
	p := strings.TrimPrefix(escaped, "/api")
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 6 || segs[0] != "v1" || segs[1] != "partner" || segs[2] != "user" || segs[4] != "token" {
		return Unknown, "", ""
	}
	u, err := url.PathUnescape(segs[3])
	if err != nil {
		return Unknown, "", ""
	}
	switch {
	case len(segs) == 6 && (segs[5] == "list" || segs[5] == "create"):
		return Route(segs[5]), u, ""
	case len(segs) == 7 && (segs[6] == "update" || segs[6] == "delete"):
		t, err := url.PathUnescape(segs[5])
		if err != nil {
			return Unknown, "", ""
		}
		return Route(segs[6]), u, t
	}
	return Unknown, "", ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Error answers status with the body {"message": message, "code": code}.
func Error(status int, code, message string) Reply {
	return Reply{
		name: fmt.Sprintf("%d %s", status, code),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, status, map[string]string{"message": message, "code": code})
		},
	}
}

// Raw answers status with body as it is, with the given Content-Type.
func Raw(status int, contentType, body string) Reply {
	return Reply{
		name: fmt.Sprintf("%d raw", status),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		},
	}
}

type page struct {
	Items  []Token `json:"items"`
	Cursor string  `json:"cursor,omitempty"`
}

// Page answers 200 with the JSON page {"items": tokens, "cursor": cursor}.
func Page(cursor string, tokens ...Token) Reply {
	return Reply{
		name: fmt.Sprintf("page of %d, cursor %q", len(tokens), cursor),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, page{Items: orEmpty(tokens), Cursor: cursor})
		},
	}
}

func orEmpty(t []Token) []Token {
	if t == nil {
		return []Token{}
	}
	return t
}

// Created answers a create: 200 {"id", "token", "createdAt"}.
func Created(id, token string) Reply {
	return Reply{
		name: "created " + id,
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "token": token, "createdAt": 1_700_000_000_000})
		},
	}
}

// ID answers an update or delete: 200 {"id": id}.
func ID(id string) Reply {
	return Reply{
		name: "id " + id,
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"id": id})
		},
	}
}

// Lines answers 200 with a well-formed JSONL stream of tokens.
func Lines(tokens ...Token) Reply {
	return Reply{
		name: fmt.Sprintf("%d JSONL lines", len(tokens)),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jsonl")
			w.WriteHeader(http.StatusOK)
			for _, t := range tokens {
				_, _ = w.Write(jsonLine(t))
			}
		},
	}
}

func jsonLine(t Token) []byte {
	b, _ := json.Marshal(map[string]any{"type": "item", "data": t})
	return append(b, '\n')
}

// hijack takes the connection over from net/http; the caller closes it.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("faultyupstream: hijack: " + err.Error())
	}
	return c, rw
}

// resetClose closes c so that the peer sees a reset (RST), not an orderly
// end of stream: linger 0 discards unsent data and aborts the connection.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Reset aborts the connection without an answer: the client sees a reset
// after its request went out.
func Reset() Reply {
	return Reply{
		name: "reset",
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			c, _ := hijack(w)
			resetClose(c)
		},
	}
}

// CutPage answers 200 with a JSON page whose Content-Length promises the
// whole page, sends only the first half of it, and closes the connection.
func CutPage(cursor string, tokens ...Token) Reply {
	return Reply{
		name: fmt.Sprintf("page of %d cut short", len(tokens)),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			b, _ := json.Marshal(page{Items: orEmpty(tokens), Cursor: cursor})
			c, rw := hijack(w)
			defer c.Close()
			fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(b))
			_, _ = rw.Write(b[:len(b)/2])
			_ = rw.Flush()
		},
	}
}

// CutLines answers 200 with a JSONL stream: the complete lines of tokens,
// then the first half of one more line (for a token with id cutID), then
// the connection closes in the middle of it.
func CutLines(cutID string, tokens ...Token) Reply {
	return Reply{
		name: fmt.Sprintf("%d JSONL lines, then a line cut short", len(tokens)),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			c, rw := hijack(w)
			defer c.Close()
			// Chunked, as a streaming server sends it; the stream then
			// ends with no terminating chunk.
			fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/jsonl\r\nTransfer-Encoding: chunked\r\n\r\n")
			chunk := func(b []byte) { fmt.Fprintf(rw, "%x\r\n%s\r\n", len(b), b) }
			for _, t := range tokens {
				chunk(jsonLine(t))
			}
			last := jsonLine(Token{ID: cutID, CreatedAt: 1, UpdatedAt: 1})
			chunk(last[:len(last)/2])
			_ = rw.Flush()
		},
	}
}

// MalformedJSON is a complete 200 answer whose body is not JSON.
const MalformedJSON = `{"items":[{"id":"tok_1","createdAt":1,"updatedAt":1},,]`

// Malformed answers 200 with MalformedJSON and a correct Content-Length.
func Malformed() Reply {
	r := Raw(http.StatusOK, "application/json", MalformedJSON)
	r.name = "malformed JSON"
	return r
}

// Oversized answers status with a body that never ends: a JSON page of
// ever more tokens, sent chunked until the client stops reading (or 1 GiB,
// a bound that only a client without a cap reaches). Request.BytesWritten
// records how much went out.
func Oversized(status int) Reply {
	return Reply{
		name: fmt.Sprintf("%d oversized body", status),
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			chunk := []byte(strings.Repeat(`{"id":"tok_big","createdAt":1,"updatedAt":1},`, 1400)) // ~64 KiB
			var n int64
			defer func() { s.update(rec, func(q *Request) { q.BytesWritten = n }) }()
			m, err := io.WriteString(w, `{"items":[`)
			n += int64(m)
			for err == nil && n < 1<<30 && r.Context().Err() == nil {
				m, err = w.Write(chunk)
				n += int64(m)
			}
		},
	}
}

// OversizedDeclared answers 200 with a Content-Length of 1 TiB and a short
// body, then closes: a client that trusts the header is caught without any
// data being sent.
func OversizedDeclared() Reply {
	return Reply{
		name: "200 with Content-Length 1 TiB",
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			c, rw := hijack(w)
			defer c.Close()
			fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"items\":[", int64(1)<<40)
			_ = rw.Flush()
		},
	}
}

// Hang holds the request without answering until Release (then it answers
// with then) or until the request's context ends, which it records as
// Cancelled with the time.
func Hang(then Reply) Reply {
	return Reply{
		name: "hang, then " + then.name,
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			if s.hold(rec, r, nil) {
				then.serve(s, rec, w, r)
			}
		},
	}
}

// Slow holds the request for d (or until Release) before answering with
// then; its context ending first is recorded as for Hang.
func Slow(d time.Duration, then Reply) Reply {
	return Reply{
		name: fmt.Sprintf("after %s, %s", d, then.name),
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			t := time.NewTimer(d)
			defer t.Stop()
			if s.hold(rec, r, t.C) {
				then.serve(s, rec, w, r)
			}
		},
	}
}

// hold marks the request held and waits for release, timer or the request's
// context. It reports whether to answer.
func (s *Server) hold(rec int, r *http.Request, timer <-chan time.Time) bool {
	s.update(rec, func(q *Request) { q.Held = true })
	select {
	case <-s.released:
		return true
	case <-timer:
		return true
	case <-r.Context().Done():
		now := time.Now()
		s.update(rec, func(q *Request) { q.Cancelled, q.CancelledAt = true, now })
		return false
	}
}

// RefusedURL returns an http URL on 127.0.0.1 where nothing listens: a port
// that was just bound and released, so connecting to it is refused.
func RefusedURL() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		return "", err
	}
	return "http://" + addr, nil
}
