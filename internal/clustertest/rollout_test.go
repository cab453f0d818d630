//go:build haproxy

package clustertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// preStop stands in for the Deployment's preStop sleep: the time between
// the endpoint leaving the balancer and SIGTERM (shorter than in the
// manifests, where it covers kube-proxy and ingress controllers catching
// up; here HAProxy's drain takes effect at once).
const preStop = time.Second

// TestRollingRestartUnderLoad: three replicas behind HAProxy (gRPC over
// HTTP/2, the gateway over HTTP/1.1, /readyz health checks) serve steady
// gRPC and HTTP load while each in turn is restarted the way Kubernetes
// rolls a Deployment: taken out of the balancer, a preStop pause, SIGTERM
// (it drains and exits 0), started again, back in once its health check
// passes. No call may fail, every List must be complete, and every Create
// must be upstream exactly once.
func TestRollingRestartUnderLoad(t *testing.T) {
	c := newCluster(t)
	c.emu.Seed(listedUser, listedTokens)
	c.emu.Seed(slowUser, slowTokens)
	wantList, _ := c.emulatorTokens(t, listedUser)
	if len(wantList) != listedTokens {
		t.Fatalf("seeded %d tokens, emulator lists %d", listedTokens, len(wantList))
	}

	cc, err := grpc.NewClient(c.grpcFront, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	grpcClient := tokenv1.NewTokenServiceClient(cc)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	httpClient := &http.Client{Transport: tr, Timeout: callTimeout}

	l := newLoad(wantList)
	for w := range 3 {
		l.grpcWorker(t, grpcClient, "grpc-"+itoa(w))
	}
	for w := range 2 {
		l.httpWorker(t, httpClient, "http://"+c.httpFront, "http-"+itoa(w))
	}
	stopped := false
	defer func() {
		if !stopped {
			l.halt()
		}
	}()

	// Every replica takes calls before the roll starts.
	for i := range c.replicas {
		c.waitServes(t, i, 0, 10*time.Second)
	}
	inFlight := 0
	for i, r := range c.replicas {
		// A client already connected to this replica has a slow List
		// running (~3 s) when the roll reaches it: the drain must let it
		// finish, every token, OK.
		slow := startSlowList(t, r)
		c.setState(t, r, "drain")
		time.Sleep(preStop)
		if code := r.proc.stop(t, syscall.SIGTERM, 15*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0", r.name, code)
		}
		if res := <-slow; res.err != nil || res.tokens != slowTokens || !res.spannedSIGTERM {
			t.Errorf("%s: List in flight at SIGTERM: %d of %d tokens, %v (still running at SIGTERM: %v)", r.name, res.tokens, slowTokens, res.err, res.spannedSIGTERM)
		} else {
			inFlight++
		}
		before := r.up.requests.Load()
		r.start(t)
		c.setState(t, r, "ready")
		c.waitStatus(t, 10*time.Second, "UP", r)
		c.waitServes(t, i, before, 10*time.Second)
		t.Logf("%s restarted: %s so far", r.name, l.report())
	}
	time.Sleep(500 * time.Millisecond)
	l.halt()
	stopped = true

	verified := l.verifyCreates(t, c)
	if n, want := c.upstreamCreates(), int64(verified); n != want {
		t.Errorf("%d create requests reached upstream for %d creates", n, want)
	}
	if l.failed.Load() != 0 {
		t.Errorf("%d calls failed during the rolling restart:\n%s", l.failed.Load(), l.failureList())
	}
	if l.lists.Load() == 0 || verified == 0 {
		t.Errorf("load made %d lists and %d creates, want both", l.lists.Load(), verified)
	}
	t.Logf("rolling restart of %d replicas: %s; %d creates verified upstream exactly once; every List complete (%d tokens each); %d Lists in flight at SIGTERM completed; upstream requests per replica %v",
		len(c.replicas), l.report(), verified, listedTokens, inFlight, c.upstreamRequests())
}

type slowListResult struct {
	tokens         int
	err            error
	spannedSIGTERM bool // the List was still running when its replica exited
}

// startSlowList starts a List of slowUser straight to replica r (as a client
// connected before the drain began) and returns once its first token has
// arrived; the result comes on the channel.
func startSlowList(t *testing.T, r *replica) <-chan slowListResult {
	t.Helper()
	cc, err := grpc.NewClient(r.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	stream, err := tokenv1.NewTokenServiceClient(cc).List(ctx, &tokenv1.ListRequest{UserId: slowUser, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetToken().GetId() == "" {
		t.Fatalf("slow List on %s: first token: %v", r.name, err)
	}
	done := make(chan slowListResult, 1)
	proc := r.proc
	go func() {
		defer cc.Close()
		defer cancel()
		res := slowListResult{tokens: 1}
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				res.err = err
				break
			}
			res.tokens++
		}
		// The process exits only after its last call ended, so a List that
		// ended after the signal was sent was in flight during the drain.
		res.spannedSIGTERM = proc.signalled.Load()
		done <- res
	}()
	return done
}
