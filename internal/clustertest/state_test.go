//go:build haproxy

package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/redistest"
)

// The replicas' shared state: three replicas, one real redis-server.

// stateArgs starts a redis-server and returns the replicas' flags for it.
func stateArgs(t *testing.T) (*redistest.Server, []string) {
	t.Helper()
	srv := redistest.Start(t)
	key := filepath.Join(t.TempDir(), "state.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, []string{"--state=" + srv.URL(), "--state-key-file=" + key}
}

// replicaClients dials every replica directly.
func replicaClients(t *testing.T, c *cluster) []tokenv1.TokenServiceClient {
	t.Helper()
	var out []tokenv1.TokenServiceClient
	for _, r := range c.replicas {
		cc, err := grpc.NewClient(r.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		out = append(out, tokenv1.NewTokenServiceClient(cc))
	}
	return out
}

// One request id sent to every replica, one after another and then all at
// once, makes exactly one upstream create each time, and every answer is
// the same token with the same secret.
func TestClusterIdempotentCreate(t *testing.T) {
	_, args := stateArgs(t)
	c := newCluster(t, args...)
	clients := replicaClients(t, c)
	create := func(cl tokenv1.TokenServiceClient, rid string) (*tokenv1.CreateResponse, error) {
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		defer cancel()
		return cl.Create(ctx, &tokenv1.CreateRequest{UserId: "idem", Name: "n-" + rid, RequestId: rid})
	}

	var first *tokenv1.CreateResponse
	for i, cl := range clients {
		resp, err := create(cl, "sequential")
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if first == nil {
			first = resp
		} else if !proto.Equal(resp, first) {
			t.Fatalf("replica %d answered %v, replica 0 %v", i, resp, first)
		}
	}
	if n := c.upstreamCreates(); n != 1 {
		t.Fatalf("sequential: %d upstream creates, want 1", n)
	}

	const perReplica = 4
	resps := make([]*tokenv1.CreateResponse, len(clients)*perReplica)
	errs := make([]error, len(resps))
	var wg sync.WaitGroup
	for i := range resps {
		wg.Go(func() { resps[i], errs[i] = create(clients[i%len(clients)], "concurrent") })
	}
	wg.Wait()
	for i := range resps {
		if errs[i] != nil || !proto.Equal(resps[i], resps[0]) || resps[i].GetToken() == "" {
			t.Fatalf("concurrent call %d: %v %v, first %v", i, resps[i], errs[i], resps[0])
		}
	}
	if n := c.upstreamCreates(); n != 2 {
		t.Fatalf("concurrent: %d upstream creates in all, want 2", n)
	}
	ids, _ := c.emulatorTokens(t, "idem")
	t.Logf("cluster figures: %d calls, %d upstream creates, %d tokens held, every answer identical", len(clients)+len(resps), c.upstreamCreates(), len(ids))
}

// --caller-rate 5 holds for the cluster: one caller spreading creates over
// three replicas gets the burst (10) and 5 a second in all, not three
// times that.
func TestClusterCallerRate(t *testing.T) {
	_, args := stateArgs(t)
	c := newCluster(t, append(args, "--caller-rate=5")...)
	clients := replicaClients(t, c)
	const window = 3 * time.Second
	var ok, limited atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			cl := clients[w%len(clients)]
			for i := 0; time.Since(start) < window; i++ {
				ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
				_, err := cl.Create(ctx, &tokenv1.CreateRequest{UserId: "rated", Name: fmt.Sprintf("w%d-%d", w, i)})
				cancel()
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.ResourceExhausted:
					limited.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					t.Errorf("create: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Burst 10, then 5/s: with a little slack for the last refill.
	most := 10 + int64(5*elapsed.Seconds()) + 2
	if ok.Load() > most || ok.Load() < 10 {
		t.Fatalf("%d creates allowed in %v across 3 replicas, want at most %d (per replica it would be ~3x)", ok.Load(), elapsed, most)
	}
	if limited.Load() == 0 {
		t.Fatal("no call was limited")
	}
	if up := c.upstreamCreates(); up != ok.Load() {
		t.Fatalf("%d upstream creates for %d allowed calls", up, ok.Load())
	}
	t.Logf("cluster figures: --caller-rate 5 over 3 replicas for %v: %d allowed (bound %d), %d refused", elapsed.Round(time.Millisecond), ok.Load(), most, limited.Load())
}

// Killing Redis mid-load: no create without a request id fails, and no
// idempotent create goes upstream twice (each request id, sent twice to
// different replicas, leaves at most one token).
func TestClusterRedisKilledMidLoad(t *testing.T) {
	srv, args := stateArgs(t)
	c := newCluster(t, append(args, "--caller-rate=100000")...) // on, never reached: the limiter asks Redis, then falls back
	clients := replicaClients(t, c)
	var plainOK, plainFailed, idemOK, idemRefused atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
				_, err := clients[(w+i)%3].Create(ctx, &tokenv1.CreateRequest{UserId: "plain", Name: fmt.Sprintf("p%d-%d", w, i)})
				cancel()
				if err != nil {
					plainFailed.Add(1)
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				} else {
					plainOK.Add(1)
				}
				rid := fmt.Sprintf("w%d-%d", w, i)
				for try := range 2 {
					ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
					_, err := clients[(w+i+try)%3].Create(ctx, &tokenv1.CreateRequest{UserId: "idem", Name: rid, RequestId: rid})
					cancel()
					switch {
					case err == nil:
						idemOK.Add(1)
					case status.Code(err) == codes.Unavailable:
						idemRefused.Add(1)
					default:
						t.Errorf("idempotent create %s: %v", rid, err)
					}
				}
			}
		})
	}
	time.Sleep(time.Second)
	srv.Stop()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if plainFailed.Load() != 0 {
		t.Fatalf("%d creates without request id failed with Redis killed: %v", plainFailed.Load(), failures)
	}
	if idemRefused.Load() == 0 {
		t.Fatal("no idempotent create was refused after Redis was killed")
	}
	_, names := c.emulatorTokens(t, "idem")
	seen := map[string]int{}
	for _, n := range names {
		if seen[n]++; seen[n] > 1 {
			t.Fatalf("request id %s created %d tokens", n, seen[n])
		}
	}
	t.Logf("cluster figures: Redis killed mid-load: %d plain creates, none failed; %d idempotent calls answered, %d refused STATE_UNAVAILABLE, %d tokens, none twice",
		plainOK.Load(), idemOK.Load(), idemRefused.Load(), len(names))
}
