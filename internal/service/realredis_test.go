//go:build redis

package service

import (
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/redistest"
	"github.com/cbkgate/cbkgate/internal/state"
)

// The idempotent Create tests whose records live in a real redis-server
// (build tag redis): waiting on a running first call and reconciling an
// unknown outcome, on the store's clock.

func redisEnv(t *testing.T) *idemEnv {
	t.Helper()
	srv := redistest.Start(t)
	st, err := state.NewRedis(state.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newIdemEnvOn(t, st)
}

func TestRedisConcurrentRepeatsWait(t *testing.T) { testConcurrentRepeatsWait(t, redisEnv(t)) }

func TestRedisUnknownOutcomeIsReconciled(t *testing.T) {
	defer shorten(t, time.Second, 300*time.Millisecond)()
	testUnknownOutcomeIsReconciled(t, redisEnv(t))
}
