package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStore is the contract every Store keeps, run on each implementation.
func testStore(t *testing.T, st Store) {
	ctx := context.Background()
	k := Key{Caller: "key:a", UserID: "u1", RequestID: "r1"}
	if got, err := st.Get(ctx, k); err != nil || got != nil {
		t.Fatalf("Get of nothing: %q %v", got, err)
	}
	if _, claimed, err := st.Claim(ctx, k, []byte("v1"), time.Hour); !claimed || err != nil {
		t.Fatalf("first Claim: %v %v", claimed, err)
	}
	cur, claimed, err := st.Claim(ctx, k, []byte("v2"), time.Hour)
	if claimed || err != nil || string(cur) != "v1" {
		t.Fatalf("second Claim: %q %v %v", cur, claimed, err)
	}
	// Parts that run together differently are other keys.
	k2 := Key{Caller: "key:au", UserID: "1", RequestID: "r1"}
	if _, claimed, _ := st.Claim(ctx, k2, []byte("w"), time.Hour); !claimed {
		t.Fatal("a key whose parts concatenate alike was taken for k")
	}
	if ok, err := st.Replace(ctx, k, []byte("not v1"), []byte("v3"), time.Hour); ok || err != nil {
		t.Fatalf("Replace of a stale value: %v %v", ok, err)
	}
	if ok, err := st.Replace(ctx, k, []byte("v1"), []byte("v3"), time.Hour); !ok || err != nil {
		t.Fatalf("Replace: %v %v", ok, err)
	}
	if err := st.Remove(ctx, k, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, k); string(got) != "v3" {
		t.Fatalf("Remove of a stale value removed it: %q", got)
	}
	if err := st.Remove(ctx, k, []byte("v3")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, k); got != nil {
		t.Fatalf("after Remove: %q", got)
	}
	// Concurrent claims: exactly one wins.
	k3 := Key{Caller: "key:a", UserID: "u1", RequestID: "race"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := range 16 {
		wg.Go(func() {
			if _, claimed, err := st.Claim(ctx, k3, []byte(strconv.Itoa(i)), time.Hour); err == nil && claimed {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d concurrent claims won, want 1", winners)
	}
	now, err := st.Now(ctx)
	if err != nil || time.Since(now).Abs() > time.Minute {
		t.Fatalf("Now: %v %v", now, err)
	}
}

func TestMemoryStore(t *testing.T) { testStore(t, NewMemory(0, nil)) }

// Records expire after their ttl, and the memory bounds hold: past
// MaxMemoryRecordsPerCaller a caller's claims fail with ErrFull while
// another caller's still succeed, and past MaxMemoryRecords everyone's do.
func TestMemoryBoundsAndExpiry(t *testing.T) {
	m := NewMemory(0, nil)
	clock := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { return clock }
	ctx := context.Background()
	claim := func(caller string, i int) error {
		_, _, err := m.Claim(ctx, Key{Caller: caller, UserID: "u", RequestID: strconv.Itoa(i)}, []byte("x"), time.Hour)
		return err
	}
	for i := range MaxMemoryRecordsPerCaller {
		if err := claim("key:a", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := claim("key:a", -1); err != ErrFull {
		t.Fatalf("past the per-caller bound: %v", err)
	}
	for c := 1; len(m.records) < MaxMemoryRecords; c++ {
		for i := range MaxMemoryRecordsPerCaller {
			if err := claim("key:"+strconv.Itoa(c), i); err != nil {
				t.Fatalf("caller %d, record %d: %v", c, i, err)
			}
		}
	}
	if err := claim("key:new", 0); err != ErrFull {
		t.Fatalf("past the process bound: %v", err)
	}
	clock = clock.Add(time.Hour)
	if err := claim("key:new", 0); err != nil {
		t.Fatalf("after every record expired: %v", err)
	}
	if len(m.records) != 1 || len(m.perCaller) != 1 {
		t.Fatalf("%d records of %d callers held after expiry, want 1 of 1", len(m.records), len(m.perCaller))
	}
}

// The memory store's rate is callerrate's, exactly: burst 2n, then n/s.
func TestMemoryCallerRate(t *testing.T) {
	if NewMemory(0, nil).CallerRate() != nil {
		t.Fatal("rate 0 has a limiter")
	}
	l := NewMemory(5, nil).CallerRate()
	ctx := context.Background()
	for i := range 10 {
		if ok, _ := l.Allow(ctx, "key:a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if ok, retry := l.Allow(ctx, "key:a"); ok || retry <= 0 || retry > 200*time.Millisecond {
		t.Fatalf("11th: %v %v", ok, retry)
	}
}

// A record is sealed whole: its secret is not in what the store holds, it
// opens under its own key only, and never under another state key.
func TestRecordsAreSealed(t *testing.T) {
	m := NewMemory(0, nil)
	key := RandomKey()
	rs, err := NewRecords(m, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k := Key{Caller: "key:a", UserID: "u1", RequestID: "r1"}
	r := &Record{State: Done, Digest: []byte{1, 2}, ID: "tok_1", Token: "SECRET-VALUE-123", Started: time.UnixMilli(1_700_000_000_000)}
	if _, claimed, err := rs.Claim(ctx, k, r); !claimed || err != nil {
		t.Fatal(claimed, err)
	}
	raw, _ := m.Get(ctx, k)
	for _, plain := range []string{"SECRET-VALUE-123", "tok_1", "key:a", "u1"} {
		if bytes.Contains(raw, []byte(plain)) {
			t.Fatalf("the stored record holds %q in plain text", plain)
		}
	}
	got, err := rs.Get(ctx, k)
	if err != nil || got.Token != r.Token || got.ID != r.ID || !got.Started.Equal(r.Started) {
		t.Fatalf("Get: %+v %v", got, err)
	}
	// The same bytes under another key do not open.
	other := Key{Caller: "key:b", UserID: "u1", RequestID: "r1"}
	if _, claimed, _ := m.Claim(ctx, other, raw, time.Hour); !claimed {
		t.Fatal("claim of the copy")
	}
	if _, err := rs.Get(ctx, other); err != ErrUndecryptable {
		t.Fatalf("a record moved to another key: %v", err)
	}
	// Nor under another state key.
	rs2, _ := NewRecords(m, RandomKey())
	if _, err := rs2.Get(ctx, k); err != ErrUndecryptable {
		t.Fatalf("a record under another state key: %v", err)
	}
}

// lostClaimStore carries out a claim and then reports it failed, as a
// Redis slower than the client's bound does: the client gives up, the
// claim still lands.
type lostClaimStore struct{ Store }

func (l lostClaimStore) Claim(ctx context.Context, key Key, value []byte, ttl time.Duration) ([]byte, bool, error) {
	_, _, _ = l.Store.Claim(ctx, key, value, ttl)
	return nil, false, context.DeadlineExceeded
}

// A claim whose answer was lost is undone, so the refused call leaves the
// request_id free (it stayed pending: a retry waited, then reconciled
// after 30 s); a record another call stored is never touched.
func TestLostClaimIsUndone(t *testing.T) {
	m := NewMemory(0, nil)
	rs, err := NewRecords(lostClaimStore{m}, RandomKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k := Key{Caller: "key:a", UserID: "u1", RequestID: "r1"}
	if _, _, err := rs.Claim(ctx, k, &Record{State: Pending, Attempts: []string{"a1"}}); err == nil {
		t.Fatal("the lost claim reported no error")
	}
	if raw, _ := m.Get(ctx, k); raw != nil {
		t.Fatal("the claim whose answer was lost is still stored")
	}
	other, _ := NewRecords(m, RandomKey())
	if _, claimed, err := other.Claim(ctx, k, &Record{State: Pending, Attempts: []string{"a2"}}); !claimed || err != nil {
		t.Fatal(claimed, err)
	}
	if _, _, err := rs.Claim(ctx, k, &Record{State: Pending, Attempts: []string{"a3"}}); err == nil {
		t.Fatal("the lost claim reported no error")
	}
	if raw, _ := m.Get(ctx, k); raw == nil {
		t.Fatal("undoing a lost claim removed another call's record")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	key := RandomKey()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, content := range map[string][]byte{
		"raw": key,
		"b64": []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
		"url": []byte(base64.RawURLEncoding.EncodeToString(key)),
	} {
		got, err := LoadKey(write(name, content))
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, content := range map[string][]byte{
		"short": []byte("c2hvcnQ="), "text": []byte("hunter2-not-a-key"), "empty": nil,
	} {
		_, err := LoadKey(write(name, content))
		if err == nil || strings.Contains(err.Error(), string(content)) && len(content) > 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParseRedisURLNeverShowsThePassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cr3tpw@127.0.0.1:6379/notanumber",
		"http://user:s3cr3tpw@127.0.0.1:6379/0",
		"redis://user:s3cr3tpw@/0",
	} {
		_, err := ParseRedisURL(u)
		if err == nil || strings.Contains(err.Error(), "s3cr3tpw") {
			t.Fatalf("%s: %v", RedactURL(u), err)
		}
	}
	if _, err := ParseRedisURL("rediss://user:pw@redis.example:6380/2"); err != nil {
		t.Fatal(err)
	}
	if got := RedactURL("redis://user:s3cr3tpw@h:1/0"); strings.Contains(got, "s3cr3tpw") {
		t.Fatal(got)
	}
}
