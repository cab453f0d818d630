package app_test

import (
	"fmt"

	"bytes"
	"connectrpc.com/connect"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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

// waitHeld waits, bounded, until n creates are held upstream.
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

// inFlight starts one gRPC Create, one HTTP POST and one Connect Create in
// goroutines and returns the channel their results arrive on.
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
	client := tokenv1.NewTokenServiceClient(s.Dial(nil))
	wg.Add(inFlightCalls)
	go func() {
		defer wg.Done()
		_, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "drain-user", Name: "grpc"})
		st := status.Convert(err)
		out <- callResult{code: st.Code(), msg: "grpc: " + st.Message()}
	}()
	hc := s.HTTPClient(nil)
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
	cc := s.connectCaller("")
	go func() {
		defer wg.Done()
		_, err := cc.creator.CallUnary(ctx, connect.NewRequest(&tokenv1.CreateRequest{UserId: "drain-user", Name: "connect"}))
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

// TestShutdownTimeout: calls that do not finish within --shutdown-timeout
// are cut off, end non-OK, and Run still returns nil, promptly.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	up := fu.Start(t)
	holdCreates(up, fu.Error(http.StatusNotImplemented, "NOT_IMPLEMENTED", "no upstream")) // never released
	s := startServer(t, up.URL, gatetest.Held("held-secret-timeout"), gatetest.ShutdownTimeout(300*time.Millisecond))

	results := inFlight(t, s)
	waitHeld(t, up, inFlightCalls)

	start := time.Now()
	err := s.Stop(30 * time.Second)
	elapsed := time.Since(start)
	if err != nil {
		t.Errorf("Run = %v after the shutdown timeout, want nil", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("Run returned %v after its context ended; want about the 300ms shutdown timeout (and < 5s)", elapsed)
	}
	for _, r := range collect(t, results, inFlightCalls) {
		if r.err == nil && r.code == codes.OK && (r.httpStatus == 0 || r.httpStatus == http.StatusOK) {
			t.Errorf("a call stuck past the shutdown timeout ended OK: %+v", r)
		}
	}
	if !strings.Contains(s.Logs().String(), "shutdown timeout reached") {
		t.Error("no log line says the shutdown timeout cut calls off")
	}
}
