package chatbotkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/secret"
)

const streamSecret = secret.Value("emulator-secret-for-stream-tests")

// streamRig is an emulator behind a recording faulty upstream, and a client
// (with a sleeper that does not wait) pointed at it.
type streamRig struct {
	emu *emulator.Emulator
	up  *faultyupstream.Server
	c   *Client
}

func newStreamRig(t *testing.T) *streamRig {
	t.Helper()
	emu := emulator.New(emulator.Options{Secret: string(streamSecret)})
	up := faultyupstream.Start(t)
	up.SetDefaultAll(faultyupstream.Forward(emu))
	c, _ := newTestClient(t, up.URL, nil)
	return &streamRig{emu: emu, up: up, c: c}
}

// collect reads a listing to its end (or error), at most 1e6 tokens.
func collect(t *testing.T, c *Client, user string, opts StreamOptions) ([]Token, []Position, error) {
	t.Helper()
	l, err := c.OpenList(context.Background(), streamSecret, user, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var toks []Token
	var poss []Position
	for range 1_000_000 {
		tok, pos, err := l.Next()
		if err == io.EOF {
			return toks, poss, nil
		}
		if err != nil {
			return toks, poss, err
		}
		toks = append(toks, tok)
		poss = append(poss, pos)
	}
	t.Fatal("the listing does not end")
	return nil, nil, nil
}

func tokenIDs(toks []Token) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.ID
	}
	return out
}

