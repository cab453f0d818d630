package emulator_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/emulator"
)

// Every answer waits the latency (a lower bound only: a loaded machine may
// add to it, never take from it), and zero adds nothing.
func TestWithLatency(t *testing.T) {
	emu := emulator.New(emulator.Options{Secret: "s"})
	const d = 150 * time.Millisecond
	srv := httptest.NewServer(emulator.WithLatency(emu, d))
	t.Cleanup(srv.Close)
	for range 2 {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/partner/user/u/token/list", nil)
		req.Header.Set("Authorization", "Bearer s")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != http.StatusOK || took < d {
			t.Fatalf("%d after %s, want 200 after at least %s", resp.StatusCode, took, d)
		}
	}
	if h := emulator.WithLatency(emu, 0); h != http.Handler(emu) {
		t.Fatal("no latency should serve the emulator itself")
	}
}
