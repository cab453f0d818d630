package failtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
)

var soakFlag = flag.Bool("soak", false, "run TestSoak at its larger size (go test ./internal/failtest -run Soak -soak)")

// soakSize is how much TestSoak does: workers running rounds at once.
type soakSize struct{ workers, rounds int }

var (
	soakCI    = soakSize{workers: 32, rounds: 8}
	soakLarge = soakSize{workers: 128, rounds: 100}
)

// sharedTokens is the size of the listing every worker reads: several
// upstream pages, so paging and prefetch are part of the load.
const (
	sharedUser   = "soak-shared"
	sharedTokens = 120
)

// TestSoak drives cbkgate, in front of the emulator, with mixed calls at
// high concurrency: each worker owns a user and, per round, creates a token
// (over gRPC or HTTP, alternately), updates it, lists its user (exactly that
// token must be there), lists the shared user (every token, in order, once),
// and deletes the token. No call may fail. After a warm-up at the same
// concurrency and with idle connections closed, the goroutine count and the
// live heap (after GC) are taken; after the soak, idle connections closed
// again, they must be back within a handful of goroutines and a heap
// tolerance well below one leaked kilobyte per call.
func TestSoak(t *testing.T) {
	size := soakCI
	if *soakFlag {
		size = soakLarge
	}
	emu := emulator.New(emulator.Options{Secret: heldSecret})
	emu.Seed(sharedUser, sharedTokens)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	g := startGate(t, srv.URL)
	g.hc.CloseIdleConnections()
	g.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: size.workers}}

	// Idle connections are pools, not leaks: close them on both sides of
	// every connection the test and cbkgate opened to measure.
	quiesce := func() {
		g.hc.CloseIdleConnections()
		srv.CloseClientConnections()
	}

	s := &soaker{g: g}
	s.run(t, soakSize{workers: size.workers, rounds: 2}) // warm-up
	quiesce()
	g0, h0 := steady()

	start := time.Now()
	s.run(t, size)
	took := time.Since(start)
	if n := s.errs.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed; first: %v", n, s.calls.Load(), s.first.Load())
	}

	// Goroutines wind down asynchronously (connections closing, streams
	// ending): poll, bounded, until the count is back near the baseline.
	quiesce()
	const goroutineTolerance = 5
	var g1 int
	var h1 uint64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g1, h1 = settle()
		if g1 <= g0+goroutineTolerance || time.Now().After(deadline) {
			break
		}
	}
	calls := s.calls.Load()
	t.Logf("soak: %d workers x %d rounds: %d calls in %s (%.0f calls/s); goroutines %d -> %d; live heap %.1f MiB -> %.1f MiB",
		size.workers, size.rounds, calls, took.Round(time.Millisecond), float64(calls)/took.Seconds(), g0, g1, mib(h0), mib(h1))
	if g1 > g0+goroutineTolerance {
		t.Errorf("goroutines grew from %d to %d over %d calls (tolerance %d)", g0, g1, calls, goroutineTolerance)
	}
	// 1 MiB of noise (connection buffers, pools), plus 128 bytes a call: a
	// leak of 1 KiB a call fails at the CI size, of 150 bytes a call at the
	// larger one.
	heapTolerance := uint64(1<<20) + uint64(calls)*128
	if h1 > h0+heapTolerance {
		t.Errorf("live heap grew from %.1f MiB to %.1f MiB over %d calls (tolerance %.1f MiB)", mib(h0), mib(h1), calls, mib(heapTolerance))
	}
}

