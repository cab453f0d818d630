package failtest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestFaultConnectionRefused: with nothing listening upstream, every call
// ends UNAVAILABLE, with cbkgate's own ErrorInfo UPSTREAM_UNAVAILABLE
// (there was no upstream answer to carry), over
// gRPC and HTTP (503). Nothing reached the upstream, so the client's retries
// (list reads, and writes that provably never left) change nothing here; they
// are pinned by the REST client's TestWritesRetriedWhenConnectionRefused.
func TestFaultConnectionRefused(t *testing.T) {
	refused, err := fu.RefusedURL()
	if err != nil {
		t.Fatal(err)
	}
	g := startGate(t, refused)

	_, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if st := wantCode(t, err, codes.Unavailable); !ownReason(st, "UPSTREAM_UNAVAILABLE") {
		t.Errorf("list: ErrorInfo %v on a connection that never opened", gatetest.ErrorInfo(st))
	}
	_, err = g.create(g.ctx())
	if st := wantCode(t, err, codes.Unavailable); !ownReason(st, "UPSTREAM_UNAVAILABLE") {
		t.Errorf("create: ErrorInfo %v on a connection that never opened", gatetest.ErrorInfo(st))
	}
	res := g.do(g.ctx(), http.MethodPost, "/v1/users/u1/tokens", `{}`)
	if res.status != http.StatusServiceUnavailable || gatetest.Status(t, res.body).Code() != codes.Unavailable {
		t.Errorf("HTTP create: %d %s, want 503 UNAVAILABLE", res.status, res.body)
	}
}

// TestFaultResetList: a list page whose connection is reset is retried; a
// reset once gives the whole list OK, a reset on every attempt UNAVAILABLE
// after 4 attempts.
func TestFaultResetList(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	all := fu.Tokens("tok_", 3)
	up.Script(fu.List, fu.Reset(), fu.Page("", all...))

	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil || !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("List after one reset: %v, %v; want %v, OK", ids(got), err, tokenIDs(all))
	}
	wantCalls(t, up, fu.List, 2)

	up.SetDefault(fu.List, fu.Reset())
	_, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if st := wantCode(t, err, codes.Unavailable); !ownReason(st, "UPSTREAM_UNAVAILABLE") {
		t.Errorf("ErrorInfo %v for a reset", gatetest.ErrorInfo(st))
	}
	wantCalls(t, up, fu.List, 2+maxAttempts)
}

// TestFaultResetWrites: a create, update or delete whose connection is reset
// after the request went out is not sent again (it may have been carried
// out): UNAVAILABLE, one upstream call each.
func TestFaultResetWrites(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.Create, fu.Reset())
	up.SetDefault(fu.Update, fu.Reset())
	up.SetDefault(fu.Delete, fu.Reset())

	_, err := g.create(g.ctx())
	wantCode(t, err, codes.Unavailable)
	wantCalls(t, up, fu.Create, 1)
	name := "n"
	_, err = g.Client().Update(g.ctx(), &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Name: &name})
	wantCode(t, err, codes.Unavailable)
	wantCalls(t, up, fu.Update, 1)
	_, err = g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: "t1"})
	wantCode(t, err, codes.Unavailable)
	wantCalls(t, up, fu.Delete, 1)
}

// TestFaultCutShortPage: a JSON page cut short (Content-Length promises more
// than arrives) is UNAVAILABLE and retried like a reset: once, and the list
// completes OK with no token twice; on the second page every time, and the
// caller has the first page's tokens and then UNAVAILABLE, never OK.
func TestFaultCutShortPage(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	all := fu.Tokens("tok_", 4)
	up.Script(fu.List,
		fu.Page("c1", all[:2]...),
		fu.CutPage("", all[2:]...),
		fu.Page("", all[2:]...),
	)
	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	if err != nil || !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("List with one page cut short once: %v, %v; want %v, OK", ids(got), err, tokenIDs(all))
	}
	wantCalls(t, up, fu.List, 3)

	up.Script(fu.List, fu.Page("c1", all[:2]...))
	up.SetDefault(fu.List, fu.CutPage("", all[2:]...))
	got, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	wantCode(t, err, codes.Unavailable)
	if !slices.Equal(ids(got), tokenIDs(all[:2])) {
		t.Fatalf("listed %v before the error, want %v", ids(got), tokenIDs(all[:2]))
	}
	wantCalls(t, up, fu.List, 3+1+maxAttempts)
}

// TestFaultCutShortCreate: a create answer cut short may have minted the
// token, so it is not sent again: UNAVAILABLE, one call.
func TestFaultCutShortCreate(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.Create, fu.CutPage("", fu.Tokens("tok_", 3)...))

	_, err := g.create(g.ctx())
	wantCode(t, err, codes.Unavailable)
	wantCalls(t, up, fu.Create, 1)
}

