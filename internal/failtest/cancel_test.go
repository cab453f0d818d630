package failtest

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// promptly is how soon after a caller's cancel or deadline the upstream
// request must see its context end. Without propagation it would be held
// until cbkgate's own 30 s bound, or forever.
const promptly = time.Second

// goroutineBaseline warms the gate up (one listing over gRPC and one over
// HTTP, so that every connection and pool exists, the gateway's own gRPC
// connection included) and returns the goroutine count.
func goroutineBaseline(t *testing.T, g *gate, up *fu.Server) int {
	t.Helper()
	up.Script(fu.List, fu.Page("", fu.Tokens("warm_", 1)...), fu.Page("", fu.Tokens("warm_", 1)...))
	if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "warm"}); err != nil {
		t.Fatalf("warm-up List: %v", err)
	}
	if res := g.do(g.ctx(), http.MethodGet, "/v1/users/warm/tokens", ""); res.status != http.StatusOK {
		t.Fatalf("warm-up HTTP List: %d %s", res.status, res.body)
	}
	return runtime.NumGoroutine()
}

// wantGoroutinesBack polls, bounded, until the goroutine count is back at
// or below baseline.
func wantGoroutinesBack(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the call; stacks:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // bounded polling
	}
}

// waitHeld waits until n upstream requests are being held.
func waitHeld(t *testing.T, up *fu.Server, n int) {
	t.Helper()
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return fu.Held(rs) == n }) {
		t.Fatalf("%d upstream requests held, want %d: %+v", fu.Held(up.Requests()), n, up.Requests())
	}
}

// wantUpstreamCancelled waits until the held upstream request has seen its
// context end and checks that it did so promptly after at.
func wantUpstreamCancelled(t *testing.T, up *fu.Server, at time.Time) {
	t.Helper()
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return fu.Cancelled(rs) == 1 }) {
		t.Fatalf("the upstream request was never cancelled: %+v", up.Requests())
	}
	for _, r := range up.Requests() {
		if r.Cancelled {
			if lag := r.CancelledAt.Sub(at); lag > promptly {
				t.Errorf("the upstream request was cancelled %s after the caller's cancel or deadline", lag)
			}
		}
	}
}

// TestFaultCancelMidList: a caller that cancels in the middle of a List
// (first page received, the next one held upstream) gets CANCELLED, the
// upstream request for the next page is cancelled at once, and goroutines
// return to their baseline.
func TestFaultCancelMidList(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	baseline := goroutineBaseline(t, g, up)
	first := fu.Tokens("tok_", 2)
	up.Script(fu.List, fu.Page("c1", first...), fu.Hang(fu.Page("")))

	ctx, cancel := context.WithCancel(g.ctx())
	defer cancel()
	stream, err := g.Client().List(ctx, &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range first {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv: %v", err)
		}
	}
	waitHeld(t, up, 1)
	cancelled := time.Now()
	cancel()
	_, err = stream.Recv()
	wantCode(t, err, codes.Canceled)
	wantUpstreamCancelled(t, up, cancelled)
	wantCalls(t, up, fu.List, 4)
	wantGoroutinesBack(t, baseline)
}

// TestFaultDeadlineMidList: a caller whose deadline passes in the middle of
// a List gets DEADLINE_EXCEEDED after the tokens already sent, and the held
// upstream request is cancelled at the deadline.
func TestFaultDeadlineMidList(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	baseline := goroutineBaseline(t, g, up)
	first := fu.Tokens("tok_", 2)
	up.Script(fu.List, fu.Page("c1", first...), fu.Hang(fu.Page("")))

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	got, err := g.list(g.withAuth(ctx), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	wantCode(t, err, codes.DeadlineExceeded)
	if !slices.Equal(ids(got), tokenIDs(first)) {
		t.Fatalf("listed %v, want %v before the deadline", ids(got), tokenIDs(first))
	}
	wantUpstreamCancelled(t, up, deadline)
	wantGoroutinesBack(t, baseline)
}

// TestFaultCancelUnary: a caller that cancels a Create while the upstream
// is still working on it gets CANCELLED; the upstream request is cancelled
// at once and not sent again.
func TestFaultCancelUnary(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	baseline := goroutineBaseline(t, g, up)
	up.Script(fu.Create, fu.Hang(fu.Created("late", "secret")))

	ctx, cancel := context.WithCancel(g.ctx())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := g.create(ctx)
		errc <- err
	}()
	waitHeld(t, up, 1)
	cancelled := time.Now()
	cancel()
	wantCode(t, <-errc, codes.Canceled)
	wantUpstreamCancelled(t, up, cancelled)
	wantCalls(t, up, fu.Create, 1)
	wantGoroutinesBack(t, baseline)
}