// steady polls, bounded, until the goroutine count has held still for
// 100 ms (connections just closed take a moment to wind down), then
// settles.
func steady() (int, uint64) {
	last, still := -1, 0
	for deadline := time.Now().Add(5 * time.Second); still < 5 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n := runtime.NumGoroutine(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	return settle()
}

// settle collects garbage and returns the goroutine count and live heap.
func settle() (int, uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

type soaker struct {
	g     *gate
	calls atomic.Int64
	errs  atomic.Int64
	first atomic.Value // the first error
}

func (s *soaker) fail(err error) {
	if s.errs.Add(1) == 1 {
		s.first.Store(err)
	}
}

func (s *soaker) run(t *testing.T, size soakSize) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range size.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("soak-%d", w)
			for r := range size.rounds {
				if err := s.round(user, (w+r)%2 == 0); err != nil {
					s.fail(fmt.Errorf("worker %d round %d: %w", w, r, err))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// round is one create, update, two listings and a delete. viaHTTP sends the
// create, the own listing and the delete through the gateway.
func (s *soaker) round(user string, viaHTTP bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()

	var id string
	if viaHTTP {
		var out tokenv1.CreateResponse
		if err := s.http(ctx, http.MethodPost, "/v1/users/"+user+"/tokens", `{"name":"soak"}`, &out); err != nil {
			return fmt.Errorf("HTTP create: %w", err)
		}
		if out.GetToken() == "" {
			return errors.New("HTTP create: no token secret")
		}
		id = out.GetId()
	} else {
		s.calls.Add(1)
		out, err := s.g.Client().Create(ctx, &tokenv1.CreateRequest{UserId: user, Name: "soak"})
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if out.GetToken() == "" {
			return errors.New("create: no token secret")
		}
		id = out.GetId()
	}

	s.calls.Add(1)
	name := "soak renamed"
	if _, err := s.g.Client().Update(ctx, &tokenv1.UpdateRequest{UserId: user, TokenId: id, Name: &name}); err != nil {
		return fmt.Errorf("update: %w", err)
	}

	var own []string
	if viaHTTP {
		lines, err := s.httpList(ctx, "/v1/users/"+user+"/tokens")
		if err != nil {
			return fmt.Errorf("HTTP list: %w", err)
		}
		own = lines
	} else {
		s.calls.Add(1)
		got, err := s.g.list(ctx, &tokenv1.ListRequest{UserId: user})
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		own = ids(got)
	}
	if len(own) != 1 || own[0] != id {
		return fmt.Errorf("own listing %v, want exactly [%s]", own, id)
	}

	s.calls.Add(1)
	shared, err := s.g.list(ctx, &tokenv1.ListRequest{UserId: sharedUser, Order: tokenv1.Order_ORDER_ASC, PageSize: 40})
	if err != nil {
		return fmt.Errorf("shared list: %w", err)
	}
	if len(shared) != sharedTokens {
		return fmt.Errorf("shared list: %d tokens, want %d", len(shared), sharedTokens)
	}
	seen := make(map[string]bool, len(shared))
	for i, r := range shared {
		if seen[r.GetToken().GetId()] {
			return fmt.Errorf("shared list: %s twice", r.GetToken().GetId())
		}
		seen[r.GetToken().GetId()] = true
		if i > 0 && r.GetToken().GetCreateTime().AsTime().Before(shared[i-1].GetToken().GetCreateTime().AsTime()) {
			return fmt.Errorf("shared list: out of order at %d", i)
		}
	}

	if viaHTTP {
		var out tokenv1.DeleteResponse
		if err := s.http(ctx, http.MethodDelete, "/v1/users/"+user+"/tokens/"+id, "", &out); err != nil {
			return fmt.Errorf("HTTP delete: %w", err)
		}
		if out.GetId() != id {
			return fmt.Errorf("HTTP delete: id %q, want %q", out.GetId(), id)
		}
	} else {
		s.calls.Add(1)
		out, err := s.g.Client().Delete(ctx, &tokenv1.DeleteRequest{UserId: user, TokenId: id})
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if out.GetId() != id {
			return fmt.Errorf("delete: id %q, want %q", out.GetId(), id)
		}
	}
	return nil
}

// http makes one unary gateway call and decodes a 200 answer into out.
func (s *soaker) http(ctx context.Context, method, path, body string, out proto.Message) error {
	s.calls.Add(1)
	b, err := s.httpBody(ctx, method, path, body)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(b, out)
}

// httpList reads a streamed List over HTTP and returns its token ids; an
// error line is an error.
func (s *soaker) httpList(ctx context.Context, path string) ([]string, error) {
	s.calls.Add(1)
	b, err := s.httpBody(ctx, http.MethodGet, path, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			Result *struct {
				Token struct{ ID string } `json:"token"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		if m.Error != nil || m.Result == nil {
			return nil, fmt.Errorf("error line %s", line)
		}
		out = append(out, m.Result.Token.ID)
	}
	return out, nil
}

func (s *soaker) httpBody(ctx context.Context, method, path, body string) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.g.URL()+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := s.g.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return b, nil
}
