package emulator

import (
	"net/http"
	"time"
)

// WithLatency returns h with every answer held back by d, as a network
// between cbkgate and ChatBotKit would hold it (cbkgate --emulator-latency):
// it shows what one upstream round trip costs a call, and benchmarks use it
// to count round trips. A request whose client goes away while it waits
// gets no answer. d <= 0 returns h itself.
func WithLatency(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}
