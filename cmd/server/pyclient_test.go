//go:build pyclient

package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// debianPython is Debian's interpreter, the one python3-grpcio and
// python3-protobuf install into (another python3 may come first on PATH).
const debianPython = "/usr/bin/python3"

// TestPythonClient runs pyclient/check.py, a Python gRPC client built from
// gen/cbkgate.binpb alone with Debian's python3-grpcio and
// python3-protobuf, against the binary in dev mode (CRUD, List over several
// pages, every detail type decoded), plus a pass-through cbkgate whose
// upstream answers 429 for RetryInfo. .ci/run installs the packages.
func TestPythonClient(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatalf("%s is required (apt-get install python3-grpcio python3-protobuf): %v", debianPython, err)
	}
	binpb, err := filepath.Abs(filepath.Join("..", "..", "gen", "cbkgate.binpb"))
	if err != nil {
		t.Fatal(err)
	}
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"slow down","code":"RATE_LIMITED"}`))
	}))
	defer limited.Close()

	dev := startDev(t)
	pass := startPassThrough(t, limited.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, filepath.Join("pyclient", "check.py"))
	cmd.Env = childEnv("CBKGATE_GRPC_ADDR="+dev.grpcAddr, "CBKGATE_GRPC_ADDR_429="+pass.grpcAddr, "CBKGATE_BINPB="+binpb)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("check.py:\n%s", out)
	if err != nil {
		t.Fatalf("python3 check.py: %v", err)
	}
	if !regexp.MustCompile(`(?m)^pyclient: [1-9][0-9]* passed, 0 failed$`).Match(out) {
		t.Fatal("no summary line \"pyclient: N passed, 0 failed\" in the output")
	}
	for _, c := range []*child{dev, pass} {
		c.signal(t, syscall.SIGTERM)
		if code := c.waitExit(t, 10*time.Second); code != 0 {
			t.Errorf("exit status after SIGTERM: %d, want 0", code)
		}
	}
}
