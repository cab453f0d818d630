package callerrate

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// fakeClock lets a test step time instead of sleeping.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTest(n int) (*Limiter, *fakeClock) {
	l := New(n, nil)
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l.now = c.now
	return l, c
}

func TestBurstThenRate(t *testing.T) {
	l, c := newTest(5)
	for i := range 10 { // burst 2n
		if ok, _ := l.Allow("key:a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, retry := l.Allow("key:a")
	if ok || retry <= 0 || retry > 200*time.Millisecond {
		t.Fatalf("11th request: ok %v retry %v, want refused with about 200ms", ok, retry)
	}
	// Another caller has its own bucket.
	if ok, _ := l.Allow("key:b"); !ok {
		t.Fatal("another caller was refused")
	}
	c.t = c.t.Add(200 * time.Millisecond)
	if ok, _ := l.Allow("key:a"); !ok {
		t.Fatal("refused after the retry delay")
	}
}

func TestNilLimitsNothing(t *testing.T) {
	var l *Limiter = New(0, nil)
	if l != nil {
		t.Fatal("New(0) is not nil")
	}
	if ok, _ := l.Allow("x"); !ok {
		t.Fatal("nil limiter refused")
	}
	if err := l.Wait(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
}

// Entries of callers gone quiet expire, and the map never holds more than
// maxCallers: past that, new callers share one bucket.
func TestEntriesExpireAndAreBounded(t *testing.T) {
	l, c := newTest(1)
	for i := range maxCallers + 10 {
		l.Allow("bearer:" + strconv.Itoa(i))
	}
	if n := tracked(l); n != maxCallers {
		t.Fatalf("%d callers tracked, want the cap %d", n, maxCallers)
	}
	c.t = c.t.Add(l.expiry + sweepEvery + time.Second)
	l.Allow("key:late")
	if n := tracked(l); n != 1 {
		t.Fatalf("%d callers tracked after they all went quiet, want 1", n)
	}
}

func TestWaitPacesAndHonoursCancel(t *testing.T) {
	paced := 0
	l, _ := newTest(100) // the clock stands still: nothing refills
	l.onPaced = func() { paced++ }
	ctx := context.Background()
	for range 200 + 3 { // the burst, then three paced 10 ms apart
		if err := l.Wait(ctx, "key:a"); err != nil {
			t.Fatal(err)
		}
	}
	if paced != 3 {
		t.Fatalf("%d requests paced past the burst, want 3", paced)
	}
	slow := New(1, nil)
	slow.Allow("key:a")
	slow.Allow("key:a")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := slow.Wait(cctx, "key:a"); err == nil {
		t.Fatal("Wait on a cancelled context returned nil")
	}
}

// tracked is how many callers l tracks.
func tracked(l *Limiter) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.callers)
}