func (r *streamRig) create(t *testing.T, user string) string {
	t.Helper()
	c, err := r.c.Create(context.Background(), streamSecret, user, TokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// The whole listing is one upstream request, with Accept: application/jsonl
// and no take, in both orders, and the same tokens as walking the pages.
func TestListStreamOneRequest(t *testing.T) {
	r := newStreamRig(t)
	r.emu.Seed("u", 1234)
	for _, order := range []Order{OrderAsc, OrderDesc, OrderDefault} {
		before := r.up.Calls(faultyupstream.List)
		toks, _, err := collect(t, r.c, "u", StreamOptions{Order: order})
		if err != nil {
			t.Fatal(err)
		}
		reqs := r.up.Requests()[before:]
		if len(reqs) != 1 {
			t.Fatalf("order %q: %d upstream requests, want 1", order, len(reqs))
		}
		if got := reqs[0].Header.Get("Accept"); got != "application/jsonl" {
			t.Errorf("Accept = %q", got)
		}
		if reqs[0].Query.Has("take") {
			t.Errorf("the stream request carries take: %v", reqs[0].Query)
		}
		if len(toks) != 1234 {
			t.Fatalf("order %q: %d tokens, want 1234", order, len(toks))
		}
		var paged []Token
		opts := ListOptions{Order: order, Take: 100}
		for range 100 {
			p, err := r.c.ListPage(context.Background(), streamSecret, "u", opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) == 0 {
				break
			}
			paged = append(paged, p.Items...)
			opts.Cursor = p.Cursor
		}
		if !slices.Equal(tokenIDs(toks), tokenIDs(paged)) {
			t.Fatalf("order %q: the stream and the pages differ", order)
		}
	}
}

// Resuming from any position continues right after its token, with no
// duplicate and no gap, after creates and deletes before and after it; a
// position whose token was deleted is stale, before any token.
func TestListStreamExactResume(t *testing.T) {
	for _, order := range []Order{OrderAsc, OrderDesc} {
		t.Run(string(order), func(t *testing.T) {
			r := newStreamRig(t)
			for range 40 {
				r.create(t, "u")
			}
			toks, poss, err := collect(t, r.c, "u", StreamOptions{Order: order})
			if err != nil || len(toks) != 40 {
				t.Fatalf("%d tokens, %v", len(toks), err)
			}
			const k = 20
			at := toks[k].ID
			// Deletes before and after the position, creates (which land
			// before it descending, after it ascending).
			for _, i := range []int{3, k - 1, k + 1, 35} {
				if _, err := r.c.Delete(context.Background(), streamSecret, "u", toks[i].ID); err != nil {
					t.Fatal(err)
				}
			}
			for range 5 {
				r.create(t, "u")
			}
			fresh, _, err := collect(t, r.c, "u", StreamOptions{Order: order})
			if err != nil {
				t.Fatal(err)
			}
			idx := slices.Index(tokenIDs(fresh), at)
			want := tokenIDs(fresh[idx+1:])
			got, _, err := collect(t, r.c, "u", StreamOptions{Order: order, From: poss[k]})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tokenIDs(got), want) {
				t.Fatalf("resumed after %s:\n got %v\nwant %v", at, tokenIDs(got), want)
			}

			if _, err := r.c.Delete(context.Background(), streamSecret, "u", at); err != nil {
				t.Fatal(err)
			}
			got, _, err = collect(t, r.c, "u", StreamOptions{Order: order, From: poss[k]})
			if !errors.Is(err, ErrCursorStale) || len(got) != 0 {
				t.Fatalf("resuming after a deleted token: %d tokens, %v; want none and ErrCursorStale", len(got), err)
			}
		})
	}
}

// A stream cut after N whole lines, or inside a line, is resumed from the
// last token yielded: every token once, in order, in two requests.
func TestListStreamCutResumed(t *testing.T) {
	for _, partial := range []bool{false, true} {
		for _, n := range []int{1, 100, 999} {
			t.Run(fmt.Sprintf("after %d, partial %v", n, partial), func(t *testing.T) {
				r := newStreamRig(t)
				r.emu.Seed("u", 1000)
				want, _, err := collect(t, r.c, "u", StreamOptions{Order: OrderAsc})
				if err != nil {
					t.Fatal(err)
				}
				r.up.Script(faultyupstream.List, faultyupstream.CutAfterLines(n, partial, faultyupstream.Forward(r.emu)))
				before := r.up.Calls(faultyupstream.List)
				got, _, err := collect(t, r.c, "u", StreamOptions{Order: OrderAsc})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(tokenIDs(got), tokenIDs(want)) {
					t.Fatalf("%d tokens after the cut, want the %d once each in order", len(got), len(want))
				}
				if calls := r.up.Calls(faultyupstream.List) - before; calls != 2 {
					t.Fatalf("%d upstream requests, want 2 (the stream and its resume)", calls)
				}
			})
		}
	}
}

// The attempt count starts again whenever a resumed stream delivers a new
// token: a stream cut after each new token still completes; one cut before
// any new token fails after the client's attempts.
func TestListStreamRetriesRestartOnProgress(t *testing.T) {
	r := newStreamRig(t)
	r.emu.Seed("u", 10)
	for i := range 10 {
		// Attempt i+1 delivers i tokens already sent, and one new one.
		r.up.Script(faultyupstream.List, faultyupstream.CutAfterLines(i+1, false, faultyupstream.Forward(r.emu)))
	}
	got, _, err := collect(t, r.c, "u", StreamOptions{Order: OrderAsc})
	if err != nil || len(got) != 10 {
		t.Fatalf("%d tokens, %v; want 10 and the end", len(got), err)
	}

	r2 := newStreamRig(t)
	r2.emu.Seed("u", 10)
	r2.up.Script(faultyupstream.List, faultyupstream.CutAfterLines(3, false, faultyupstream.Forward(r2.emu)))
	for range 10 {
		r2.up.Script(faultyupstream.List, faultyupstream.CutAfterLines(2, false, faultyupstream.Forward(r2.emu)))
	}
	got, _, err = collect(t, r2.c, "u", StreamOptions{Order: OrderAsc})
	if !errors.Is(err, ErrUnavailable) || len(got) != 3 {
		t.Fatalf("%d tokens, %v; want 3 and ErrUnavailable", len(got), err)
	}
	if calls := r2.up.Calls(faultyupstream.List); calls != 1+DefaultMaxAttempts-1 {
		t.Fatalf("%d requests, want the first and %d fruitless resumes", calls, DefaultMaxAttempts-1)
	}
}

// Framing: a body that ends when the connection closes, or whose last line
// has no newline, is a cut, never a complete listing; a correctly framed
// body (chunked or Content-Length) with a final newline is complete.
func TestListStreamFraming(t *testing.T) {
	body := string(faultyupstream.Line(faultyupstream.Token{ID: "a", CreatedAt: 1, UpdatedAt: 1})) +
		string(faultyupstream.Line(faultyupstream.Token{ID: "b", CreatedAt: 1, UpdatedAt: 1}))
	for _, c := range []struct {
		framing, body string
		complete      bool
	}{
		{"chunked", body, true},
		{"length", body, true},
		{"close", body, false},
		{"chunked", strings.TrimSuffix(body, "\n"), false},
		{"length", strings.TrimSuffix(body, "\n"), false},
	} {
		up := faultyupstream.Start(t)
		up.SetDefault(faultyupstream.List, faultyupstream.RawLines(c.framing, c.body))
		cl, _ := newTestClient(t, up.URL, nil)
		got, _, err := collect(t, cl, "u", StreamOptions{})
		if c.complete {
			if err != nil || len(got) != 2 || up.Calls(faultyupstream.List) != 1 {
				t.Errorf("%s, %d bytes: %d tokens, %v, %d requests; want 2, complete, 1", c.framing, len(c.body), len(got), err, up.Calls(faultyupstream.List))
			}
			continue
		}
		if !errors.Is(err, ErrUnavailable) || up.Calls(faultyupstream.List) != DefaultMaxAttempts {
			t.Errorf("%s, %d bytes: %v after %d requests; want ErrUnavailable after %d", c.framing, len(c.body), err, up.Calls(faultyupstream.List), DefaultMaxAttempts)
		}
	}
}

// The body cap applies to each line: a longer line is malformed and not
// retried; lines up to it pass.
func TestListStreamLineCap(t *testing.T) {
	long := faultyupstream.Token{ID: "long", Name: strings.Repeat("n", 200_000), CreatedAt: 1, UpdatedAt: 1}
	short := faultyupstream.Token{ID: "short", CreatedAt: 1, UpdatedAt: 1}
	up := faultyupstream.Start(t)
	up.SetDefault(faultyupstream.List, faultyupstream.Lines(short, long, short))
	cl, _ := newTestClient(t, up.URL, nil)
	cl.maxBody = 150_000
	got, _, err := collect(t, cl, "u", StreamOptions{})
	if !errors.Is(err, ErrResponseTooLarge) || len(got) != 1 || up.Calls(faultyupstream.List) != 1 {
		t.Fatalf("%d tokens, %v, %d requests; want 1, ErrResponseTooLarge, 1", len(got), err, up.Calls(faultyupstream.List))
	}
	cl.maxBody = 300_000
	got, _, err = collect(t, cl, "u", StreamOptions{})
	if err != nil || len(got) != 3 || got[1].Name != long.Name {
		t.Fatalf("under the cap: %d tokens, %v", len(got), err)
	}
}

// An upstream that answers the stream request with a JSON page is read page
// by page: take only on the page requests; a page answered to the request
// without take may hold 1000 items, not more.
func TestListStreamPageFallback(t *testing.T) {
	up := faultyupstream.Start(t)
	up.Script(faultyupstream.List,
		faultyupstream.Page("c1", faultyupstream.Tokens("a", 3)...),
		faultyupstream.Page("c2", faultyupstream.Tokens("b", 2)...),
		faultyupstream.Page(""))
	cl, _ := newTestClient(t, up.URL, nil)
	got, poss, err := collect(t, cl, "u", StreamOptions{PageSize: 7})
	if err != nil || !slices.Equal(tokenIDs(got), []string{"a0", "a1", "a2", "b0", "b1"}) {
		t.Fatalf("%v, %v", tokenIDs(got), err)
	}
	reqs := up.Requests()
	if len(reqs) != 3 || reqs[0].Query.Has("take") || reqs[1].Query.Get("take") != "7" || reqs[1].Query.Get("cursor") != "c1" {
		t.Fatalf("requests: %+v", reqs)
	}
	if poss[2] != (Position{Cursor: "c1"}) || poss[3] != (Position{Cursor: "c1", After: "b0"}) {
		t.Fatalf("positions %+v", poss)
	}

	for _, c := range []struct {
		n  int
		ok bool
	}{{MaxTake, true}, {MaxTake + 1, false}} {
		up := faultyupstream.Start(t)
		up.Script(faultyupstream.List, faultyupstream.Raw(200, "application/json", string(faultyupstream.PageOfIDs(c.n, false))), faultyupstream.Page(""))
		cl, _ := newTestClient(t, up.URL, nil)
		got, _, err := collect(t, cl, "u", StreamOptions{})
		if c.ok != (err == nil) || (!c.ok && (!errors.Is(err, ErrMalformedResponse) || len(got) != 0)) {
			t.Fatalf("a page of %d to the stream request: %d tokens, %v", c.n, len(got), err)
		}
	}
}

// Closing a Lister mid-stream closes the upstream request: the upstream
// sees its context end, and has sent far less than the listing.
func TestListStreamCloseEndsUpstream(t *testing.T) {
	up := faultyupstream.Start(t)
	up.SetDefault(faultyupstream.List, faultyupstream.EndlessLines())
	cl, _ := newTestClient(t, up.URL, nil)
	l, err := cl.OpenList(context.Background(), streamSecret, "u", StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := l.Next(); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if !up.Wait(safety, func(reqs []faultyupstream.Request) bool { return len(reqs) == 1 && reqs[0].Done }) {
		t.Fatal("the upstream kept sending after Close")
	}
	if n := up.Requests()[0].BytesWritten; n > 64<<20 {
		t.Fatalf("the upstream sent %d bytes", n)
	}
	if _, _, err := l.Next(); err != io.EOF {
		t.Fatalf("Next after Close: %v", err)
	}
}
