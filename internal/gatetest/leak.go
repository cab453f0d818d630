package gatetest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Goroutines returns the ids of the goroutines running now, for
// WantNothingLeft.
func Goroutines() map[string]bool {
	out := map[string]bool{}
	for _, s := range stacks() {
		out[strings.SplitN(s, " ", 3)[1]] = true
	}
	return out
}

func stacks() []string {
	buf := make([]byte, 4<<20)
	return strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
}

// cbkgateFrames mark a goroutine as cbkgate's: its servers, the gateway's
// gRPC connection, calls, and the REST client's connections (the test's
// own HTTP client and gRPC connection are closed before the check).
var cbkgateFrames = []string{
	"cbkgate/internal/app.",
	"cbkgate/internal/service.",
	"cbkgate/internal/chatbotkit.",
	"cbkgate/internal/httpapi.",
	"google.golang.org/grpc",
	"net/http.(*persistConn)",
}

// WantNothingLeft polls, bounded, until no goroutine started after before
// (Goroutines) belongs to cbkgate, and fails the test if one still does
// after 5s. The test's own gRPC connections and HTTP clients count: close
// them first. Not for parallel tests: their goroutines count too.
func WantNothingLeft(t testing.TB, before map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, s := range stacks() {
			if before[strings.SplitN(s, " ", 3)[1]] {
				continue
			}
			for _, f := range cbkgateFrames {
				if strings.Contains(s, f) {
					left = append(left, s)
					break
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of cbkgate still running after Run returned:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond) // bounded polling
	}
}
