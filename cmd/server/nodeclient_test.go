//go:build nodeclient

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// TestNodeClient runs nodeclient/check.mjs, a Node gRPC client built from
// gen/cbkgate.binpb alone, against the binary in dev mode: the contract's
// promise that a client with no proto tooling can use the descriptor set.
// Prepare it with `npm ci --prefix cmd/server/nodeclient`.
func TestNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the Node client check: ", err)
	}
	for _, dep := range []string{"@grpc/grpc-js", "@grpc/proto-loader"} {
		if _, err := os.Stat(filepath.Join("nodeclient", "node_modules", dep)); err != nil {
			t.Fatalf("%s is not installed; run: npm ci --prefix cmd/server/nodeclient", dep)
		}
	}
	binpb, err := filepath.Abs(filepath.Join("..", "..", "gen", "cbkgate.binpb"))
	if err != nil {
		t.Fatal(err)
	}

	c := startDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = "nodeclient"
	cmd.Env = childEnv("CBKGATE_GRPC_ADDR="+c.grpcAddr, "CBKGATE_BINPB="+binpb)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node check.mjs: %v\n%s", err, out)
	}
	t.Logf("node check.mjs:\n%s", out)
	if !regexp.MustCompile(`(?m)^nodeclient: [1-9][0-9]* passed, 0 failed$`).Match(out) {
		t.Fatal("no summary line \"nodeclient: N passed, 0 failed\" in the output")
	}

	c.signal(t, syscall.SIGTERM)
	if code := c.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit status after SIGTERM: %d, want 0", code)
	}
}
