package chatbotkit

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// A page with more items than its take is malformed, on the fast path and
// on encoding/json's; exactly take items are fine.
func TestPageLongerThanTakeIsMalformed(t *testing.T) {
	for _, escaped := range []bool{false, true} {
		for _, c := range []struct {
			take, items int
			ok          bool
		}{{10, 10, true}, {10, 11, false}, {0, MaxTake, true}, {0, MaxTake + 1, false}, {1, 100000, false}} {
			body := string(faultyupstream.PageOfIDs(c.items, escaped))
			srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, body) })
			cl, _ := newTestClient(t, srv.URL, nil)
			p, err := cl.ListPage(context.Background(), heldSecret, "u", ListOptions{Take: c.take})
			switch {
			case c.ok && (err != nil || len(p.Items) != c.items):
				t.Errorf("escaped=%v take %d, %d items: %v", escaped, c.take, c.items, err)
			case !c.ok && !errors.Is(err, ErrMalformedResponse):
				t.Errorf("escaped=%v take %d, %d items: %v, want ErrMalformedResponse", escaped, c.take, c.items, err)
			}
		}
	}
	cl, _ := newTestClient(t, "http://127.0.0.1:1", nil)
	if _, err := cl.ListPage(context.Background(), heldSecret, "u", ListOptions{Take: MaxTake + 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("take %d: %v, want ErrInvalidArgument", MaxTake+1, err)
	}
}

// The body caps count decompressed bytes: a small gzip body that inflates
// past the cap is refused, as an error body is cut at its own cap.
func TestCapsHoldAfterDecompression(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"items":[],"pad":"`))
	zw.Write(bytes.Repeat([]byte("a"), 64<<20)) // 64 MiB inflated
	zw.Write([]byte(`"}`))
	zw.Close()
	t.Logf("gzip body: %d bytes, %d inflated", gz.Len(), 64<<20)
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Error("the client does not ask for gzip; this test tests nothing")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(gz.Bytes())
	})
	cl, _ := newTestClient(t, srv.URL, nil)
	if _, err := cl.ListPage(context.Background(), heldSecret, "u", ListOptions{Take: 10}); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("gzip page inflating to 64 MiB: %v, want ErrResponseTooLarge", err)
	}
}

// Every string upstream sends back in an error is cleaned of the call's
// credential, whatever its length (a pass-through bearer of 6 characters
// here).
func TestUpstreamErrorsAreRedacted(t *testing.T) {
	const bearer = "k6c8zq"
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, fmt.Sprintf(`{"code":"BAD_%s","message":"you sent %s"}`, bearer, bearer))
	})
	cl, _ := newTestClient(t, srv.URL, nil)
	_, err := cl.ListPage(context.Background(), secret.Value(bearer), "u", ListOptions{})
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("%v, want an APIError", err)
	}
	for _, s := range []string{ae.Code, ae.Message, err.Error()} {
		if strings.Contains(s, bearer) {
			t.Errorf("%q shows a secret", s)
		}
	}
	if !strings.Contains(ae.Code, secret.Redacted) {
		t.Errorf("code %q: the secret was not replaced", ae.Code)
	}
	if got := cl.Redact("x "+bearer+" y "+bearer, secret.Value(bearer)); strings.Contains(got, bearer) {
		t.Errorf("Redact left a secret: %q", got)
	}
}

// A retry gate is waited on before each retry, never before the first
// attempt, and its error ends the retries.
func TestRetryGate(t *testing.T) {
	n := 0
	srv, rec := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if n++; n <= 2 {
			writeJSON(w, 503, `{"message":"busy","code":"SERVICE_UNAVAILABLE"}`)
			return
		}
		writeJSON(w, 200, `{"items":[]}`)
	})
	cl, _ := newTestClient(t, srv.URL, nil)
	gated := 0
	ctx := WithRetryGate(context.Background(), func(context.Context) error { gated++; return nil })
	if _, err := cl.ListPage(ctx, heldSecret, "u", ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if gated != 2 || rec.count() != 3 {
		t.Fatalf("gate called %d times for %d requests, want 2 for 3", gated, rec.count())
	}
	n = 0
	stop := errors.New("over the rate")
	ctx = WithRetryGate(context.Background(), func(context.Context) error { return stop })
	if _, err := cl.ListPage(ctx, heldSecret, "u", ListOptions{}); !errors.Is(err, stop) {
		t.Fatalf("%v, want the gate's error", err)
	}
}
