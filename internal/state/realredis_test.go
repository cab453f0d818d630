//go:build redis

package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/redistest"
)

// The Redis store against a real redis-server (build tag redis; .ci/run
// runs it): the store contract, and the fallback when the server dies.

func TestRealRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	r, err := NewRedis(RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	testStore(t, r)
}

func TestRealRedisCallerRateSharedThenFallsBack(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "pw-s3cr3t")
	url := "redis://:pw-s3cr3t@" + srv.Addr + "/0"
	errs := &errorLog{}
	a, err := NewRedis(RedisOptions{URL: url, CallerRate: 5, OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewRedis(RedisOptions{URL: url, CallerRate: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	allowed, begin := 0, time.Now()
	for i := range 40 {
		l := a.CallerRate()
		if i%2 == 1 {
			l = b.CallerRate()
		}
		if ok, _ := l.Allow(ctx, "key:x"); ok {
			allowed++
		}
	}
	// The burst of 10, and what refilled meanwhile at 5/s.
	if most := 10 + int(5*time.Since(begin).Seconds()) + 1; allowed < 10 || allowed > most {
		t.Fatalf("%d of 40 allowed across two replicas, want the burst of 10 (at most %d)", allowed, most)
	}
	srv.Stop()
	start := time.Now()
	fallback := 0
	// Another caller: key:x's refusal, remembered until Redis's retry
	// time, still stands without Redis.
	for range 30 {
		if ok, _ := a.CallerRate().Allow(ctx, "key:y"); ok {
			fallback++
		}
	}
	if fallback != 10 {
		t.Fatalf("%d of 30 allowed with Redis down, want the fallback's burst of 10", fallback)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("30 calls with Redis down took %v", d)
	}
	if n := errs.count("rate"); n < 1 || n > 1+int(time.Since(start)/rateBackoff) {
		t.Fatalf("rate errors: %v", errs.ops)
	}
	for _, e := range errs.errs {
		if strings.Contains(e, "pw-s3cr3t") {
			t.Fatalf("error holds the password: %s", e)
		}
	}
}
