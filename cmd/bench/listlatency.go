package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
)

// The list-latency phase: what upstream latency does to a List. A second
// emulator answers every request after a set latency (as cbkgate
// --emulator-latency does, with emulator.WithLatency), and a second cbkgate
// stands in front of it. For each latency, rounds alternate a gRPC List of
// latencyListTokens tokens through cbkgate with the SDK's way of reading the
// same listing, the JSONL stream read directly. A List that costs one
// upstream round trip gains about one latency; one that fetched pages of
// 100 gained a latency per page (100 for 10,000 tokens).

const (
	latencyUser       = "bench-latency"
	latencyListTokens = 10_000
)

// switchableLatency serves h after the latency currently set.
type switchableLatency struct {
	h       http.Handler
	latency atomic.Int64 // time.Duration
}

func (s *switchableLatency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	emulator.WithLatency(s.h, time.Duration(s.latency.Load())).ServeHTTP(w, r)
}

func (b *bench) listLatency(ctx context.Context, t *table, bin, dir string) error {
	emu := emulator.New(emulator.Options{Secret: benchSecret})
	emu.Seed(latencyUser, latencyListTokens)
	h := &switchableLatency{h: emu}
	upstream, stopUpstream, err := serveUpstream(h)
	if err != nil {
		return err
	}
	defer stopUpstream()
	srv, err := startServer(bin, nil, upstream, benchSecret, "warn", metricsOn, dir)
	if err != nil {
		return err
	}
	defer srv.stop()
	client := tokenv1.NewTokenServiceClient(srv.conn)
	url := upstream + "/v1/partner/user/" + latencyUser + "/token/list"
	viaGate := func() (int, error) { return grpcList(ctx, client, latencyUser) }
	direct := func() (int, error) { return jsonlList(ctx, b.direct, url, benchSecret) }

	medians := map[time.Duration][2]time.Duration{} // latency: cbkgate, direct
	for _, latency := range []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond} {
		h.latency.Store(int64(latency))
		for _, f := range []func() (int, error){viaGate, direct} { // warm-up
			if _, err := f(); err != nil {
				return err
			}
		}
		var gate, straight []float64
		for i := range b.o.listRounds {
			ra, err := timed(viaGate)
			if err != nil {
				return err
			}
			rb, err := timed(direct)
			if err != nil {
				return err
			}
			if ra.calls != latencyListTokens || rb.calls != latencyListTokens {
				return fmt.Errorf("list-latency: got %d and %d tokens, want %d", ra.calls, rb.calls, latencyListTokens)
			}
			gate, straight = append(gate, float64(ra.elapsed)), append(straight, float64(rb.elapsed))
			progress("List %d tokens, latency %s, round %d/%d: gRPC %s, direct JSONL %s", latencyListTokens, latency,
				i+1, b.o.listRounds, ra.elapsed.Round(time.Millisecond), rb.elapsed.Round(time.Millisecond))
		}
		m := [2]time.Duration{time.Duration(median(gate)), time.Duration(median(straight))}
		medians[latency] = m
		t.row(fmt.Sprintf("List %s tokens, upstream latency %s: gRPC vs direct JSONL (time)", count(latencyListTokens), latency),
			ms(m[0]), ms(m[1]), fmt.Sprintf("%.2fx", float64(m[0])/float64(m[1])), goalFor(latency), withinGoal(latency, m))
	}
	added := medians[50*time.Millisecond][0] - medians[0][0]
	t.row(fmt.Sprintf("List %s tokens: what 50 ms of upstream latency adds", count(latencyListTokens)),
		ms(added), ms(medians[50*time.Millisecond][1]-medians[0][1]), fmt.Sprintf("%.1f round trips", float64(added)/float64(50*time.Millisecond)),
		"≤ 3 round trips", added <= 3*50*time.Millisecond)
	return nil
}

// goalFor: with 20 ms of latency, cbkgate should take at most 1.5 times
// the direct stream.
func goalFor(latency time.Duration) string {
	if latency == 20*time.Millisecond {
		return "≤ 1.5x"
	}
	return ""
}

func withinGoal(latency time.Duration, m [2]time.Duration) bool {
	return latency != 20*time.Millisecond || float64(m[0]) <= 1.5*float64(m[1])
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
