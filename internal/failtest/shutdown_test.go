package failtest

// Shutdown as cbkgate's users see it, beyond what internal/app and
// cmd/server already pin (unary calls in flight drain, a fresh connection is
// refused, /readyz 503, the timeout cuts stuck calls off with their upstream
// requests, exit 0): List streams in flight across the drain, new calls on
// connections that are already open, and nothing of cbkgate left running
// once Run has returned.

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// openList starts a List over gRPC and receives n tokens.
func openList(t *testing.T, g *gate, n int) (tokenv1.TokenService_ListClient, []*tokenv1.ListResponse) {
	t.Helper()
	stream, err := g.Client().List(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: int32(n)})
	if err != nil {
		t.Fatal(err)
	}
	var got []*tokenv1.ListResponse
	for range n {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, r)
	}
	return stream, got
}

// drainList receives the rest of a stream.
func drainList(stream tokenv1.TokenService_ListClient, got []*tokenv1.ListResponse) ([]*tokenv1.ListResponse, error) {
	rest, err := gatetest.Recv(stream)
	return append(got, rest...), err
}

// httpList is a streamed List over HTTP whose body is read after the test
// has done other things.
type httpList struct {
	resp *http.Response
}

func openHTTPList(t *testing.T, g *gate, pageSize int) *httpList {
	t.Helper()
	req, _ := http.NewRequestWithContext(g.ctx(), http.MethodGet, g.URL()+"/v1/users/u1/tokens?page_size="+strconv.Itoa(pageSize), nil)
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP List: %s", resp.Status)
	}
	return &httpList{resp: resp}
}

// rest reads the remaining body; err is a read error (a connection cut
// off), not an error line.
func (h *httpList) rest() ([]byte, error) {
	b, err := io.ReadAll(h.resp.Body)
	h.resp.Body.Close()
	return b, err
}

// waitDraining polls /readyz, bounded, until it answers 503.
func waitDraining(t *testing.T, g *gate) {
	t.Helper()
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := probe.Get(g.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not turn 503 within 5s of the shutdown (last: %v)", err)
		}
		time.Sleep(5 * time.Millisecond) // bounded polling
	}
}

// TestShutdownListsInFlightComplete: List streams over gRPC and HTTP that
// are in the middle of a listing when shutdown begins (their next upstream
// page still outstanding) run to the end: every token, once, OK. Meanwhile
// new calls on the gRPC connection that is already open (once it has been
// told of the drain), and new HTTP requests, are refused with UNAVAILABLE
// (HTTP 503) and nothing new goes upstream; Run returns nil once the
// streams are done.
func TestShutdownListsInFlightComplete(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.ShutdownTimeout(20*time.Second))
	all := fu.Tokens("tok_", 4)
	up.Script(fu.List,
		fu.Page("c1", all[:2]...), fu.Hang(fu.Page("", all[2:]...)), // the gRPC stream
		fu.Page("c1", all[:2]...), fu.Hang(fu.Page("", all[2:]...)), // the HTTP stream
	)
	stream, got := openList(t, g, 2)
	waitHeld(t, up, 1)
	hl := openHTTPList(t, g, 2)
	waitHeld(t, up, 2)

	g.Shutdown() // as SIGTERM does
	waitDraining(t, g)
	// A call sent before the server's GOAWAY reached the client is still
	// taken (HTTP/2's graceful shutdown) and served in full; "new" means
	// after the client was told. /readyz turns 503 before the GOAWAY goes
	// out, so wait, bounded, until the open connection has received it.
	for deadline := time.Now().Add(5 * time.Second); g.Conn().GetState() == connectivity.Ready; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the open gRPC connection was not told of the drain (GOAWAY) within 5s")
		}
	}

	ctx, cancel := context.WithTimeout(g.ctx(), 5*time.Second)
	defer cancel()
	_, err := g.create(ctx)
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Errorf("new Create on an open connection during the drain: %v, want UNAVAILABLE", err)
	}
	wantCalls(t, up, fu.Create, 0)
	// The gateway's own connection is told in the same way, a moment apart:
	// an HTTP call in that moment is served in full (200, one upstream
	// create), never half; after it, refused with 503 and not sent upstream.
	served := 0
	for deadline := time.Now().Add(5 * time.Second); ; {
		res := g.do(ctx, http.MethodPost, "/v1/users/u1/tokens", `{"name":"late"}`)
		if res.status == http.StatusOK {
			served++
			if time.Now().After(deadline) {
				t.Fatalf("HTTP calls still served %s into the drain", 5*time.Second)
			}
			continue
		}
		if res.status != http.StatusServiceUnavailable || gatetest.Status(t, res.body).Code() != codes.Unavailable {
			t.Fatalf("new HTTP Create during the drain: %d %s, want 503 UNAVAILABLE", res.status, res.body)
		}
		break
	}
	if served > 0 {
		t.Logf("%d HTTP calls served in the moment before the gateway connection was told of the drain", served)
	}
	wantCalls(t, up, fu.Create, served)
	select {
	case <-g.Done():
		t.Fatalf("Run returned (%v) with two streams in flight", g.Err())
	default:
	}

	up.Release()
	got, err = drainList(stream, got)
	if err != nil || !slices.Equal(ids(got), tokenIDs(all)) {
		t.Errorf("gRPC List across the drain: %v, %v; want %v, OK", ids(got), err, tokenIDs(all))
	}
	body, err := hl.rest()
	if err != nil {
		t.Fatalf("HTTP List across the drain: reading: %v", err)
	}
	results, errLine := gatetest.NDJSON(t, body)
	// The first two lines were read by nobody yet: they are in body too.
	if errLine != nil || !slices.Equal(ids(results), tokenIDs(all)) {
		t.Errorf("HTTP List across the drain: %v, error line %v; want %v and no error", ids(results), errLine, tokenIDs(all))
	}
	if err := g.Stop(10 * time.Second); err != nil {
		t.Errorf("Run = %v after a clean drain, want nil", err)
	}
	wantCalls(t, up, fu.List, 4)
}

// TestShutdownLeavesNothingRunning: once Run has returned, no goroutine of
// cbkgate is left: no server, no gateway connection, and no connection to
// the upstream, which is still up (as ChatBotKit would be) and so would not
// close them itself.
func TestShutdownLeavesNothingRunning(t *testing.T) {
	up := fu.Start(t)
	before := gatetest.Goroutines()
	g := startGate(t, up.URL)
	up.SetDefault(fu.List, fu.Page("", fu.Tokens("tok_", 3)...))
	if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.create(g.ctx()); err != nil {
		t.Fatal(err)
	}
	if res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", ""); res.status != http.StatusOK {
		t.Fatalf("HTTP List: %d", res.status)
	}
	if err := g.Stop(10 * time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	g.Conn().Close()
	g.hc.CloseIdleConnections()
	gatetest.WantNothingLeft(t, before)
}
