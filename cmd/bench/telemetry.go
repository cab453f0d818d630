package main

import (
	"context"
	"fmt"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// maxMetricsCost is the most metrics may add to cbkgate's CPU per call.
const maxMetricsCost = 1.10

// telemetry measures what metrics cost: cbkgate's CPU time per Create with
// metrics on (an admin listener, as by default) next to the same build with
// --admin-addr= (no metrics collected), or next to -telemetry-baseline, a
// build from before. Tracing is off on both sides (no OTLP endpoint), so
// this is the cost every deployment pays. The two servers run side by
// side against the same upstream in alternating rounds, so a noisy moment
// weighs on both; the ratio is of total CPU per call over all rounds,
// which the 10 ms granularity of /proc CPU times would make too coarse
// round by round.
func (b *bench) telemetry(ctx context.Context, t *table, bin, dir string) error {
	on, err := startServer(bin, nil, b.upstream, benchSecret, "warn", metricsOn, dir)
	if err != nil {
		return err
	}
	defer on.stop()
	offBin, offMetrics, offName := bin, metricsOff, "metrics off"
	if b.o.baseline != "" {
		offBin, offMetrics, offName = b.o.baseline, metricsNoFlag, "baseline build"
	}
	off, err := startServer(offBin, nil, b.upstream, benchSecret, "warn", offMetrics, dir)
	if err != nil {
		return err
	}
	defer off.stop()

	c := b.o.conc
	sides := func(transport string) (call, call, error) {
		if transport == "gRPC" {
			a, err := grpcCreate(tokenv1.NewTokenServiceClient(on.conn), createUser)
			if err != nil {
				return nil, nil, err
			}
			z, err := grpcCreate(tokenv1.NewTokenServiceClient(off.conn), createUser)
			return a, z, err
		}
		return httpCreate(b.gateway, "http://"+on.httpAddr+"/v1/users/"+createUser+"/tokens", ""),
			httpCreate(b.gateway, "http://"+off.httpAddr+"/v1/users/"+createUser+"/tokens", ""), nil
	}
	for _, transport := range []string{"gRPC", "JSON gateway"} {
		callOn, callOff, err := sides(transport)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("telemetry: Create %s, c=%d", transport, c)
		cpuOn, nOn, cpuOff, nOff, err := b.compareCPU(ctx, name, on, off, callOn, callOff, "metrics on", offName)
		if err != nil {
			return err
		}
		ratio := (float64(cpuOn) / float64(nOn)) / (float64(cpuOff) / float64(nOff))
		t.row(fmt.Sprintf("cbkgate CPU per Create, %s, c=%d: metrics on (cbkgate) vs %s (direct), tracing off", transport, c, offName),
			perCall(cpuOn, nOn), perCall(cpuOff, nOff), fmt.Sprintf("%.3f", ratio), fmt.Sprintf("≤ %.2f", maxMetricsCost), ratio <= maxMetricsCost)
	}
	return nil
}

// compareCPU warms both servers up, then runs rounds of callA against a
// and callZ against z, alternating which goes first (the first side of a
// round reads a few percent high), and returns each side's total CPU time
// and calls. Totals, not per-round figures: the 10 ms granularity of /proc
// CPU times would make those too coarse.
func (b *bench) compareCPU(ctx context.Context, name string, a, z *server, callA, callZ call, nameA, nameZ string) (cpuA time.Duration, nA int, cpuZ time.Duration, nZ int, err error) {
	c := b.o.conc
	for _, f := range []call{callA, callZ} {
		if _, err := load(ctx, c, time.Second, f); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("%s: warm-up: %w", name, err)
		}
	}
	for i := range b.o.rounds {
		var r, r2 run
		var err error
		if i%2 == 0 {
			r, err = measured(ctx, a, c, b.o.duration, callA)
			if err == nil {
				r2, err = measured(ctx, z, c, b.o.duration, callZ)
			}
		} else {
			r2, err = measured(ctx, z, c, b.o.duration, callZ)
			if err == nil {
				r, err = measured(ctx, a, c, b.o.duration, callA)
			}
		}
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		cpuA, nA = cpuA+r.cpu, nA+r.calls
		cpuZ, nZ = cpuZ+r2.cpu, nZ+r2.calls
		progress("%s, round %d/%d: %s %s/call, %s %s/call", name, i+1, b.o.rounds,
			nameA, perCall(r.cpu, r.calls), nameZ, perCall(r2.cpu, r2.calls))
	}
	if nA == 0 || nZ == 0 || cpuZ == 0 {
		return 0, 0, 0, 0, fmt.Errorf("%s: no calls or no CPU time measured", name)
	}
	return cpuA, nA, cpuZ, nZ, nil
}

// measured runs one round of f against srv and records srv's CPU time.
func measured(ctx context.Context, srv *server, conc int, d time.Duration, f call) (run, error) {
	cpu0 := srv.cpuTime()
	r, err := load(ctx, conc, d, f)
	r.cpu = srv.cpuTime() - cpu0
	return r, err
}

func perCall(cpu time.Duration, n int) string {
	if n == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f µs", float64(cpu)/float64(n)/1e3)
}