// TestFaultCancelDuringRetryWait: a caller that cancels while cbkgate waits
// out a Retry-After gets CANCELLED at once and no further attempt is made.
func TestFaultCancelDuringRetryWait(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	baseline := goroutineBaseline(t, g, up)
	up.SetDefault(fu.List, fu.Error(503, "SERVICE_UNAVAILABLE", "busy").WithHeader("Retry-After", "20"))

	ctx, cancel := context.WithCancel(g.withAuth(context.Background()))
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := g.list(ctx, &tokenv1.ListRequest{UserId: "u1"})
		errc <- err
	}()
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return len(rs) == 3 && rs[2].Done }) {
		t.Fatalf("the first attempt did not happen: %+v", up.Requests())
	}
	cancelled := time.Now()
	cancel()
	select {
	case err := <-errc:
		wantCode(t, err, codes.Canceled)
	case <-time.After(callTimeout):
		t.Fatal("List still waiting to retry after its caller cancelled")
	}
	if lag := time.Since(cancelled); lag > promptly {
		t.Errorf("CANCELLED %s after the cancel", lag)
	}
	wantCalls(t, up, fu.List, 3) // the two warm-ups and the one attempt
	wantGoroutinesBack(t, baseline)
}

// TestFaultHTTPClientGone: an HTTP caller that goes away in the middle of a
// streamed List, or during a Create, cancels the upstream request at once.
func TestFaultHTTPClientGone(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	baseline := goroutineBaseline(t, g, up)

	t.Run("list", func(t *testing.T) {
		up.Script(fu.List, fu.Page("c1", fu.Tokens("tok_", 2)...), fu.Hang(fu.Page("")))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+"/v1/users/u1/tokens?page_size=2", nil)
		resp, err := g.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for range 2 {
			if !sc.Scan() {
				t.Fatalf("stream ended early: %v", sc.Err())
			}
		}
		waitHeld(t, up, 1)
		cancelled := time.Now()
		cancel()
		wantUpstreamCancelled(t, up, cancelled)
	})
	t.Run("create", func(t *testing.T) {
		before := fu.Cancelled(up.Requests())
		up.Script(fu.Create, fu.Hang(fu.Created("late", "secret")))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL()+"/v1/users/u1/tokens", nil)
			resp, err := g.hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitHeld(t, up, 1)
		cancelled := time.Now()
		cancel()
		<-errc
		if !up.Wait(callTimeout, func(rs []fu.Request) bool { return fu.Cancelled(rs) == before+1 }) {
			t.Fatalf("the upstream create was never cancelled: %+v", up.Requests())
		}
		for _, r := range up.Requests() {
			if r.Route == fu.Create && r.Cancelled && r.CancelledAt.Sub(cancelled) > promptly {
				t.Errorf("upstream create cancelled %s after the HTTP caller left", r.CancelledAt.Sub(cancelled))
			}
		}
		wantCalls(t, up, fu.Create, 1)
	})
	g.hc.CloseIdleConnections()
	wantGoroutinesBack(t, baseline)
}

// TestHostileCancelledCallFlood: one connection with a valid API key opens
// List calls and resets each at once, thousands of times (the issue:
// 50,000 such calls wrote 50,000 info lines, 16 MB, in 2 s: cancelled
// calls were not limited like refused ones). The log lines stay bounded,
// and lines saying how many were suppressed account for every call.
func TestHostileCancelledCallFlood(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	const key = "sk-cancel-flood-0123456789abcdef"
	if err := os.WriteFile(keyFile, []byte("flood "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.Args("--api-keys-file="+keyFile))
	before := g.Logs().Lines()
	r := dialRawH2(t, g.GRPCAddr())
	authz := hpack.HeaderField{Name: "authorization", Value: "Bearer " + key, Sensitive: true}
	const attempts = 3000
	elapsed := r.resetLists(attempts, authz)
	lines := g.Logs().Lines() - before
	bound := refusedLinesBound(elapsed)
	t.Logf("%d cancelled List calls in %s wrote %d log lines (bound %d)", attempts, elapsed.Round(time.Millisecond), lines, bound)
	if lines > bound {
		t.Fatalf("%d log lines, want at most %d", lines, bound)
	}
	// Every call is accounted for: logged as CANCELLED, or counted as
	// suppressed by a later line (the report comes within a second).
	logged, suppressed := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		logged, suppressed = 0, 0
		for _, l := range g.Logs().JSON(t) {
			if l["msg"] == "grpc call" && l["method"] == "/cbkgate.token.v1.TokenService/List" {
				if l["code"] != "Canceled" || l["caller"] != "key:flood" {
					t.Fatalf("call line %v, want code Canceled from key:flood", l)
				}
				logged++
			}
			if n, ok := l["suppressed"].(float64); ok {
				suppressed += int(n)
			}
		}
		if logged+suppressed >= attempts || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // bounded polling
	}
	t.Logf("%d call lines, %d suppressed", logged, suppressed)
	if logged+suppressed != attempts {
		t.Errorf("%d call lines and %d suppressed, want the %d calls accounted for", logged, suppressed, attempts)
	}
	if !strings.Contains(g.Logs().String(), `"msg":"log lines suppressed"`) {
		t.Error("no line of its own reports the suppressed count after the flood")
	}
	wantCalls(t, up, fu.List, 0)
}
