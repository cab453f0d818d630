package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/cbkgate/cbkgate/internal/auth"
)

// CORS for the API routes. Callers authenticate with a bearer header, never
// cookies, so Access-Control-Allow-Credentials is never sent: a page can call
// the API only with a credential it holds itself.
//
// The Connect and gRPC-Web protocols send their own request headers and
// carry a call's status in response headers a page must be able to read
// (gRPC-Web's trailers arrive in the body, but a trailers-only answer puts
// Grpc-Status in the headers).
const (
	corsAllowMethods = "GET, POST, PATCH, DELETE"
	corsAllowHeaders = "Authorization, Content-Type, X-Request-Id, Traceparent, Tracestate, Last-Event-Id, " +
		"Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Content-Encoding, Connect-Accept-Encoding, " +
		"Grpc-Timeout, X-Grpc-Web, X-User-Agent"
	// Retry-After is not CORS-safelisted; a browser client needs it to back off.
	corsExposeHeaders = "Retry-After, X-Request-Id, Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, " +
		"Connect-Content-Encoding, Connect-Accept-Encoding, Grpc-Encoding, Grpc-Accept-Encoding"
	corsMaxAge = "600" // seconds; short, so a changed origin list takes effect soon
)

type cors struct {
	any     bool
	origins map[string]bool // lowercased
}

// newCORS returns nil (no CORS at all) for an empty list.
func newCORS(origins []string) (*cors, error) {
	if len(origins) == 0 {
		return nil, nil
	}
	c := &cors{origins: map[string]bool{}}
	for _, o := range origins {
		switch {
		case o == "*" && len(origins) == 1:
			c.any = true
		case o == "*":
			return nil, errors.New(`httpapi: CORS origin "*" cannot be combined with other origins`)
		case o == "":
			return nil, errors.New("httpapi: empty CORS origin")
		default:
			// Browsers send scheme and host lowercased.
			c.origins[strings.ToLower(o)] = true
		}
	}
	return c, nil
}

func (c *cors) allowed(origin string) bool {
	return origin != "" && (c.any || c.origins[strings.ToLower(origin)])
}

// wrap answers preflights itself, before auth and the gateway (a preflight
// carries no credentials and must not fail authentication), and adds the
// CORS headers to the actual responses of allowed origins.
func (c *cors) wrap(next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin whenever CORS is on, allowed or not,
		// so shared caches must key on it.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		ok := c.allowed(origin)

		if auth.IsPreflight(r) {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !ok {
				// 403 without CORS headers: the browser refuses the call
				// either way, and a human reading the network log sees why.
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			c.allowOrigin(h, origin)
			// Fixed lists, never the requested ones echoed back: a header
			// outside them fails the preflight in the browser.
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			c.allowOrigin(h, origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

func (c *cors) allowOrigin(h http.Header, origin string) {
	if c.any {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
}
