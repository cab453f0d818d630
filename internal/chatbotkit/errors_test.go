package chatbotkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAPIErrors checks every status of the table, with a JSON error body,
// with a non-JSON body and with none, through a write (never retried) and a
// list read with a single attempt.
func TestAPIErrors(t *testing.T) {
	type bodyKind int
	const (
		jsonBody bodyKind = iota
		htmlBody
		emptyBody
		partialJSON // message only
	)
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		status, _ := strconv.Atoi(r.Header.Get("X-Status"))
		kind, _ := strconv.Atoi(r.Header.Get("X-Kind"))
		switch bodyKind(kind) {
		case jsonBody:
			writeJSON(w, status, fmt.Sprintf(`{"message":"upstream says %d","code":"CODE_%d"}`, status, status))
		case htmlBody:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			w.Write([]byte("<html><body>proxy error</body></html>"))
		case emptyBody:
			w.WriteHeader(status)
		case partialJSON:
			writeJSON(w, status, `{"message":"only a message"}`)
		}
	})
	// The test tells the server what to answer through headers, set by a
	// transport wrapper.
	var status, kind int
	tr := NewTransport()
	c, _ := newTestClient(t, srv.URL, func(o *Options) {
		o.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("X-Status", strconv.Itoa(status))
			r.Header.Set("X-Kind", strconv.Itoa(kind))
			return tr.RoundTrip(r)
		})
	})
	c.maxAttempts = 1
	t.Cleanup(tr.CloseIdleConnections)
	ctx := context.Background()

	want := map[int]string{
		400: "BAD_REQUEST", 401: "NOT_AUTHENTICATED", 402: "NO_SUBSCRIPTION", 403: "NOT_AUTHORIZED",
		404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "TIMEOUT", 409: "CONFLICT",
		413: "CONTENT_TOO_LARGE", 422: "UNPROCESSABLE_ENTITY", 429: "TOO_MANY_REQUESTS",
		500: "INTERNAL_SERVER_ERROR", 501: "NOT_IMPLEMENTED", 502: "BAD_GATEWAY",
		503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT", 418: "UNKNOWN", 301: "UNKNOWN",
	}
	for st, code := range want {
		for _, k := range []bodyKind{jsonBody, htmlBody, emptyBody, partialJSON} {
			status, kind = st, int(k)
			wantCode, wantMsg := code, http.StatusText(st)
			switch k {
			case jsonBody:
				wantCode, wantMsg = fmt.Sprintf("CODE_%d", st), fmt.Sprintf("upstream says %d", st)
			case partialJSON:
				wantMsg = "only a message"
			}
			calls := map[string]func() error{
				"create": func() error { _, err := c.Create(ctx, heldSecret, "u", TokenInput{}); return err },
				"update": func() error { _, err := c.Update(ctx, heldSecret, "u", "t", TokenInput{}); return err },
				"delete": func() error { _, err := c.Delete(ctx, heldSecret, "u", "t"); return err },
				"list":   func() error { _, err := c.ListPage(ctx, heldSecret, "u", ListOptions{}); return err },
			}
			for name, call := range calls {
				before := rc.count()
				err := call()
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Errorf("%s %d/%d: %v, want *APIError", name, st, k, err)
					continue
				}
				if ae.Status != st || ae.Code != wantCode || ae.Message != wantMsg {
					t.Errorf("%s %d/%d: %+v, want %d %s %q", name, st, k, ae, st, wantCode, wantMsg)
				}
				if s := ae.Error(); !strings.Contains(s, strconv.Itoa(st)) || !strings.Contains(s, wantCode) || !strings.Contains(s, wantMsg) {
					t.Errorf("%s: Error() = %q lacks status, code or message", name, s)
				}
				if n := rc.count() - before; n != 1 {
					t.Errorf("%s %d: %d upstream calls, want 1", name, st, n)
				}
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestErrorBodyIsCapped(t *testing.T) {
	// A huge error body, JSON whose end is past the cap: the client reads
	// 64 KiB, falls back to the status's code and returns.
	huge := `{"code":"X","message":"` + strings.Repeat("a", 4<<20) + `"}`
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 500, huge) })
	c, _ := newTestClient(t, srv.URL, nil)
	_, err := c.Create(context.Background(), heldSecret, "u", TokenInput{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "INTERNAL_SERVER_ERROR" || ae.Message != "Internal Server Error" {
		t.Errorf("got %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                     0,
		"0":                    0,
		"7":                    7 * time.Second,
		" 120 ":                2 * time.Minute,
		"1.5":                  1500 * time.Millisecond,
		"-3":                   0,
		"soon":                 0,
		"NaN":                  0,
		"99999999999999999999": 365 * 24 * time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat):  90 * time.Second,
		now.Add(-90 * time.Second).Format(http.TimeFormat): 0,
		"Fri, 02 Jan 2026 03:04:35 GMT":                    30 * time.Second,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRetryAfterOnAPIError(t *testing.T) {
	var mu sync.Mutex
	var retryAfter string
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		mu.Unlock()
		writeJSON(w, 429, `{"message":"slow down","code":"LIMITS_REACHED"}`)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	cases := map[string]func(time.Duration) bool{
		"":  func(d time.Duration) bool { return d == 0 },
		"7": func(d time.Duration) bool { return d == 7*time.Second },
		time.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat): func(d time.Duration) bool {
			return d > 18*time.Second && d <= 20*time.Second
		},
	}
	for ra, ok := range cases {
		mu.Lock()
		retryAfter = ra
		mu.Unlock()
		// A write is not retried, so the 429 comes straight back.
		_, err := c.Create(context.Background(), heldSecret, "u", TokenInput{})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "LIMITS_REACHED" || ae.Message != "slow down" || !ok(ae.RetryAfter) {
			t.Errorf("Retry-After %q: %#v", ra, err)
		}
	}
}
