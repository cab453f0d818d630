//go:build tsclient

package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/browsertest"
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

// TestTSClientTypes: the checks and the generated code they import
// type-check with tsc in strict mode (esbuild, which bundles them, does
// not type-check): gen/ts fits @bufbuild/protobuf and @connectrpc/connect
// as pinned.
func TestTSClientTypes(t *testing.T) {
	tsc := filepath.Join("tsclient", "node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Fatalf("typescript is not installed; run: npm ci --prefix cmd/server/tsclient (%v)", err)
	}
	cmd := exec.Command(tsc, "-p", "tsclient")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
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

// TestTSClientBrowser: a page served from another origin (localhost, while
// cbkgate is at 127.0.0.1), allowed by --cors-origins, runs page.ts in
// headless Chromium: the generated client over Connect streaming List,
// fetch reading NDJSON incrementally, SSE through fetch and EventSource,
// and an error shown with its reason.
func TestTSClientBrowser(t *testing.T) {
	script, err := os.ReadFile(bundle(t, "page.ts", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pageOrigin := "http://localhost:" + strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><title>cbkgate client check</title></head>` +
			`<body><p id="error"></p><script type="module" src="/page.js"></script></body></html>`))
	})
	mux.HandleFunc("GET /page.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write(script)
	})
	pages := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = pages.Serve(lis) }()
	defer pages.Close()

	c := startDev(t, "--cors-origins="+pageOrigin)
	browsertest.Run(t, "tsclient-browser", pageOrigin+"/?api=http://"+c.httpAddr, time.Minute)
}
