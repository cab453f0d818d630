package faultyupstream

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

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

// Start is New for a test: a failure to start fails it, and the server
// closes at cleanup (after a cbkgate started later, since cleanups run
// last-in first-out).
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("faultyupstream: %v", err)
	}
	t.Cleanup(s.Close)
	return s
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

// SetDefaultAll sets reply as the default of every route, Unknown
// included: Forward(emulator) makes the server a recording (and, by
// Script, misbehaving) front of the emulator.
func (s *Server) SetDefaultAll(reply Reply) {
	for _, r := range []Route{List, Create, Update, Delete, Unknown} {
		s.SetDefault(r, reply)
	}
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

// Count returns how many requests reached the server, on any route.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
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
