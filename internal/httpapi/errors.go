package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/telemetry"
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
//
// Errors the gateway made itself, before any call, get cbkgate's shape
// first (see gatewayError).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	err = gatewayError(r, err)
	if st, ok := status.FromError(err); ok {
		if cut := hopCut(st); cut != st {
			err = cut.Err()
		}
	}
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
	st := hopCut(status.Convert(err))
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

// routingErrorHandler answers the gateway's routing failures in cbkgate's
// shape: a known path with the wrong method is 405 METHOD_NOT_ALLOWED
// with Allow (the default maps it to UNIMPLEMENTED and so to 501, which
// reads as "server feature missing" rather than "client used the wrong
// method"), an unknown path 404 NOT_FOUND.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	var err error
	switch code {
	case http.StatusMethodNotAllowed:
		allow := restAllow[restRoute(r.URL.EscapedPath())]
		if allow != "" {
			w.Header().Set("Allow", allow)
		}
		err = methodNotAllowedError(allow)
	case http.StatusNotFound:
		err = notFoundError()
	case http.StatusBadRequest:
		err = apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, "the request path could not be read")
	default:
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
		return
	}
	errorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: code, Err: err})
}

// gatewayError is err, or, when the gateway refused the request before any
// call because it could not decode it, that refusal in cbkgate's shape:
// ErrorInfo INVALID_ARGUMENT, a message in words rather than a Go error's
// text, and a BadRequest naming each bad field when there are fields to
// name. (The generated handlers keep only an error's text, as an
// INVALID_ARGUMENT status without details; the body decoder leaves its
// full answer on the request body, see requestBody.)
func gatewayError(r *http.Request, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument || len(st.Proto().GetDetails()) > 0 ||
		telemetry.ReachedGRPC(r.Context()) {
		return err
	}
	if failure := decodeFailure(r); failure != nil {
		return failure.Err()
	}
	msg := "the request could not be decoded"
	if strings.HasPrefix(st.Message(), "invalid grpc-timeout") {
		msg = "the Grpc-Timeout header is not a valid timeout"
	}
	return apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg)
}

// hopCut is the status of a call whose in-process connection to the gRPC
// server broke under it, which happens only as cbkgate shuts down and cuts
// off what is still running at --shutdown-timeout. grpc-go's client then
// reports UNAVAILABLE in its own words ("closing transport due to: ...
// received prior goaway"), without details; every UNAVAILABLE the service
// itself answers carries an ErrorInfo. Any other status is st itself.
func hopCut(st *status.Status) *status.Status {
	if st.Code() != codes.Unavailable || len(st.Proto().GetDetails()) > 0 {
		return st
	}
	return apierr.Status(codes.Unavailable, apierr.ReasonShuttingDown,
		"cbkgate cut this call off as it shut down; repeat it (another replica will take it)")
}
