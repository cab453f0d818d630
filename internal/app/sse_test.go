package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestListSSEResume: an SSE reader that reconnects with Last-Event-ID (the
// id of the last event it saw, a cursor) gets the rest of the listing, as
// a reconnecting EventSource does; Last-Event-ID wins over a cursor in the
// query, which is the one of the original URL.
func TestListSSEResume(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-sse-resume"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	g := s.grpcCaller(bearer(secret))
	var want []string
	for i := range 7 {
		r, st := g.create(t, &tokenv1.CreateRequest{UserId: "sse-user", Name: fmt.Sprint("t", i)})
		wantCode(t, "Create", st, 0)
		want = append(want, r.GetId())
	}
	c := s.sseCaller(bearer(secret))
	req := &tokenv1.ListRequest{UserId: "sse-user", Order: tokenv1.Order_ORDER_ASC, PageSize: 3}
	first := c.listRaw(t, req)
	if first.err != nil || !slices.Equal(responseIDs(first.results), want) {
		t.Fatalf("SSE list: %v %v, want %v", responseIDs(first.results), first.err, want)
	}
	if first.events[2].id == "" {
		t.Fatalf("the last token of the first page has no event id: %+v", first.events[2])
	}
	c.lastEventID = first.events[2].id
	req.Cursor = "ignored-original-cursor"
	rest := c.listRaw(t, req)
	if rest.err != nil || !slices.Equal(responseIDs(rest.results), want[3:]) {
		t.Fatalf("resumed SSE list: %v %v, want %v", responseIDs(rest.results), rest.err, want[3:])
	}
	// From any token, not only a page's last: every event carries an id.
	c.lastEventID = first.events[1].id
	if rest = c.listRaw(t, req); rest.err != nil || !slices.Equal(responseIDs(rest.results), want[2:]) {
		t.Fatalf("SSE list resumed after the second token: %v %v, want %v", responseIDs(rest.results), rest.err, want[2:])
	}
}

// TestListSSEEnd: a complete listing ends with an end event; a request
// whose cursor (Last-Event-ID or ?cursor=) is at the end of the listing is
// answered 204 with no body, so an EventSource stops reconnecting; a
// listing with no tokens and no cursor is just the end event.
func TestListSSEEnd(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-sse-end"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	g := s.grpcCaller(bearer(secret))
	for i := range 3 {
		_, st := g.create(t, &tokenv1.CreateRequest{UserId: "sse-end", Name: fmt.Sprint("t", i)})
		wantCode(t, "Create", st, 0)
	}
	c := s.sseCaller(bearer(secret))
	all := c.listRaw(t, &tokenv1.ListRequest{UserId: "sse-end"})
	if all.err != nil || len(all.results) != 3 || !all.ended || all.httpStatus != http.StatusOK {
		t.Fatalf("SSE list: %d tokens, %v, ended %v, HTTP %d", len(all.results), all.err, all.ended, all.httpStatus)
	}
	last := all.results[2].GetCursor()
	c.lastEventID = last
	if r := c.listRaw(t, &tokenv1.ListRequest{UserId: "sse-end"}); r.httpStatus != http.StatusNoContent || len(r.events) != 0 {
		t.Fatalf("Last-Event-ID at the end: HTTP %d, %d events; want 204 and none", r.httpStatus, len(r.events))
	}
	c.lastEventID = ""
	if r := c.listRaw(t, &tokenv1.ListRequest{UserId: "sse-end", Cursor: last}); r.httpStatus != http.StatusNoContent {
		t.Fatalf("?cursor= at the end: HTTP %d, want 204", r.httpStatus)
	}
	empty := c.listRaw(t, &tokenv1.ListRequest{UserId: "sse-nobody"})
	if empty.httpStatus != http.StatusOK || !empty.ended || len(empty.results) != 0 || empty.err != nil {
		t.Fatalf("empty listing: HTTP %d, ended %v, %d tokens, %v; want 200 and the end event only", empty.httpStatus, empty.ended, len(empty.results), empty.err)
	}
}

// TestListSSEFlushedPerToken: the first page's events reach the reader
// while the next upstream page is still outstanding.
func TestListSSEFlushedPerToken(t *testing.T) {
	t.Parallel()
	up := fu.Start(t)
	up.Script(fu.List, fu.Page("page-2", fu.Token{ID: "tok_1", Name: "one", CreatedAt: 1700000000000, UpdatedAt: 1700000000000}),
		fu.Hang(fu.Page(""))) // the second page, until released
	s := startServer(t, up.URL, gatetest.Held("held-secret"))

	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+tokensPath("u")+"?page_size=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	var event []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the first event before the second page was released: %v", err)
		}
		if line == "\n" {
			break
		}
		event = append(event, strings.TrimSuffix(line, "\n"))
	}
	if len(event) != 2 || !strings.HasPrefix(event[0], "id: cbk1.") || !strings.Contains(event[1], `"tok_1"`) {
		t.Fatalf("first event = %q", event)
	}
	up.Release()
}
