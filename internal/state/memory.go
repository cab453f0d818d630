package state

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/cbkgate/cbkgate/internal/callerrate"
)

// Bounds of the records Memory holds: a caller cannot fill the process's
// memory with request ids, nor take every slot from the others.
const (
	MaxMemoryRecords          = 100_000
	MaxMemoryRecordsPerCaller = 10_000
)

// memorySweepEvery is the least time between two sweeps of expired records
// (besides the sweep made when a bound is reached).
const memorySweepEvery = time.Minute

// Memory is the Store of one process: right for one replica.
type Memory struct {
	rate *memoryRate // nil: rate off

	mu        sync.Mutex
	records   map[string]*memoryRecord
	perCaller map[string]int
	lastSweep time.Time
	now       func() time.Time // a seam for tests
}

type memoryRecord struct {
	value   []byte
	caller  string
	expires time.Time
}

// NewMemory returns a Memory store whose caller rate is n requests per
// second (0: off), exactly as internal/callerrate counts them. onPaced,
// if set, is told of each request a List has to wait for.
func NewMemory(n int, onPaced func()) *Memory {
	m := &Memory{records: map[string]*memoryRecord{}, perCaller: map[string]int{}, now: time.Now}
	if l := callerrate.New(n, onPaced); l != nil {
		m.rate = &memoryRate{l}
	}
	return m
}

// memoryRate is callerrate.Limiter as a Limiter.
type memoryRate struct{ l *callerrate.Limiter }

func (r *memoryRate) Allow(_ context.Context, caller string) (bool, time.Duration) {
	return r.l.Allow(caller)
}

func (r *memoryRate) Wait(ctx context.Context, caller string) error { return r.l.Wait(ctx, caller) }

// CallerRate implements Store.
func (m *Memory) CallerRate() Limiter {
	if m.rate == nil {
		return nil
	}
	return m.rate
}

// Shared implements Store: a process's memory is its own.
func (m *Memory) Shared() bool { return false }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Now implements Store.
func (m *Memory) Now(context.Context) (time.Time, error) { return m.now(), nil }

// get returns the live record under name; the lock is held.
func (m *Memory) get(name string, now time.Time) *memoryRecord {
	r, ok := m.records[name]
	if !ok {
		return nil
	}
	if !now.Before(r.expires) {
		m.drop(name, r)
		return nil
	}
	return r
}

func (m *Memory) drop(name string, r *memoryRecord) {
	delete(m.records, name)
	if m.perCaller[r.caller]--; m.perCaller[r.caller] <= 0 {
		delete(m.perCaller, r.caller)
	}
}

// sweep drops every expired record; the lock is held.
func (m *Memory) sweep(now time.Time) {
	m.lastSweep = now
	for name, r := range m.records {
		if !now.Before(r.expires) {
			m.drop(name, r)
		}
	}
}

// Claim implements Store. Past MaxMemoryRecords, or MaxMemoryRecordsPerCaller
// for key's caller, it returns ErrFull.
func (m *Memory) Claim(_ context.Context, key Key, value []byte, ttl time.Duration) ([]byte, bool, error) {
	name := key.name()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if r := m.get(name, now); r != nil {
		return r.value, false, nil
	}
	full := func() bool {
		return len(m.records) >= MaxMemoryRecords || m.perCaller[key.Caller] >= MaxMemoryRecordsPerCaller
	}
	if now.Sub(m.lastSweep) >= memorySweepEvery || full() {
		m.sweep(now)
	}
	if full() {
		return nil, false, ErrFull
	}
	m.records[name] = &memoryRecord{value: bytes.Clone(value), caller: key.Caller, expires: now.Add(ttl)}
	m.perCaller[key.Caller]++
	return nil, true, nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key Key) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.get(key.name(), m.now()); r != nil {
		return r.value, nil
	}
	return nil, nil
}

// Replace implements Store.
func (m *Memory) Replace(_ context.Context, key Key, old, value []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	r := m.get(key.name(), now)
	if r == nil || !bytes.Equal(r.value, old) {
		return false, nil
	}
	r.value, r.expires = bytes.Clone(value), now.Add(ttl)
	return true, nil
}

// Remove implements Store.
func (m *Memory) Remove(_ context.Context, key Key, old []byte) error {
	name := key.name()
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.get(name, m.now()); r != nil && bytes.Equal(r.value, old) {
		m.drop(name, r)
	}
	return nil
}
