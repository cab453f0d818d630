package failtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// The List read as one upstream stream: cuts, exact resume, stale cursors,
// limit, the per-caller bound on Lists, --caller-rate, memory.

// emulatorBehind is the emulator (holding heldSecret) behind a recording
// faulty upstream, and a cbkgate in front of both.
func emulatorBehind(t *testing.T, opts ...gatetest.Option) (*emulator.Emulator, *fu.Server, *gate) {
	t.Helper()
	emu := emulator.New(emulator.Options{Secret: heldSecret})
	up := fu.Start(t)
	up.SetDefaultAll(fu.Forward(emu))
	return emu, up, startGate(t, up.URL, opts...)
}

func (g *gate) createN(t *testing.T, user string, n int) {
	t.Helper()
	for i := range n {
		if _, err := g.Client().Create(g.ctx(), &tokenv1.CreateRequest{UserId: user, Name: fmt.Sprint("n", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListStreamCutsInvisible: a listing whose upstream stream is cut twice
// (after whole lines, and inside a line) reaches the caller whole, once,
// in order, over gRPC and NDJSON, in three upstream requests.
func TestListStreamCutsInvisible(t *testing.T) {
	emu, up, g := emulatorBehind(t)
	emu.Seed("u1", 500)
	want, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil || len(want) != 500 {
		t.Fatalf("%d tokens, %v", len(want), err)
	}
	cuts := func() {
		up.Script(fu.List, fu.CutAfterLines(137, false, fu.Forward(emu)), fu.CutAfterLines(300, true, fu.Forward(emu)))
	}
	cuts()
	before := up.Calls(fu.List)
	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil || !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("gRPC after two cuts: %d tokens, %v; want the %d once each", len(got), err, len(want))
	}
	if n := up.Calls(fu.List) - before; n != 3 {
		t.Fatalf("%d upstream requests, want 3 (the stream and two resumes)", n)
	}
	cuts()
	res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
	results, errLine := gatetest.NDJSON(t, res.body)
	if res.status != http.StatusOK || errLine != nil || !slices.Equal(ids(results), ids(want)) {
		t.Fatalf("NDJSON after two cuts: %d, %d tokens, %v", res.status, len(results), errLine)
	}
}

// TestListResumeExact: a cursor from any token, passed back, continues
// right after it with no duplicate and no gap, after tokens before and
// after it were deleted and new ones created, in both orders, over gRPC and
// NDJSON (?cursor=).
func TestListResumeExact(t *testing.T) {
	for _, order := range []tokenv1.Order{tokenv1.Order_ORDER_ASC, tokenv1.Order_ORDER_DESC} {
		t.Run(order.String(), func(t *testing.T) {
			_, _, g := emulatorBehind(t)
			g.createN(t, "u1", 30)
			all, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Order: order})
			if err != nil || len(all) != 30 {
				t.Fatalf("%d tokens, %v", len(all), err)
			}
			const k = 12
			for _, i := range []int{2, k - 1, k + 1, 25} {
				if _, err := g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: all[i].GetToken().GetId()}); err != nil {
					t.Fatal(err)
				}
			}
			g.createN(t, "u1", 4)
			fresh, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Order: order})
			if err != nil {
				t.Fatal(err)
			}
			at := slices.Index(ids(fresh), all[k].GetToken().GetId())
			want := ids(fresh[at+1:])
			got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Order: order, Cursor: all[k].GetCursor()})
			if err != nil || !slices.Equal(ids(got), want) {
				t.Fatalf("gRPC resume: %v, %v; want %v", ids(got), err, want)
			}
			q := url.Values{"cursor": {all[k].GetCursor()}, "order": {order.String()}}
			res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens?"+q.Encode(), "")
			results, errLine := gatetest.NDJSON(t, res.body)
			if res.status != http.StatusOK || errLine != nil || !slices.Equal(ids(results), want) {
				t.Fatalf("NDJSON resume: %d, %v, %v; want %v", res.status, ids(results), errLine, want)
			}
			// Resuming from the cursor of a resumed listing is exact too.
			got2, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Order: order, Cursor: got[3].GetCursor()})
			if err != nil || !slices.Equal(ids(got2), want[4:]) {
				t.Fatalf("second resume: %v, %v; want %v", ids(got2), err, want[4:])
			}
		})
	}
}

