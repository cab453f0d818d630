package state

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// These run the Redis store's code paths against miniredis, so that plain
// `go test` covers them on a machine without redis-server; the tests tagged
// redis run the same against a real one.

func newMiniRedis(t *testing.T, rate int) (*Redis, *miniredis.Miniredis, *errorLog) {
	t.Helper()
	mr := miniredis.RunT(t)
	errs := &errorLog{}
	r, err := NewRedis(RedisOptions{URL: "redis://" + mr.Addr() + "/0", CallerRate: rate, OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, mr, errs
}

// errorLog records what a Redis store reports through OnError.
type errorLog struct {
	mu   sync.Mutex
	ops  []string
	errs []string
}

func (l *errorLog) add(op string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	l.errs = append(l.errs, err.Error())
}

func (l *errorLog) count(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.ops {
		if o == op {
			n++
		}
	}
	return n
}

func TestRedisStoreOnMiniredis(t *testing.T) {
	r, _, _ := newMiniRedis(t, 0)
	testStore(t, r)
}

// Records expire in Redis after their ttl, as the store asks.
func TestRedisRecordTTL(t *testing.T) {
	r, mr, _ := newMiniRedis(t, 0)
	ctx := context.Background()
	k := Key{Caller: "c", UserID: "u", RequestID: "r"}
	if _, claimed, err := r.Claim(ctx, k, []byte("v"), time.Minute); !claimed || err != nil {
		t.Fatal(claimed, err)
	}
	if ttl := mr.TTL(k.name()); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
	mr.FastForward(2 * time.Minute)
	if got, _ := r.Get(ctx, k); got != nil {
		t.Fatal("record outlived its ttl")
	}
}

// Two Redis stores (two replicas) share one caller rate: burst 2n in all.
func TestRedisCallerRateIsShared(t *testing.T) {
	a, mr, _ := newMiniRedis(t, 5)
	b, err := NewRedis(RedisOptions{URL: "redis://" + mr.Addr() + "/0", CallerRate: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	allowed := 0
	for i := range 40 {
		l := a.CallerRate()
		if i%2 == 1 {
			l = b.CallerRate()
		}
		if ok, _ := l.Allow(ctx, "key:x"); ok {
			allowed++
		}
	}
	// 40 requests in well under a second: the burst and at most a few
	// refilled in the meantime.
	if allowed < 10 || allowed > 12 {
		t.Fatalf("%d of 40 allowed across two replicas, want the burst of 10", allowed)
	}
}

// With Redis gone, the rate falls back to the process's own limiter,
// reports "rate" once per backoff rather than per call, and record
// operations fail with "record" errors that carry no password.
func TestRedisDownFallsBack(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireAuth("pw-s3cr3t")
	errs := &errorLog{}
	r, err := NewRedis(RedisOptions{URL: "redis://:pw-s3cr3t@" + mr.Addr() + "/0", CallerRate: 5, OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if ok, _ := r.CallerRate().Allow(ctx, "key:x"); !ok {
		t.Fatal("first request refused")
	}
	mr.Close()
	allowed := 0
	for range 30 {
		if ok, _ := r.CallerRate().Allow(ctx, "key:x"); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("%d of 30 allowed by the fallback, want its burst of 10", allowed)
	}
	if n := errs.count("rate"); n != 1 {
		t.Fatalf("%d rate errors reported for 30 calls within the backoff, want 1", n)
	}
	if err := r.CallerRate().Wait(ctx, "key:y"); err != nil {
		t.Fatalf("Wait with Redis down: %v", err)
	}
	if _, _, err := r.Claim(ctx, Key{Caller: "c", UserID: "u", RequestID: "r"}, []byte("v"), time.Hour); err == nil {
		t.Fatal("Claim with Redis down succeeded")
	}
	if _, err := r.Now(ctx); err == nil {
		t.Fatal("Now with Redis down succeeded")
	}
	if errs.count("record") < 2 {
		t.Fatalf("record errors reported: %v", errs.ops)
	}
	for _, e := range errs.errs {
		if strings.Contains(e, "pw-s3cr3t") {
			t.Fatalf("an error holds the password: %s", e)
		}
	}
}

// At a high rate, a replica takes requests from Redis in batches: far
// fewer round trips than calls, and two replicas together still get no
// more than the burst.
func TestRedisCallerRateLeasesBatches(t *testing.T) {
	a, mr, _ := newMiniRedis(t, 1000) // batches of 50
	b, err := NewRedis(RedisOptions{URL: "redis://" + mr.Addr() + "/0", CallerRate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	before, start := mr.CommandCount(), time.Now()
	allowed, commands := 0, int64(0)
	for i := range 4000 {
		l := a.CallerRate()
		if i%2 == 1 {
			l = b.CallerRate()
		}
		if ok, _ := l.Allow(ctx, "key:x"); ok {
			allowed++
		}
		if i == 999 {
			// Far from the limit (within the burst of 2000), batches are
			// whole. Closer to it they shrink, down to one request a trip
			// (see leaseWindow), so there calls are not counted here.
			commands = int64(mr.CommandCount() - before)
		}
	}
	elapsed := time.Since(start)
	// The burst of 2000, and what refilled while the loop ran; leased and
	// unused requests are only ever lost, never added.
	most := 2000 + int(1000*elapsed.Seconds()) + 1
	if allowed < 1500 || allowed > most {
		t.Fatalf("%d of 4000 allowed across two replicas at 1000/s in %v, want at most %d", allowed, elapsed, most)
	}
	if commands > 1000/5 {
		t.Fatalf("%d Redis commands for the first 1000 calls: not batched", commands)
	}
	t.Logf("%d allowed; %d Redis commands for the first 1000 calls, %d for all 4000", allowed, commands, mr.CommandCount()-before)
}

// TestRedisCallerRateLeasesDropNoRate: a caller far under its rate, calling
// each of three replicas now and then (each lease expires unused but for
// one request), is never refused. With whole batches taken on every call,
// the three replicas drew 3 x 50 requests from Redis per round for three
// calls, three times the rate of 1,000 a second, and the caller was
// refused once its burst of 2,000 had drained (the cluster test saw the
// same at --caller-rate 100000).
func TestRedisCallerRateLeasesDropNoRate(t *testing.T) {
	t.Parallel()
	const rate = 1000 // batches of at most 50
	a, mr, _ := newMiniRedis(t, rate)
	replicas := []*Redis{a}
	for range 2 {
		r, err := NewRedis(RedisOptions{URL: "redis://" + mr.Addr() + "/0", CallerRate: rate})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		replicas = append(replicas, r)
	}
	ctx := context.Background()
	before := mr.CommandCount()
	const rounds = 45
	for round := range rounds {
		for i, r := range replicas {
			if ok, retry := r.CallerRate().Allow(ctx, "key:busy"); !ok {
				t.Fatalf("round %d, replica %d: refused (retry after %v) after %d calls, at a rate far under %d a second",
					round, i, retry, round*len(replicas)+i, rate)
			}
		}
		time.Sleep(leaseWindow + time.Millisecond) // every lease expires
	}
	t.Logf("%d calls over %d replicas, none refused, %d Redis commands", rounds*len(replicas), len(replicas), mr.CommandCount()-before)
}
