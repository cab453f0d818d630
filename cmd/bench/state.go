package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// maxStateCost is the most the shared-state store (--state) may add to
// cbkgate's CPU per Create without a request_id.
const maxStateCost = 1.05

// state measures cbkgate's CPU time per gRPC Create without a request_id
// with --state memory and with --state redis://... (a redis-server this
// benchmark starts), each next to -state-baseline (a build from before
// --state; by default this build in memory mode), with --caller-rate off
// and on (at a rate no call reaches, so every Create asks the limiter and
// none is refused). Only with the rate on does a Create without a
// request_id touch the store at all.
func (b *bench) state(ctx context.Context, t *table, bin, dir string) error {
	redisAddr, stopRedis, err := startRedis(dir)
	if err != nil {
		return err
	}
	defer stopRedis()
	keyFile := filepath.Join(dir, "state.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		return err
	}
	baseBin, baseName := bin, "this build, --state memory"
	if b.o.stateBaseline != "" {
		baseBin, baseName = b.o.stateBaseline, "baseline build"
	}
	for _, rate := range []int{0, 1_000_000} {
		rateEnv := "CBKGATE_CALLER_RATE=" + strconv.Itoa(rate)
		base, err := startServer(baseBin, []string{rateEnv}, b.upstream, benchSecret, "warn", metricsOn, dir)
		if err != nil {
			return err
		}
		for _, mode := range []struct{ name, state string }{
			{"--state memory", "memory"},
			{"--state redis", "redis://" + redisAddr + "/0"},
		} {
			if mode.state == "memory" && b.o.stateBaseline == "" {
				continue // the same server as the baseline
			}
			env := []string{rateEnv, "CBKGATE_STATE=" + mode.state}
			if mode.state != "memory" {
				env = append(env, "CBKGATE_STATE_KEY_FILE="+keyFile)
			}
			srv, err := startServer(bin, env, b.upstream, benchSecret, "warn", metricsOn, dir)
			if err != nil {
				base.stop()
				return err
			}
			callA, err := grpcCreate(tokenv1.NewTokenServiceClient(srv.conn), createUser)
			if err == nil {
				var callZ call
				callZ, err = grpcCreate(tokenv1.NewTokenServiceClient(base.conn), createUser)
				if err == nil {
					err = b.stateRow(ctx, t, fmt.Sprintf("state: Create gRPC, %s, --caller-rate %d", mode.name, rate), srv, base, callA, callZ, mode.name, baseName)
				}
			}
			srv.stop()
			if err != nil {
				base.stop()
				return err
			}
		}
		base.stop()
	}
	return nil
}

func (b *bench) stateRow(ctx context.Context, t *table, name string, srv, base *server, callA, callZ call, nameA, nameZ string) error {
	cpuA, nA, cpuZ, nZ, err := b.compareCPU(ctx, name, srv, base, callA, callZ, nameA, nameZ)
	if err != nil {
		return err
	}
	ratio := (float64(cpuA) / float64(nA)) / (float64(cpuZ) / float64(nZ))
	t.row(fmt.Sprintf("cbkgate CPU per Create without request_id, gRPC, c=%d: %s (cbkgate) vs %s (direct)", b.o.conc, name[len("state: Create gRPC, "):], nameZ),
		perCall(cpuA, nA), perCall(cpuZ, nZ), fmt.Sprintf("%.3f", ratio), fmt.Sprintf("≤ %.2f", maxStateCost), ratio <= maxStateCost)
	return nil
}

// startRedis runs Debian's redis-server on a free loopback port, with
// nothing persisted, until stop.
func startRedis(dir string) (addr string, stop func(), err error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("the state phase needs redis-server (apt-get install -y redis-server)")
	}
	if addr, err = freePort(); err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server did not listen on %s within 10 s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
