package faultyupstream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

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

// restoreBody gives r back the body recorded for it (up to 1 MiB), which
// the server read to record it, so that a handler can read it again.
func (s *Server) restoreBody(rec int, r *http.Request) {
	s.mu.Lock()
	body := s.reqs[rec].Body
	s.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(body))
}

// Forward answers as h does, given the request as it arrived (its body
// as recorded: up to 1 MiB). With h the emulator, the well-behaved answer
// of a test that scripts only a few faults, or that only reads the records.
func Forward(h http.Handler) Reply {
	return Reply{
		name: "forwarded",
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			s.restoreBody(rec, r)
			h.ServeHTTP(w, r)
		},
	}
}

// FullPages answers a list with a full page, as many tokens as its take
// asks for (100 when it asks for none, as the stream request does), naming
// the next cursor (c1, c2, ...): a listing that never ends. Each page's
// tokens have ids of their own.
func FullPages() Reply {
	return Reply{
		name: "full page",
		serve: func(_ *Server, _ int, w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Query().Get("cursor"), "c"))
			take, _ := strconv.Atoi(r.URL.Query().Get("take"))
			if take <= 0 {
				take = 100
			}
			tokens := make([]Token, take)
			for i := range tokens {
				tokens[i] = Token{ID: fmt.Sprintf("tok_%d_%d", n, i), Name: "a token with a name of some length",
					CreatedAt: 1_700_000_000_000, UpdatedAt: 1_700_000_000_000}
			}
			writeJSON(w, http.StatusOK, page{Items: tokens, Cursor: "c" + strconv.Itoa(n+1)})
		},
	}
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

// ForwardThenReset lets h carry the request out (the emulator stores the
// token of a create), throws its answer away, and aborts the connection:
// the client sees a reset after its request went out, and cannot know
// that the request was carried out.
func ForwardThenReset(h http.Handler) Reply {
	return Reply{
		name: "forwarded, then reset",
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			s.restoreBody(rec, r)
			h.ServeHTTP(discard{header: http.Header{}}, r)
			c, _ := hijack(w)
			resetClose(c)
		},
	}
}

// discard is an http.ResponseWriter that keeps nothing.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(p []byte) (int, error) { return len(p), nil }
func (d discard) WriteHeader(int)             {}
