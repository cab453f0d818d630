//go:build tsclient

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// The checks of the generated TypeScript client (gen/ts), run by .ci/run
// after `npm ci --prefix cmd/server/tsclient`:
//
//	go test -tags tsclient -run TSClient -count=1 ./cmd/server/

// bundle builds one of tsclient/'s TypeScript entry points with esbuild, as
// an application would, into a single file in a temporary directory.
// gen/ts imports @bufbuild/protobuf, which lives in tsclient/node_modules;
// NODE_PATH points esbuild there.
func bundle(t *testing.T, entry, platform string) string {
	t.Helper()
	modules, err := filepath.Abs(filepath.Join("tsclient", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	esbuild := filepath.Join(modules, ".bin", "esbuild")
	if _, err := os.Stat(esbuild); err != nil {
		t.Fatalf("esbuild is not installed; run: npm ci --prefix cmd/server/tsclient (%v)", err)
	}
	ext := ".mjs"
	if platform == "browser" {
		ext = ".js"
	}
	out := filepath.Join(t.TempDir(), filepath.Base(entry)+ext)
	cmd := exec.Command(esbuild, filepath.Join("tsclient", entry), "--bundle", "--platform="+platform,
		"--format=esm", "--target=es2022", "--log-level=warning", "--outfile="+out)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild %s: %v\n%s", entry, err, b)
	}
	return out
}

// summary is the closing line every check prints.
func wantSummary(t *testing.T, name string, out []byte) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: [1-9][0-9]* passed, 0 failed$`).Match(out) {
		t.Fatalf("no summary line %q in the output", name+": N passed, 0 failed")
	}
}

// TestTSClientNode: the generated client over Connect from Node
// (connect-node), against the binary in dev mode.
func TestTSClientNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required: ", err)
	}
	script := bundle(t, "node_check.ts", "node")
	c := startDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = childEnv("CBKGATE_HTTP_URL=http://" + c.httpAddr)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node_check.ts:\n%s", out)
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	wantSummary(t, "tsclient-node", out)
}
