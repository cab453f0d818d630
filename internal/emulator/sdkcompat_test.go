//go:build sdkcompat

package emulator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/emulator"
)

// TestSDKCompat runs sdkcompat/check.mjs, which drives the emulator with
// ChatBotKit's official Node SDK. Prepare it with
// `npm ci --prefix internal/emulator/sdkcompat`.
func TestSDKCompat(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is required for the SDK compatibility check: ", err)
	}
	if _, err := os.Stat(filepath.Join("sdkcompat", "node_modules", "@chatbotkit", "sdk")); err != nil {
		t.Fatal("the SDK is not installed; run: npm ci --prefix internal/emulator/sdkcompat")
	}

	const sdkSecret = "sdkcompat-secret"
	e := emulator.New(emulator.Options{Secret: sdkSecret})
	// Record the paths the SDK uses: it should keep /api for a host that is
	// not api.chatbotkit.com, which is why the emulator answers there too.
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		e.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = "sdkcompat"
	cmd.Env = append(os.Environ(), "EMULATOR_BASE_URL="+srv.URL, "EMULATOR_SECRET="+sdkSecret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node check.mjs: %v\n%s", err, out)
	}
	t.Logf("node check.mjs:\n%s", out)
	if !strings.Contains(string(out), " passed, 0 failed") {
		t.Fatalf("no final summary line in the output")
	}

	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 {
		t.Fatal("the SDK sent no requests")
	}
	for _, p := range paths {
		if _, path, _ := strings.Cut(p, " "); !strings.HasPrefix(path, "/api/v1/partner/user/") {
			t.Errorf("SDK request %q is not under /api/v1/partner/user/", p)
		}
	}
}
