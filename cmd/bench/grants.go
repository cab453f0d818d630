package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// maxGrantsCost is the most a 50-line grants file may add to cbkgate's CPU
// per Create.
const maxGrantsCost = 1.05

// benchGrantLines is the size of the grants file measured.
const benchGrantLines = 50

// grantsFile writes a grants file of benchGrantLines lines in which only
// the last allows the benchmark's calls (anonymous, as the benchmark's
// servers let callers in unauthenticated): every call checks each line,
// and the 49 before it match the caller and the method but not the user,
// so each of their user patterns is tried too. That is the most a call
// can cost with a file of this size.
func grantsFile(dir string) (string, error) {
	var b strings.Builder
	b.WriteString("# cmd/bench: 49 grants that do not match the benchmark's user, then the one that does\n")
	for i := range benchGrantLines - 1 {
		fmt.Fprintf(&b, "* create,list tenant-%02d-*,partner-%02d,*-suspended-%02d\n", i, i, i)
	}
	fmt.Fprintf(&b, "anonymous create,list %s,%s,%s\n", createUser, listUser, memUser)
	path := filepath.Join(dir, "grants")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// grants measures what grants cost: cbkgate's CPU time per Create with the
// 50-line grants file next to the same build without one, side by side in
// alternating rounds, over gRPC (the transport with the least other cost,
// so the one where the check weighs most).
func (b *bench) grants(ctx context.Context, t *table, bin, dir string) error {
	path, err := grantsFile(dir)
	if err != nil {
		return err
	}
	with, err := startServer(bin, []string{"CBKGATE_GRANTS_FILE=" + path}, b.upstream, benchSecret, "warn", metricsOn, dir)
	if err != nil {
		return err
	}
	defer with.stop()
	without, err := startServer(bin, nil, b.upstream, benchSecret, "warn", metricsOn, dir)
	if err != nil {
		return err
	}
	defer without.stop()

	callWith, err := grpcCreate(tokenv1.NewTokenServiceClient(with.conn), createUser)
	if err != nil {
		return err
	}
	callWithout, err := grpcCreate(tokenv1.NewTokenServiceClient(without.conn), createUser)
	if err != nil {
		return err
	}
	c := b.o.conc
	name := fmt.Sprintf("grants: Create gRPC, c=%d", c)
	cpuWith, nWith, cpuWithout, nWithout, err := b.compareCPU(ctx, name, with, without, callWith, callWithout,
		fmt.Sprintf("%d grants", benchGrantLines), "no grants file")
	if err != nil {
		return err
	}
	ratio := (float64(cpuWith) / float64(nWith)) / (float64(cpuWithout) / float64(nWithout))
	t.row(fmt.Sprintf("cbkgate CPU per Create, gRPC, c=%d: %d-line grants file (cbkgate) vs none (direct)", c, benchGrantLines),
		perCall(cpuWith, nWith), perCall(cpuWithout, nWithout), fmt.Sprintf("%.3f", ratio), fmt.Sprintf("≤ %.2f", maxGrantsCost), ratio <= maxGrantsCost)
	return nil
}