// TestListCursorStale: a cursor whose token was deleted fails
// FAILED_PRECONDITION CURSOR_STALE before any token; a stream cut whose
// resume no longer finds the last token sent ends ABORTED CURSOR_STALE
// after the tokens already sent, never with a gap.
func TestListCursorStale(t *testing.T) {
	_, up, g := emulatorBehind(t)
	g.createN(t, "u1", 5)
	all, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: all[2].GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Cursor: all[2].GetCursor()})
	if st := wantCode(t, err, codes.FailedPrecondition); !ownReason(st, "CURSOR_STALE") || len(got) != 0 {
		t.Fatalf("%d tokens, details %v", len(got), st.Details())
	}

	toks := fu.Tokens("t", 3)
	up.Script(fu.List, fu.CutAfterLines(2, false, fu.Lines(toks...)), fu.Lines(toks[0], toks[2]))
	got, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u2"})
	if st := wantCode(t, err, codes.Aborted); !ownReason(st, "CURSOR_STALE") || !slices.Equal(ids(got), []string{"t0", "t1"}) {
		t.Fatalf("tokens %v, details %v; want t0 t1, then ABORTED CURSOR_STALE", ids(got), st.Details())
	}
}

// TestListCursorForms: a cursor that is not cbkgate's goes upstream as it
// is (a ChatBotKit page cursor from before); a damaged cbkgate cursor, or
// one passed back with the other order, is INVALID_ARGUMENT naming the
// field, with no upstream call.
func TestListCursorForms(t *testing.T) {
	_, up, g := emulatorBehind(t)
	g.createN(t, "u1", 3)
	all, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	before := up.Calls(fu.List)
	for _, req := range []*tokenv1.ListRequest{
		{UserId: "u1", Cursor: "cbk1.!!!"},
		{UserId: "u1", Cursor: "cbk1."},
		{UserId: "u1", Cursor: all[0].GetCursor(), Order: tokenv1.Order_ORDER_ASC},
	} {
		_, err := g.list(g.ctx(), req)
		st := wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(st.Message(), "cursor") {
			t.Errorf("cursor %q: message %q does not name the cursor", req.Cursor, st.Message())
		}
	}
	wantCalls(t, up, fu.List, before)
	up.Script(fu.List, fu.Page(""))
	if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Cursor: "a-chatbotkit-cursor"}); err != nil {
		t.Fatal(err)
	}
	if got := up.Requests()[len(up.Requests())-1].Query.Get("cursor"); got != "a-chatbotkit-cursor" {
		t.Fatalf("upstream cursor %q, want the caller's as it was", got)
	}
}

// TestListLimitClosesUpstream: a List with a limit, over an upstream
// stream that never ends, sends limit tokens and ends OK, and the upstream
// sees its request closed: its handler returns long before it could have
// written the stream.
func TestListLimitClosesUpstream(t *testing.T) {
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.EndlessLines())
	g := startGate(t, up.URL)
	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Limit: 10})
	if err != nil || len(got) != 10 {
		t.Fatalf("%d tokens, %v; want 10, OK", len(got), err)
	}
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return len(rs) == 1 && rs[0].Done }) {
		t.Fatal("the upstream stream was not closed after the limit")
	}
	if n := up.Requests()[0].BytesWritten; n > 32<<20 {
		t.Fatalf("the upstream wrote %d bytes for 10 tokens", n)
	}
}

