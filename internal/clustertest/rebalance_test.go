//go:build haproxy

package clustertest

import (
	"context"
	"testing"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// connectionAge is the replicas' --max-connection-age here: short, so that
// a few ages pass in seconds (the default is 5m).
const connectionAge = time.Second

// TestRebalancingThroughL4Balancer: one long-lived gRPC client connection
// through a TCP (L4) balancer, as kube-proxy balances a Service, sticks to
// one replica for as long as the connection lives. With
// --max-connection-age, the replica ends it gracefully; the client
// reconnects, the balancer picks the next replica, and within a few ages
// the client's calls have reached every replica, with no call failed.
func TestRebalancingThroughL4Balancer(t *testing.T) {
	c := newCluster(t, "--max-connection-age="+connectionAge.String())
	c.emu.Seed(listedUser, listedTokens)
	wantList, _ := c.emulatorTokens(t, listedUser)

	cc, dials := gatetest.DialCounting(t, c.tcpFront)
	client := tokenv1.NewTokenServiceClient(cc)

	// One sequential caller, so that the replica whose upstream count
	// moved is the one that served the call.
	l := newLoad(wantList)
	base := c.upstreamRequests()
	reachedAt := make([]int64, len(c.replicas)) // the dial count when a replica first served a call
	reached := 0
	perReplica := make([]int, len(c.replicas))
	deadline := time.Now().Add(30 * time.Second)
	// Until every replica has served and the connection has been replaced
	// twice per replica (two full rounds), bounded in time.
	for i := 0; reached < len(c.replicas) || dials.Load() <= 2*int64(len(c.replicas)); i++ {
		if time.Now().After(deadline) {
			break
		}
		before := c.upstreamRequests()
		ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
		l.calls.Add(1)
		if i%4 == 3 {
			l.lists.Add(1)
			if ids, err := grpcList(ctx, client); err != nil || len(ids) != len(wantList) {
				l.fail("List %d: %d tokens, %v", i, len(ids), err)
			}
		} else {
			l.attempt("rebalance")
			name := "rebalance-" + itoa(i)
			if res, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "rebalance", Name: name}); err != nil {
				l.fail("Create %d: %v", i, err)
			} else {
				l.record("rebalance", name, res.GetId())
			}
		}
		cancel()
		after := c.upstreamRequests()
		served := 0
		for r := range c.replicas {
			if after[r] > before[r] {
				served++
				perReplica[r]++
				if after[r] > base[r] && reachedAt[r] == 0 {
					reachedAt[r] = dials.Load()
					reached++
				}
			}
		}
		if served != 1 {
			t.Errorf("call %d reached %d replicas upstream, want 1", i, served)
		}
		time.Sleep(20 * time.Millisecond)
	}

	verified := l.verifyCreates(t, c)
	if reached != len(c.replicas) {
		t.Errorf("one client connection reached %d of %d replicas within 30 s (%d dials) at a %v connection age", reached, len(c.replicas), dials.Load(), connectionAge)
	}
	// Round robin over three replicas: the first three connections land on
	// three different ones. A little slack for a reconnect that the
	// balancer's health checks sent elsewhere.
	for r, at := range reachedAt {
		if at > 2*int64(len(c.replicas)) {
			t.Errorf("replica %s first reached on the client's connection #%d, want within %d connections", c.replicas[r].name, at, 2*len(c.replicas))
		}
	}
	if l.failed.Load() != 0 {
		t.Errorf("%d calls failed:\n%s", l.failed.Load(), l.failureList())
	}
	t.Logf("rebalancing, one client connection through HAProxy mode tcp, --max-connection-age=%v: %s; %d creates verified; %d dials; %d of %d replicas reached (first on connection %v); calls per replica %v",
		connectionAge, l.report(), verified, dials.Load(), reached, len(c.replicas), reachedAt, perReplica)
}
