package failtest

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestFaultList503TwiceThenOK: a list page answered 503 twice and then
// served gives the caller the whole list, in order, once, with OK; the
// failing page was sent three times and no other page was sent again.
func TestFaultList503TwiceThenOK(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	all := fu.Tokens("tok_", 6)
	unavailable := fu.Error(503, "SERVICE_UNAVAILABLE", "try again")
	up.Script(fu.List,
		fu.Page("c1", all[:3]...),
		unavailable, unavailable,
		fu.Page("", all[3:]...),
	)

	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 3})
	if err != nil {
		t.Fatalf("List: %v, want OK", err)
	}
	if !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("listed %v, want %v", ids(got), tokenIDs(all))
	}
	wantCalls(t, up, fu.List, 4)
	reqs := up.Requests()
	for i, wantCursor := range []string{"", "c1", "c1", "c1"} {
		if c := reqs[i].Query.Get("cursor"); c != wantCursor {
			t.Errorf("request %d: cursor %q, want %q", i+1, c, wantCursor)
		}
	}
}

// TestFaultListRetriesExhausted: a second page that keeps failing with 503
// ends the listing with UNAVAILABLE after the first page's tokens: never OK
// with tokens missing. The page was tried 4 times.
func TestFaultListRetriesExhausted(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	first := fu.Tokens("tok_", 2)
	up.Script(fu.List, fu.Page("c1", first...))
	up.SetDefault(fu.List, fu.Error(503, "SERVICE_UNAVAILABLE", "down for maintenance"))

	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	st := wantCode(t, err, codes.Unavailable)
	gatetest.WantErrorInfo(t, st, "SERVICE_UNAVAILABLE", 503)
	if !slices.Equal(ids(got), tokenIDs(first)) {
		t.Fatalf("listed %v before the error, want %v", ids(got), tokenIDs(first))
	}
	wantCalls(t, up, fu.List, 1+maxAttempts)
	wantResumesAt(t, g, up, got[len(got)-1].GetCursor(), "c1")

	// Over HTTP: 200 (the tokens went out first), the tokens, then the
	// error line.
	up.Script(fu.List, fu.Page("c1", first...))
	res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens?page_size=2", "")
	if res.status != http.StatusOK {
		t.Fatalf("HTTP %d after tokens were sent, want 200", res.status)
	}
	results, errLine := gatetest.NDJSON(t, res.body)
	if !slices.Equal(ids(results), tokenIDs(first)) || errLine == nil || errLine.Code() != codes.Unavailable {
		t.Fatalf("HTTP: results %v, error line %v; want %v then UNAVAILABLE", ids(results), errLine, tokenIDs(first))
	}
}

// TestFaultCreate500CalledOnce: a create answered 500 reaches the upstream
// exactly once; the caller sees INTERNAL with the upstream's details.
func TestFaultCreate500CalledOnce(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.Create, fu.Error(500, "INTERNAL_SERVER_ERROR", "boom"))

	_, err := g.create(g.ctx())
	st := wantCode(t, err, codes.Internal)
	gatetest.WantErrorInfo(t, st, "INTERNAL_SERVER_ERROR", 500)
	wantCalls(t, up, fu.Create, 1)
}

// TestFaultWrites503NotRetried: a write answered 503 or 429 reached the
// upstream, so it is not sent again, whatever Retry-After says.
func TestFaultWrites503NotRetried(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.Create, fu.Error(503, "SERVICE_UNAVAILABLE", "busy"))
	up.SetDefault(fu.Delete, fu.Error(429, "TOO_MANY_REQUESTS", "slow down").WithHeader("Retry-After", "1"))

	_, err := g.create(g.ctx())
	wantCode(t, err, codes.Unavailable)
	wantCalls(t, up, fu.Create, 1)

	_, err = g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: "t1"})
	st := wantCode(t, err, codes.ResourceExhausted)
	if ri := gatetest.RetryInfo(st); ri == nil || ri.GetRetryDelay().AsDuration() != time.Second {
		t.Errorf("RetryInfo %v, want a 1s delay", ri)
	}
	wantCalls(t, up, fu.Delete, 1)
}

// TestFaultList429RetryAfterHonoured: a list page answered 429 with
// Retry-After: 1 is asked again no sooner than a second later, and the
// listing then completes OK.
func TestFaultList429RetryAfterHonoured(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	all := fu.Tokens("tok_", 3)
	up.Script(fu.List,
		fu.Error(429, "TOO_MANY_REQUESTS", "slow down").WithHeader("Retry-After", "1"),
		fu.Page("", all...),
	)

	got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if err != nil {
		t.Fatalf("List: %v, want OK", err)
	}
	if !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("listed %v, want %v", ids(got), tokenIDs(all))
	}
	wantCalls(t, up, fu.List, 2)
	reqs := up.Requests()
	if gap := reqs[1].Arrived.Sub(reqs[0].Arrived); gap < time.Second {
		t.Errorf("retried %s after the 429, before its Retry-After of 1s", gap)
	}
}

// TestFaultList429RetryAfterBeyondDeadline: when Retry-After would outlast
// the caller's deadline, cbkgate does not wait: the caller gets
// RESOURCE_EXHAUSTED with RetryInfo at once (well before its deadline), and
// over HTTP 429 with a Retry-After header.
func TestFaultList429RetryAfterBeyondDeadline(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.List, fu.Error(429, "LIMITS_REACHED", "limit reached").WithHeader("Retry-After", "30"))

	ctx, cancel := context.WithTimeout(g.withAuth(context.Background()), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := g.list(ctx, &tokenv1.ListRequest{UserId: "u1"})
	st := wantCode(t, err, codes.ResourceExhausted)
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("answered after %s: it waited instead of returning the 429", took)
	}
	gatetest.WantErrorInfo(t, st, "LIMITS_REACHED", 429)
	if ri := gatetest.RetryInfo(st); ri == nil || ri.GetRetryDelay().AsDuration() != 30*time.Second {
		t.Errorf("RetryInfo %v, want 30s", ri)
	}
	wantCalls(t, up, fu.List, 1)

	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	res := g.do(hctx, http.MethodGet, "/v1/users/u1/tokens", "")
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "30" {
		t.Errorf("HTTP %d, Retry-After %q; want 429, 30", res.status, res.header.Get("Retry-After"))
	}
}

// TestFaultList429RetryAfterTooLong: a Retry-After longer than cbkgate is
// willing to wait (30 s) is not waited for even without a caller deadline.
func TestFaultList429RetryAfterTooLong(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.SetDefault(fu.List, fu.Error(429, "TOO_MANY_REQUESTS", "come back tomorrow").WithHeader("Retry-After", "86400"))

	_, err := g.list(g.withAuth(context.Background()), &tokenv1.ListRequest{UserId: "u1"})
	st := wantCode(t, err, codes.ResourceExhausted)
	if ri := gatetest.RetryInfo(st); ri == nil || ri.GetRetryDelay().AsDuration() != 24*time.Hour {
		t.Errorf("RetryInfo %v, want 24h", ri)
	}
	wantCalls(t, up, fu.List, 1)
}