// TestListTooManyLists: one caller may run 128 Lists at once; the 129th is
// RESOURCE_EXHAUSTED TOO_MANY_LISTS with no upstream request, another
// caller's List still runs, and once one ends the caller may list again.
func TestListTooManyLists(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("alice sk-alice-0123456789abcdef\nbob sk-bob-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.Hang(fu.Page("")))
	g := startGate(t, up.URL, gatetest.Args("--api-keys-file="+keyFile))
	as := func(ctx context.Context, key string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	}
	held, cancelHeld := context.WithCancel(as(g.ctx(), "sk-alice-0123456789abcdef"))
	defer cancelHeld()
	const bound = 128
	for range bound {
		s, err := g.Client().List(held, &tokenv1.ListRequest{UserId: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = gatetest.Recv(s) }()
	}
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return fu.Held(rs) == bound }) {
		t.Fatalf("%d Lists reached the upstream, want %d", fu.Held(up.Requests()), bound)
	}
	_, err := g.list(as(g.ctx(), "sk-alice-0123456789abcdef"), &tokenv1.ListRequest{UserId: "u1"})
	if st := wantCode(t, err, codes.ResourceExhausted); !ownReason(st, "TOO_MANY_LISTS") {
		t.Fatalf("details %v", st.Details())
	}
	wantCalls(t, up, fu.List, bound)
	up.Script(fu.List, fu.Page(""))
	if _, err := g.list(as(g.ctx(), "sk-bob-0123456789abcdef"), &tokenv1.ListRequest{UserId: "u1"}); err != nil {
		t.Fatalf("another caller's List: %v", err)
	}
	cancelHeld()
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return fu.Held(rs) == 0 }) {
		t.Fatal("the held Lists did not end")
	}
	up.Script(fu.List, fu.Page(""))
	var err2 error
	for range 50 { // the slots free as the cancelled calls finish
		if _, err2 = g.list(as(g.ctx(), "sk-alice-0123456789abcdef"), &tokenv1.ListRequest{UserId: "u1"}); err2 == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err2 != nil {
		t.Fatalf("the caller's List after its Lists ended: %v", err2)
	}
}

// TestListCallerRateCountsResumes: at --caller-rate=1 (burst 2), a List
// whose stream is cut twice makes three upstream requests, the third of
// which waits for the rate (about a second); the List is paced, complete
// and OK.
func TestListCallerRateCountsResumes(t *testing.T) {
	emu, up, g := emulatorBehind(t, gatetest.Args("--caller-rate=1"))
	emu.Seed("u1", 50)
	up.Script(fu.List, fu.CutAfterLines(10, false, fu.Forward(emu)), fu.CutAfterLines(20, false, fu.Forward(emu)))
	start := time.Now()
	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	took := time.Since(start)
	if err != nil || len(got) != 50 {
		t.Fatalf("%d tokens, %v", len(got), err)
	}
	wantCalls(t, up, fu.List, 3)
	t.Logf("a List of three upstream requests at --caller-rate=1 took %s", took.Round(time.Millisecond))
	if took < 500*time.Millisecond {
		t.Fatalf("took %s: the resumes were not counted against the rate", took)
	}
	if took > 3*time.Second {
		t.Fatalf("took %s: a request was counted more than once", took)
	}
}

// TestListMillionTokensBoundedMemory: one List of 1,000,000 tokens from an
// upstream stream that never ends (limit ends it), to a reader that keeps
// pausing, grows this process (cbkgate, the upstream and the reader
// together) by less than 32 MiB of heap, and of RSS without the race
// detector: the stream is read only as fast as the reader takes tokens.
// The race detector slows a token about thirty times, so with it the List
// is of 100,000 tokens (the bound does not depend on the length).
func TestListMillionTokensBoundedMemory(t *testing.T) {
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.EndlessLines())
	g := startGate(t, up.URL)
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, baseRSS := memory(t)
	got := 0
	var err error
	start := time.Now()
	peak := peakHeap(t, func() {
		stream, serr := g.Client().List(g.withAuth(ctx), &tokenv1.ListRequest{UserId: "u1", Limit: int32(n)})
		if serr != nil {
			err = serr
			return
		}
		for {
			_, rerr := stream.Recv()
			if rerr != nil {
				if !errors.Is(rerr, io.EOF) {
					err = rerr
				}
				return
			}
			if got++; got%(n/10) == 0 {
				time.Sleep(50 * time.Millisecond) // a slow reader: the upstream must wait
			}
		}
	})
	_, rss := memory(t)
	t.Logf("%d tokens in %s: heap peak %+.1f MiB, RSS %+.1f MiB", got, time.Since(start).Round(time.Millisecond), float64(peak)/miB, float64(rss-baseRSS)/miB)
	if err != nil || got != n {
		t.Fatalf("%d tokens, %v; want %d", got, err, n)
	}
	if peak > 32*miB || (!raceEnabled && rss-baseRSS > 32*miB) {
		t.Fatalf("memory grew by %.1f MiB (heap peak) / %.1f MiB (RSS), want under 32", float64(peak)/miB, float64(rss-baseRSS)/miB)
	}
}
