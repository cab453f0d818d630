// Package faultyupstream is a scriptable, misbehaving stand-in for
// ChatBotKit's partner user token API, for tests only: no production code
// imports it. Where internal/emulator is the well-behaved upstream, this one
// answers each request with whatever the test scripted for its route: an
// error status with a {message, code} body and headers such as Retry-After,
// a connection reset, a body cut short (a JSON page shorter than its
// Content-Length), malformed JSON, a body larger than any cap, a listing
// that never ends, a slow answer, or no answer at all until released or
// until the request's context ends. In front of the emulator (Forward) it
// serves well what the test did not script.
//
// It serves real HTTP/1.1 on 127.0.0.1 and records, per route, how often it
// was called and what each request looked like, including whether and when
// the request's context was cancelled while it was being held. Waiting on
// those records is event-driven (see Server.Wait), so tests never sleep.
//
// This file holds what a test scripts and reads (routes, tokens, the
// records); server.go runs the server and keeps the records; replies.go
// builds each kind of answer.
package faultyupstream

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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

// PageOfIDs is a JSON page body of n tokens that hold only an id (t0, t1,
// ...), with the cursor "next": the cheapest page of a given length. With
// escaped the "items" key is spelled with a JSON escape, which only
// encoding/json's slower path reads.
func PageOfIDs(n int, escaped bool) []byte {
	var b bytes.Buffer
	if escaped {
		b.WriteString(`{"ite\u006ds":[`)
	} else {
		b.WriteString(`{"items":[`)
	}
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"t%d"}`, i)
	}
	b.WriteString(`],"cursor":"next"}`)
	return b.Bytes()
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
	// BytesWritten counts the body bytes of an Oversized or EndlessLines
	// reply that went out.
	BytesWritten int64
	// Cut: a CutAfterLines reply cut the answer off.
	Cut bool
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
