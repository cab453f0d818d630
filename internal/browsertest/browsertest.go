// Package browsertest runs pages in a real browser, headless Debian
// Chromium driven by playwright-core, for checks that only a browser can
// make (CORS, fetch streaming, EventSource, the Fetch metadata headers,
// the token console).
//
// Run opens a page that does its own checks and reports by setting
// window.browsertestResult = {passed, failed, lines}; Script runs a
// playwright-core script of this directory that drives pages itself
// (console.mjs). Both fail the test unless every check passed. Prepare
// them with `npm ci --prefix internal/browsertest` (playwright-core,
// pinned) and Debian's chromium at /usr/bin/chromium (BROWSERTEST_CHROMIUM
// overrides); .ci/run does both. Tests that use it are behind a build tag,
// run explicitly by .ci/run.
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
	return node(t, name, timeout, nil, "run.mjs", url, name, strconv.FormatInt(timeout.Milliseconds(), 10))
}

// Script runs the playwright-core script of this directory with args and
// env (KEY=VALUE, added to this process's environment), and returns its
// output. The script must print "NAME: N passed, 0 failed" with N > 0 and
// exit 0, or t fails.
func Script(t testing.TB, name string, timeout time.Duration, env []string, script string, args ...string) []byte {
	t.Helper()
	return node(t, name, timeout, env, script, args...)
}

func node(t testing.TB, name string, timeout time.Duration, env []string, script string, args ...string) []byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Dir(self)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed; run: npm ci --prefix internal/browsertest (%v)", err)
	}
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required: ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
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