// TestFaultMalformedJSON: a 200 answer that is not JSON is INTERNAL and not
// retried, for a list page and for a create.
func TestFaultMalformedJSON(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.List, fu.Malformed())
	up.SetDefault(fu.Create, fu.Malformed())

	_, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	wantCode(t, err, codes.Internal)
	wantCalls(t, up, fu.List, 1)
	_, err = g.create(g.ctx())
	wantCode(t, err, codes.Internal)
	wantCalls(t, up, fu.Create, 1)

	res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
	if res.status != http.StatusInternalServerError {
		t.Errorf("HTTP list: %d, want 500", res.status)
	}
}

// TestFaultMalformedToken: a page that is JSON but not tokens (an item
// without an id; meta that is not an object) is INTERNAL, not a token with
// holes passed on.
func TestFaultMalformedToken(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.Script(fu.List,
		fu.Raw(200, "application/json", `{"items":[{"name":"no id","createdAt":1,"updatedAt":1}]}`),
		fu.Raw(200, "application/json", `{"items":[{"id":"t1","meta":[1,2],"createdAt":1,"updatedAt":1}]}`),
		fu.Raw(200, "application/json", `{"cursor":"c"}`),
	)
	for i := range 3 {
		got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
		wantCode(t, err, codes.Internal)
		if len(got) != 0 {
			t.Errorf("case %d: %d tokens passed on", i, len(got))
		}
	}
	wantCalls(t, up, fu.List, 3)
}

// TestFaultOversizedBody: a 200 answer that never ends is cut off at the
// body cap (16 MiB): INTERNAL, not retried, and the upstream could not send
// much beyond the cap. A Content-Length over the cap is refused before
// anything is read.
func TestFaultOversizedBody(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.Script(fu.List, fu.Oversized(200), fu.OversizedDeclared())

	_, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	st := wantCode(t, err, codes.Internal)
	if !ownReason(st, "UPSTREAM_MALFORMED") {
		t.Errorf("ErrorInfo %v, want cbkgate UPSTREAM_MALFORMED", gatetest.ErrorInfo(st))
	}
	// The caller gets a generic message; the call's log line says why.
	if !strings.Contains(g.Logs().String(), "too large") {
		t.Errorf("the log does not say the answer was too large")
	}
	wantCalls(t, up, fu.List, 1)
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return rs[0].Done }) {
		t.Fatal("the upstream is still sending")
	}
	n := up.Requests()[0].BytesWritten
	t.Logf("the upstream got %d bytes of an endless body out", n)
	if n > chatbotkit.DefaultMaxBodyBytes+(16<<20) {
		t.Errorf("the upstream sent %d bytes; cbkgate read past its %d-byte cap", n, chatbotkit.DefaultMaxBodyBytes)
	}

	_, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	wantCode(t, err, codes.Internal)
	wantCalls(t, up, fu.List, 2)
}

// TestFaultSlowWithinDeadline: an upstream that answers slowly but within
// the caller's deadline is simply waited for: OK, one call.
func TestFaultSlowWithinDeadline(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	all := fu.Tokens("tok_", 2)
	up.Script(fu.List, fu.Slow(300*time.Millisecond, fu.Page("", all...)))

	ctx, cancel := context.WithTimeout(g.withAuth(context.Background()), 10*time.Second)
	defer cancel()
	got, err := g.list(ctx, &tokenv1.ListRequest{UserId: "u1"})
	if err != nil || !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("List: %v, %v; want %v, OK", ids(got), err, tokenIDs(all))
	}
	wantCalls(t, up, fu.List, 1)
}

// TestFaultSlowPastDeadline: an upstream slower than the caller's deadline:
// DEADLINE_EXCEEDED when the deadline passes, not when the upstream answers,
// and the upstream request is cancelled then; a write is not retried.
func TestFaultSlowPastDeadline(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.Create, fu.Slow(time.Minute, fu.Created("late", "secret")))

	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(g.withAuth(context.Background()), deadline)
	defer cancel()
	start := time.Now()
	_, err := g.create(ctx)
	wantCode(t, err, codes.DeadlineExceeded)
	if took := time.Since(start); took > deadline+5*time.Second {
		t.Errorf("DEADLINE_EXCEEDED after %s with a %s deadline", took, deadline)
	}
	if !up.Wait(5*time.Second, func(rs []fu.Request) bool { return fu.Cancelled(rs) == 1 }) {
		t.Fatalf("the upstream request was not cancelled: %+v", up.Requests())
	}
	if at := up.Requests()[0].CancelledAt; at.Sub(start) > deadline+2*time.Second {
		t.Errorf("upstream request cancelled %s after the call began, deadline %s", at.Sub(start), deadline)
	}
	wantCalls(t, up, fu.Create, 1)
}
