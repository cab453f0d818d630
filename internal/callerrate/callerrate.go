// Package callerrate bounds what one caller costs the partner's ChatBotKit
// quota: each caller identity (auth.Caller) may cause at most N upstream
// requests per second, in bursts of 2N (--caller-rate). A unary
// call over the rate is refused before it reaches the upstream; a List is
// paced, never failed by it: every upstream request it makes (opening its
// stream, each resume after a cut, each page, each retry) waits its turn
// and counts once.
//
// It is golang.org/x/time/rate's token bucket, one per caller, in a map
// whose entries expire: a bucket left alone long enough to be full again
// carries no information, so it is dropped, and the map holds only callers
// active within the last few seconds, at most maxCallers of them.
package callerrate

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxCallers bounds the callers tracked at once. Pass-through callers are
// named after any bearer at all, so their number is the client's choice;
// past this many active ones, new callers share one bucket (a stricter
// limit, never a looser one).
const maxCallers = 100_000

// sweepEvery is the least time between two sweeps of expired entries.
const sweepEvery = time.Second

// Limiter is the per-caller rate limit. A nil *Limiter limits nothing.
type Limiter struct {
	rate   rate.Limit
	burst  int
	expiry time.Duration
	// onPaced, if set, is called each time a request has to wait (one of
	// a List's). Refusals need no hook: they end their call with RATE_LIMITED,
	// which is where cbkgate_rate_limited_total counts them.
	onPaced func()

	mu        sync.Mutex
	callers   map[string]*entry
	overflow  *rate.Limiter
	lastSweep time.Time
	now       func() time.Time // a seam for tests
}

type entry struct {
	lim  *rate.Limiter
	last time.Time // last use
}

// New returns a limiter of n requests per second per caller, burst 2n, or
// nil (no limit) for n <= 0. onPaced may be nil.
func New(n int, onPaced func()) *Limiter {
	if n <= 0 {
		return nil
	}
	l := &Limiter{
		rate:    rate.Limit(n),
		burst:   2 * n,
		onPaced: onPaced,
		callers: map[string]*entry{},
		now:     time.Now,
	}
	// An unused bucket refills from empty in burst/rate = 2 s; past that
	// (and a margin) its entry may go.
	l.expiry = 2*time.Second + time.Second
	l.overflow = rate.NewLimiter(l.rate, l.burst)
	return l
}

func (l *Limiter) bucket(caller string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.callers[caller]; ok {
		e.last = now
		return e.lim
	}
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.lastSweep = now
		for k, e := range l.callers {
			if now.Sub(e.last) > l.expiry {
				delete(l.callers, k)
			}
		}
	}
	if len(l.callers) >= maxCallers {
		return l.overflow
	}
	e := &entry{lim: rate.NewLimiter(l.rate, l.burst), last: now}
	l.callers[caller] = e
	return e.lim
}

// Allow takes one request for caller now, or, when the caller is over its
// rate, takes nothing and says how long until a request would be allowed.
func (l *Limiter) Allow(caller string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	r := l.bucket(caller, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Wait takes one request for caller, waiting as long as its rate needs, or
// until ctx ends (then it returns ctx's error and takes nothing).
func (l *Limiter) Wait(ctx context.Context, caller string) error {
	if l == nil {
		return nil
	}
	now := l.now()
	r := l.bucket(caller, now).ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if l.onPaced != nil {
		l.onPaced()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}
