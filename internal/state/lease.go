package state

import (
	"sync"
	"time"
)

// Leases let a replica take a caller's requests from Redis in small
// batches: one round trip to Redis per batch, not per call, so the
// cluster-wide --caller-rate costs a busy caller's calls almost no more
// CPU than the in-process limiter. Likewise a refusal is remembered until
// the time Redis gave for the next request: asking before then would only
// be refused again. A batch is at most leaseWindow's worth
// of the rate (one request at low rates, so nothing changes there), and
// requests a replica leased but did not use within leaseWindow are
// dropped: taken from Redis, never spent, so the cluster's limit is never
// looser for them.
//
// Nor may the dropped requests make it stricter: a caller well under its
// rate, calling each of several replicas now and then, would otherwise
// have each replica take a whole batch from Redis per call, and be refused
// at a fraction of its rate (three replicas at --caller-rate 100000 drew
// 300,000 a second from Redis for a few thousand calls). So a batch is
// also at most 1/leaseShare of what Redis last said the caller had left:
// far from its limit a caller's batches are whole, and the closer it comes
// to the limit the smaller they get, down to one request a trip, where
// nothing is dropped and the count is exact.
const leaseWindow = 50 * time.Millisecond

// leaseShare is how many replicas may each hold a lease of a caller at
// once before what they lease could exceed what the caller has left.
const leaseShare = 16

// maxLeases bounds the callers holding a lease at once, as callerrate
// bounds its buckets; past it, callers go to Redis call by call.
const maxLeases = 100_000

type lease struct {
	left    int
	expires time.Time
	// remaining is the caller's remaining burst Redis reported with this
	// lease, which sizes the next batch (see leaseWindow).
	remaining int
	// refusedUntil: Redis refused the caller; no request before then.
	refusedUntil time.Time
}

type leases struct {
	mu        sync.Mutex
	m         map[string]*lease
	lastSweep time.Time
}

// batchFor is how many requests one trip to Redis asks for at rate n.
func batchFor(n int) int {
	return max(1, int(float64(n)*leaseWindow.Seconds()))
}

// take spends one leased request of caller (ok), or says the caller was
// refused and for how long still (refusedFor > 0); neither means Redis
// must be asked, for at most batch requests.
func (ls *leases) take(caller string, now time.Time, maxBatch int) (ok bool, refusedFor time.Duration, batch int) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, found := ls.m[caller]
	switch {
	case !found:
		return false, 0, 1 // how much the caller has left is not known
	case now.Before(l.refusedUntil):
		return false, l.refusedUntil.Sub(now), 0
	case l.left == 0 || !now.Before(l.expires):
		return false, 0, min(maxBatch, max(1, l.remaining/leaseShare))
	}
	l.left--
	return true, 0, 0
}

// keep stores n requests leased for caller now, and the burst Redis said
// the caller has left.
func (ls *leases) keep(caller string, n, remaining int, now time.Time) {
	ls.put(caller, &lease{left: n, expires: now.Add(leaseWindow), remaining: remaining}, now)
}

// refused remembers that Redis refused caller for d from now.
func (ls *leases) refused(caller string, d time.Duration, now time.Time) {
	ls.put(caller, &lease{refusedUntil: now.Add(d), expires: now.Add(d)}, now)
}

func (ls *leases) put(caller string, l *lease, now time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = map[string]*lease{}
	}
	if now.Sub(ls.lastSweep) >= time.Second || len(ls.m) >= maxLeases {
		ls.lastSweep = now
		for k, l := range ls.m {
			if !now.Before(l.expires) {
				delete(ls.m, k)
			}
		}
	}
	if _, ok := ls.m[caller]; !ok && len(ls.m) >= maxLeases {
		return
	}
	ls.m[caller] = l
}
