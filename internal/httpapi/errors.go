package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/auth"
)

// errorHandler is runtime.DefaultHTTPErrorHandler (JSON google.rpc.Status,
// details kept, HTTP status from the gRPC code) with two header fixes
// applied just before the status line is written:
//   - Retry-After from a google.rpc.RetryInfo, so HTTP clients and proxies
//     can back off without parsing the body;
//   - the one challenge, auth.Challenge, on 401 (whoever refused the
//     call: cbkgate or, in pass-through mode, ChatBotKit), where the
//     default would put the status message, which is not a valid challenge
//     (RFC 7235).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	inner := err
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		inner = hse.Err
	}
	st := status.Convert(inner)
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, &errorHeaderWriter{ResponseWriter: w, st: st}, r, err)
}

type errorHeaderWriter struct {
	http.ResponseWriter
	st *status.Status
}

func (e *errorHeaderWriter) WriteHeader(code int) {
	h := e.Header()
	if code == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", auth.Challenge)
	}
	if v, ok := retryAfter(e.st); ok {
		h.Set("Retry-After", v)
	}
	e.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (e *errorHeaderWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// challengeOn401 adds the one challenge to every 401 next writes: the
// Connect and gRPC-Web routes, where vanguard turns an UNAUTHENTICATED
// from gRPC (ChatBotKit refusing a pass-through secret, say) into a 401 of
// its own.
func challengeOn401(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&challengeWriter{ResponseWriter: w}, r)
	})
}

type challengeWriter struct{ http.ResponseWriter }

func (c *challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", auth.Challenge)
	}
	c.ResponseWriter.WriteHeader(code)
}

// Flush keeps streamed answers streaming through the wrapper.
func (c *challengeWriter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// retryAfter renders the RetryInfo of a RESOURCE_EXHAUSTED or UNAVAILABLE
// status as whole seconds, rounded up so a client never retries early.
func retryAfter(st *status.Status) (string, bool) {
	if st.Code() != codes.ResourceExhausted && st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		ri, ok := d.(*errdetails.RetryInfo)
		if !ok || ri.GetRetryDelay() == nil {
			continue
		}
		delay := ri.GetRetryDelay().AsDuration()
		if delay < 0 {
			return "", false
		}
		return strconv.FormatInt(int64(math.Ceil(delay.Seconds())), 10), true
	}
	return "", false
}

// responseHeaderKey carries the response's header map to streamErrorHandler,
// which the gateway gives no access to the ResponseWriter.
type responseHeaderKey struct{}

// withResponseHeader puts w.Header() in the request context. It wraps the
// gateway directly, so the map is the one the gateway writes to.
func withResponseHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), responseHeaderKey{}, w.Header())
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// streamErrorHandler turns a List failure into the status of the {"error"}
// line. When the failure comes before the first token, the gateway then
// writes the HTTP status, and the Retry-After or challenge set here goes
// out with it; after the first token the headers are gone and net/http
// ignores the change.
func streamErrorHandler(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	if h, ok := ctx.Value(responseHeaderKey{}).(http.Header); ok {
		if v, ok := retryAfter(st); ok {
			h.Set("Retry-After", v)
		}
		if st.Code() == codes.Unauthenticated {
			h.Set("WWW-Authenticate", auth.Challenge)
		}
	}
	return st
}

// routingErrorHandler answers a known path with the wrong method with 405
// (the default maps it to UNIMPLEMENTED and so to 501, which reads as
// "server feature missing" rather than "client used the wrong method").
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	if code == http.StatusMethodNotAllowed {
		errorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        status.Error(codes.Unimplemented, http.StatusText(code)),
		})
		return
	}
	runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
}
