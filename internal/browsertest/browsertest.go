// Package browsertest runs a page in a real browser, headless Debian
// Chromium driven by playwright-core, for checks that only a browser can
// make (CORS, fetch streaming, EventSource, the Fetch metadata headers).
//
// The page does its own checks and reports by setting
// window.browsertestResult = {passed, failed, lines}; Run waits for it and
// fails the test unless every check passed. Prepare it with
// `npm ci --prefix internal/browsertest` (playwright-core, pinned) and
// Debian's chromium at /usr/bin/chromium (BROWSERTEST_CHROMIUM overrides);
// .ci/run does both. Tests that use it are behind a build tag, run
// explicitly by .ci/run.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Run opens url in a fresh headless Chromium and returns the runner's
// output once the page has reported. It fails t unless the page reported
// at least one passed check and no failed one; name labels the summary.
func Run(t testing.TB, name, url string, timeout time.Duration) []byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Dir(self)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed; run: npm ci --prefix internal/browsertest (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required: ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "run.mjs"), url, name, strconv.FormatInt(timeout.Milliseconds(), 10))
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s in Chromium:\n%s", name, out)
	if err != nil {
		t.Fatalf("%s: the browser check failed: %v", name, err)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: [1-9][0-9]* passed, 0 failed$`).Match(out) {
		t.Fatalf("%s: no summary line \"%s: N passed, 0 failed\"", name, name)
	}
	return out
}
