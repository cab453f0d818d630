package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// holdCreates makes up hold every create until released (or cancelled),
// then answer with then.
func holdCreates(up *fu.Server, then fu.Reply) {
	up.SetDefault(fu.Create, fu.Hang(then))
}

// waitHeld waits, bounded, until n requests are held upstream.
func waitHeld(t *testing.T, up *fu.Server, n int) {
	t.Helper()
	if !up.Wait(10*time.Second, func(rs []fu.Request) bool { return fu.Held(rs) == n }) {
		t.Fatalf("the in-flight calls did not reach upstream within 10s: %+v", up.Requests())
	}
}

type callResult struct {
	code       codes.Code
	msg        string
	httpStatus int
	err        error
}

// inFlightCalls is how many calls inFlight starts.
const inFlightCalls = 3

// inFlight starts one gRPC Create (on s.Conn), one HTTP POST and one
// Connect Create (with s.HTTP) in goroutines and returns the channel their
// results arrive on.
func inFlight(t *testing.T, s *server) <-chan callResult {
	t.Helper()
	out := make(chan callResult, inFlightCalls)
	// The calls outlive the test's other calls on purpose (they span the
	// shutdown), but not the test: cleanup cancels and waits for them.
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	client := s.Client()
	wg.Add(inFlightCalls)
	go func() {
		defer wg.Done()
		_, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "drain-user", Name: "grpc"})
		st := status.Convert(err)
		out <- callResult{code: st.Code(), msg: "grpc: " + st.Message()}
	}()
	hc := s.HTTP()
	url := s.URL() + tokensPath("drain-user")
	go func() {
		defer wg.Done()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"name":"http"}`))
		if err != nil {
			out <- callResult{err: err}
			return
		}
		resp, err := hc.Do(req)
		if err != nil {
			out <- callResult{err: err, msg: "http"}
			return
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		out <- callResult{httpStatus: resp.StatusCode, err: err, msg: "http: " + buf.String()}
	}()
	creator := connect.NewClient[tokenv1.CreateRequest, tokenv1.CreateResponse](hc,
		s.URL()+"/cbkgate.token.v1.TokenService/Create", connect.WithProtoJSON())
	go func() {
		defer wg.Done()
		_, err := creator.CallUnary(ctx, connect.NewRequest(&tokenv1.CreateRequest{UserId: "drain-user", Name: "connect"}))
		code := codes.OK
		if err != nil {
			code = codes.Code(connect.CodeOf(err))
		}
		out <- callResult{code: code, msg: fmt.Sprint("connect: ", err)}
	}()
	return out
}

// collect waits, bounded, for the n results of inFlight.
func collect(t *testing.T, results <-chan callResult, n int) []callResult {
	t.Helper()
	var out []callResult
	timeout := time.After(20 * time.Second)
	for range n {
		select {
		case r := <-results:
			out = append(out, r)
		case <-timeout:
			t.Fatalf("in-flight calls did not end within 20s")
		}
	}
	return out
}

// TestShutdownDrain: when Run's context ends with calls in flight, health
// turns NOT_SERVING and /readyz 503, new calls are refused, the calls in
// flight finish normally, and Run returns nil.
func TestShutdownDrain(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-drain"
	emu, up := newEmulator(t, secret)
	holdCreates(up, fu.Forward(emu))
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.ShutdownTimeout(20*time.Second))

	// A health watcher from before the shutdown, as a load balancer has.
	watchCtx, stopWatch := context.WithCancel(callCtx(t))
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(s.Dial(nil)).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v, %v; want SERVING", r, err)
	}

	results := inFlight(t, s)
	waitHeld(t, up, inFlightCalls)

	s.Shutdown() // as SIGTERM does

	// Health turns NOT_SERVING for the watcher.
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Errorf("health watch ended with %v before reporting NOT_SERVING", err)
			break
		}
		if r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
	}
	stopWatch()

	// /readyz answers 503 while the calls drain, so that load balancers
	// take the instance out of rotation. Each probe uses a new connection,
	// as a kubelet's does.
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	var last string
	readyz503 := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := probe.Get(s.URL() + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		last = resp.Status
		if resp.StatusCode == http.StatusServiceUnavailable {
			readyz503 = true
			break
		}
	}
	if !readyz503 {
		t.Errorf("/readyz never answered 503 while draining (last answer: %s); the contract wants 503 while draining", last)
	}

	// New calls on a fresh connection are refused; nothing goes upstream.
	ctx, cancel := context.WithTimeout(callCtx(t), 5*time.Second)
	_, err = tokenv1.NewTokenServiceClient(s.Dial(nil)).Create(ctx, &tokenv1.CreateRequest{UserId: "late"})
	cancel()
	if status.Code(err) == codes.OK {
		t.Error("a new gRPC call during the drain succeeded")
	}
	if n := up.Calls(fu.Create); n != inFlightCalls {
		t.Errorf("%d creates reached upstream, want the %d in flight: a call started during the drain reached it", n, inFlightCalls)
	}

	// Run is still draining while the calls are held.
	select {
	case <-s.Done():
		t.Fatalf("Run returned (%v) while calls were still in flight", s.Err())
	default:
	}

	up.Release()
	for _, r := range collect(t, results, inFlightCalls) {
		if r.err != nil || r.code != codes.OK || (r.httpStatus != 0 && r.httpStatus != http.StatusOK) {
			t.Errorf("in-flight call did not complete OK during the drain: %+v", r)
		}
	}
	if err := s.Stop(30 * time.Second); err != nil {
		t.Errorf("Run = %v after a clean drain, want nil", err)
	}
}

// TestShutdownTimeout: calls that would never finish (a Create over gRPC,
// HTTP and Connect waiting for its answer, a List over gRPC and over HTTP
// waiting for its next page) cannot hold Run past --shutdown-timeout: Run
// returns nil about then, every held upstream request is cancelled by
// then, no caller sees OK or a listing that looks complete, a log line
// says the timeout cut calls off, and nothing of cbkgate is left running.
// Not parallel: it counts goroutines.
func TestShutdownTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	up := fu.Start(t)
	holdCreates(up, fu.Error(http.StatusNotImplemented, "NOT_IMPLEMENTED", "no upstream")) // never released
	all := fu.Tokens("tok_", 4)
	up.Script(fu.List,
		fu.Page("c1", all[:2]...), fu.Hang(fu.Page("", all[2:]...)), // the gRPC stream
		fu.Page("c1", all[:2]...), fu.Hang(fu.Page("", all[2:]...)), // the HTTP stream
	)
	before := gatetest.Goroutines()
	s := startServer(t, up.URL, gatetest.Held("held-secret-timeout"), gatetest.ShutdownTimeout(timeout))

	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	stream, err := s.Client().List(ctx, &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []*tokenv1.ListResponse
	for range 2 {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("gRPC List before the shutdown: %v", err)
		}
		got = append(got, r)
	}
	waitHeld(t, up, 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+tokensPath("u1")+"?page_size=2", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP List before the shutdown: %s", resp.Status)
	}
	waitHeld(t, up, 2)
	results := inFlight(t, s)
	waitHeld(t, up, 2+inFlightCalls)

	start := time.Now()
	err = s.Stop(timeout + 10*time.Second)
	elapsed := time.Since(start)
	if err != nil {
		t.Errorf("Run = %v after the shutdown timeout, want nil", err)
	}
	if elapsed < timeout || elapsed > timeout+3*time.Second {
		t.Errorf("Run returned %v after its context ended; want about the %v shutdown timeout", elapsed, timeout)
	}
	if !up.Wait(5*time.Second, func(rs []fu.Request) bool { return fu.Cancelled(rs) == 2+inFlightCalls }) {
		t.Fatalf("upstream requests of the calls cut off still open: %+v", up.Requests())
	}
	for _, r := range up.Requests() {
		if r.Cancelled && r.CancelledAt.Sub(start) > timeout+time.Second {
			t.Errorf("upstream %s cancelled %s after shutdown began (timeout %s)", r.Route, r.CancelledAt.Sub(start), timeout)
		}
	}

	for _, r := range collect(t, results, inFlightCalls) {
		if r.err == nil && r.code == codes.OK && (r.httpStatus == 0 || r.httpStatus == http.StatusOK) {
			t.Errorf("a call stuck past the shutdown timeout ended OK: %+v", r)
		}
	}
	if rest, err := gatetest.Recv(stream); err == nil {
		t.Errorf("gRPC List cut off by the shutdown ended OK with %v", responseIDs(append(got, rest...)))
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		// The connection ended cleanly, so the listing must say it failed.
		if results, errLine := gatetest.NDJSON(t, body); errLine == nil {
			t.Errorf("HTTP List cut off by the shutdown looks complete: %v", responseIDs(results))
		}
	}
	if !strings.Contains(s.Logs().String(), "shutdown timeout reached") {
		t.Error("no log line says the shutdown timeout cut calls off")
	}
	s.Conn().Close()
	s.HTTP().CloseIdleConnections()
	gatetest.WantNothingLeft(t, before)
}
