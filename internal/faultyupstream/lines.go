package faultyupstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The streamed listing (Accept: application/jsonl): one line
// {"type":"item","data":Token} per token. These replies answer it
// correctly, cut it after a number of lines, frame it wrongly, or generate
// it without end.

// Line is one line of the streamed listing, newline included.
func Line(t Token) []byte {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Data Token  `json:"data"`
	}{"item", t})
	return append(b, '\n')
}

// Lines answers 200 with the tokens as a complete JSONL stream (chunked,
// flushed once).
func Lines(tokens ...Token) Reply {
	return Reply{
		name: fmt.Sprintf("stream of %d", len(tokens)),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jsonl")
			w.WriteHeader(http.StatusOK)
			for _, t := range tokens {
				_, _ = w.Write(Line(t))
			}
		},
	}
}

// RawLines answers 200 application/jsonl with body as it is, framed as
// framing says: "chunked", "length" (a correct Content-Length) or "close"
// (neither: the body ends when the connection closes, which a client cannot
// tell from a cut).
func RawLines(framing, body string) Reply {
	return Reply{
		name: fmt.Sprintf("%d bytes of lines, %s", len(body), framing),
		serve: func(_ *Server, _ int, w http.ResponseWriter, _ *http.Request) {
			switch framing {
			case "close":
				c, rw := hijack(w)
				defer c.Close()
				fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: application/jsonl\r\nConnection: close\r\n\r\n%s", body)
				_ = rw.Flush()
				return
			case "length":
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			w.Header().Set("Content-Type", "application/jsonl")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(body))
		},
	}
}

// EndlessLines answers 200 with a JSONL stream that never ends: tokens
// gen0, gen1, ... each with a name of some length, sent as fast as the
// client reads, until the request's context ends (or 10 million lines, a
// bound only a client that never stops reaches).
// Request.BytesWritten records how much went out.
func EndlessLines() Reply {
	return Reply{
		name: "endless stream",
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/jsonl")
			w.WriteHeader(http.StatusOK)
			var n int64
			defer func() { s.update(rec, func(q *Request) { q.BytesWritten = n }) }()
			var buf bytes.Buffer
			for i := 0; i < 10_000_000 && r.Context().Err() == nil; i += 100 {
				buf.Reset()
				for j := i; j < i+100; j++ {
					fmt.Fprintf(&buf, `{"type":"item","data":{"id":"gen%d","name":"a token with a name of some length","createdAt":1700000000000,"updatedAt":1700000000000}}`+"\n", j)
				}
				m, err := w.Write(buf.Bytes())
				n += int64(m)
				if err != nil {
					return
				}
			}
		},
	}
}

// CutAfterLines answers as then does, but aborts the connection right
// after the nth newline of the body has gone out (flushed), with no
// chunked terminator: the client sees a stream cut after n whole lines.
// With partial, half of the next line goes out before the cut.
func CutAfterLines(n int, partial bool, then Reply) Reply {
	return Reply{
		name: fmt.Sprintf("%s, cut after %d lines", then.name, n),
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			cw := &lineCutter{ResponseWriter: w, left: n, partial: partial}
			defer func() {
				if cw.cut {
					s.update(rec, func(q *Request) { q.Cut = true })
				}
			}()
			then.serve(s, rec, cw, r)
			if !cw.cut && cw.left <= 0 {
				cw.abort()
			}
		},
	}
}

// lineCutter passes body bytes through until left newlines have gone, then
// aborts the connection (net/http closes it without a terminator when a
// handler panics with http.ErrAbortHandler).
type lineCutter struct {
	http.ResponseWriter
	left    int
	partial bool
	cut     bool
}

func (c *lineCutter) Write(p []byte) (int, error) {
	if c.cut {
		return 0, http.ErrAbortHandler
	}
	for i, b := range p {
		if b != '\n' {
			continue
		}
		c.left--
		if c.left == 0 {
			out := p[:i+1]
			if c.partial {
				rest := p[i+1:]
				out = p[:i+1+len(rest)/2]
			}
			_, _ = c.ResponseWriter.Write(out)
			c.abort()
		}
	}
	return c.ResponseWriter.Write(p)
}

func (c *lineCutter) abort() {
	c.cut = true
	_ = http.NewResponseController(c.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

func (c *lineCutter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

func (c *lineCutter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// PaceLines answers as then does, but lets each line of the body out on
// its own, every d (until the request's context ends): a stream that takes
// as long as its lines times d.
func PaceLines(d time.Duration, then Reply) Reply {
	return Reply{
		name: fmt.Sprintf("%s, a line every %s", then.name, d),
		serve: func(s *Server, rec int, w http.ResponseWriter, r *http.Request) {
			then.serve(s, rec, &linePacer{ResponseWriter: w, every: d, done: r.Context().Done()}, r)
		},
	}
}

type linePacer struct {
	http.ResponseWriter
	every time.Duration
	done  <-chan struct{}
}

func (p *linePacer) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		m, err := p.ResponseWriter.Write(line)
		n += m
		if err != nil {
			return n, err
		}
		_ = http.NewResponseController(p.ResponseWriter).Flush()
		b = b[len(line):]
		t := time.NewTimer(p.every)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
			return n, http.ErrAbortHandler
		}
	}
	return n, nil
}

func (p *linePacer) Flush() { _ = http.NewResponseController(p.ResponseWriter).Flush() }

func (p *linePacer) Unwrap() http.ResponseWriter { return p.ResponseWriter }
