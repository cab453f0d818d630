// Package testlog is the log sink of cbkgate's tests: a buffer that the
// server's goroutines may write to while the test reads it. Only tests
// import it.
package testlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is a goroutine-safe io.Writer for a logger. With Keep > 0 it keeps
// only about the last Keep bytes (at most twice that), so that a soak's log
// does not count as a leak; Lines still counts every line ever written.
type Buffer struct {
	Keep int

	mu    sync.Mutex
	b     bytes.Buffer
	lines int
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Keep > 0 && l.b.Len()+len(p) > 2*l.Keep {
		tail := append([]byte(nil), l.b.Bytes()[l.b.Len()-min(l.b.Len(), l.Keep):]...)
		l.b.Reset()
		l.b.Write(tail)
	}
	l.lines += bytes.Count(p, []byte("\n"))
	return l.b.Write(p)
}

// String returns what is kept.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines is how many lines have been written so far, kept or not.
func (l *Buffer) Lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines
}

// JSON returns the kept lines decoded as JSON objects, blank lines skipped;
// a line that is not JSON fails the test.
func (l *Buffer) JSON(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

// Await waits, polling for at most within, until what has been kept
// satisfies ok, and reports whether it did. For lines written after the
// client already has its answer (grpc-go sends some refusals itself,
// before the call line is written).
func (l *Buffer) Await(within time.Duration, ok func(kept string) bool) bool {
	deadline := time.Now().Add(within)
	for {
		if ok(l.String()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
