// Package httpapi is cbkgate's HTTP listener: the JSON API (grpc-gateway in
// front of cbkgate's own gRPC server), the health endpoints and the OpenAPI
// document.
//
// The gateway calls TokenService over a real gRPC connection rather than
// in-process, so every HTTP call passes the same interceptors (auth,
// validation, logging) as a gRPC call and behaves exactly like one.
//
// Wire decisions, all visible to clients:
//   - JSON uses the proto field names (user_id, create_time), omits unset
//     fields and refuses unknown fields with 400, so a typo in a field name
//     is an error rather than a silently ignored update.
//   - List answers newline-delimited JSON (Content-Type application/x-ndjson),
//     one {"result": ListResponse} object per token, flushed as each token
//     arrives. A failure ends the stream with one {"error": google.rpc.Status}
//     line. If the failure comes before the first token, the response also
//     carries the matching HTTP status (e.g. 404); after it, the status is
//     already 200 and the error line is the only signal. With an Accept
//     naming text/event-stream, the same stream is Server-Sent Events
//     (sse.go), resumable with Last-Event-ID.
//   - Every other error is a JSON google.rpc.Status, details included, with
//     the HTTP status of its gRPC code. RESOURCE_EXHAUSTED (or UNAVAILABLE)
//     with a google.rpc.RetryInfo also sets Retry-After, in whole seconds
//     rounded up; UNAUTHENTICATED sets the one challenge, auth.Challenge
//     (Bearer realm="cbkgate"). A known
//     path with the wrong method is 405, an unknown one 404.
//   - Request bodies over 1 MiB are refused with 413 before they reach gRPC.
//   - Every refusal of the HTTP layer is a JSON google.rpc.Status with
//     cbkgate's ErrorInfo: a body or query the gateway cannot decode is 400
//     INVALID_ARGUMENT with a google.rpc.BadRequest naming the fields
//     (decode.go), an unknown path 404 NOT_FOUND, a known path with another
//     method 405 METHOD_NOT_ALLOWED (routes.go), 413 PAYLOAD_TOO_LARGE,
//     415 UNSUPPORTED_MEDIA_TYPE.
//   - Connect and gRPC-Web clients are served under
//     /cbkgate.token.v1.TokenService/ (internal/connectapi), behind the same
//     CORS, authentication and body cap.
//   - /openapi.json answers CORS like the API.
//   - Browsers: a request from an origin not on the CORS list is 403, on
//     every path, and a POST or PATCH body that is not JSON is 415 (see
//     browser.go).
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/gen/openapiv2"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/connectapi"
	"github.com/cbkgate/cbkgate/internal/console"
	"github.com/cbkgate/cbkgate/internal/jsonbody"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// Options configures the HTTP handler.
type Options struct {
	// Conn is a connection to cbkgate's own gRPC server.
	Conn *grpc.ClientConn
	// Ready reports whether the server takes new calls; /readyz answers 503
	// while it returns false (draining). Nil means always ready.
	Ready func() bool
	// CORSOrigins are the origins allowed cross-origin access to the API
	// routes: "*" alone allows any origin; empty sends no CORS headers at all.
	CORSOrigins []string
	// Auth, if not nil, wraps the API routes (not /healthz, /readyz,
	// /openapi.json, nor CORS preflights).
	Auth func(http.Handler) http.Handler
	// Connect, if not nil, serves the Connect and gRPC-Web routes under
	// connectapi.Prefix, behind the same CORS, Auth and body cap as the
	// JSON API.
	Connect http.Handler
	// AfterAuth, if not nil, wraps the API routes inside Auth: it sees
	// only requests that authentication let through.
	AfterAuth func(http.Handler) http.Handler
	// Metadata, if not nil, adds gRPC metadata to every gateway call (the
	// caller identity Auth established).
	Metadata func(context.Context, *http.Request) metadata.MD
	// Console serves the token console under /console/ (internal/console):
	// public files, outside CORS and Auth (inside the origin rule, like
	// every path); the calls the page makes carry the operator's key like
	// any client's.
	Console bool
}

// maxBodyBytes caps request bodies. Token requests are small; the cap keeps
// one client from making the process buffer arbitrary amounts of JSON.
const maxBodyBytes = 1 << 20

// MaxBodyBytes is maxBodyBytes for the parts that must agree with it (the
// Connect transcoder's cap on one message).
const MaxBodyBytes = maxBodyBytes

// ndjsonContentType is the Content-Type of a streamed List.
const ndjsonContentType = "application/x-ndjson"

// New returns the handler of the HTTP listener: the gateway under /v1/,
// GET /healthz (200 "ok" while the process runs), GET /readyz (200 while
// Ready(), else 503) and GET /openapi.json (the OpenAPI v2 document).
func New(ctx context.Context, opts Options) (http.Handler, error) {
	if opts.Conn == nil {
		return nil, errors.New("httpapi: Options.Conn is nil")
	}
	cors, err := newCORS(opts.CORSOrigins)
	if err != nil {
		return nil, err
	}
	guard, err := newOriginGuard(opts.CORSOrigins)
	if err != nil {
		return nil, err
	}
	ready := opts.Ready
	if ready == nil {
		ready = func() bool { return true }
	}

	m := newMarshaler()
	muxOpts := []runtime.ServeMuxOption{
		// The wildcard is the only entry in the registry, so this marshaler
		// serves every request whatever its Accept or Content-Type.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, m),
		// Picked only for a List that asked for SSE (see withSSE).
		runtime.WithMarshalerOption(sseContentType, sseMarshaler{m}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithStreamErrorHandler(streamErrorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithIncomingHeaderMatcher(incomingHeaderMatcher),
		runtime.WithOutgoingHeaderMatcher(outgoingHeaderMatcher),
		runtime.WithForwardResponseOption(streamContentType),
		// The fallback lets a form-encoded POST (a CORS "simple request"
		// that needs no preflight) run a GET route, and with it
		// X-HTTP-Method-Override. No client of this API needs either.
		runtime.WithDisablePathLengthFallback(),
	}
	muxOpts = append(muxOpts, runtime.WithMetadata(hopMetadata(opts.Metadata)))
	gw := runtime.NewServeMux(muxOpts...)
	if err := tokenv1.RegisterTokenServiceHandler(ctx, gw, opts.Conn); err != nil {
		return nil, fmt.Errorf("httpapi: register gateway: %w", err)
	}

	rt := router{gw: gw, m: m}
	var api http.Handler = withSSE(withResponseHeader(gw))
	api = limitBody(gw, m, checkQueries(rt, api))
	if opts.AfterAuth != nil {
		api = opts.AfterAuth(api)
	}
	if opts.Auth != nil {
		api = opts.Auth(api)
	}
	api = requireJSONBody(gw, m, api)
	api = cors.wrap(api)

	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	if opts.Connect != nil {
		var rpc http.Handler = challengeOn401(capBody(opts.Connect))
		if opts.AfterAuth != nil {
			rpc = opts.AfterAuth(rpc)
		}
		if opts.Auth != nil {
			// Auth's refusals reach Connect and gRPC-Web clients in their
			// own protocol, details included.
			if rpc, err = connectapi.Guard(opts.Auth, rpc); err != nil {
				return nil, fmt.Errorf("httpapi: connect: %w", err)
			}
		}
		// The body rule does not hold here: Connect and gRPC-Web name
		// their own content types, and vanguard refuses any other.
		mux.Handle(connectapi.Prefix, cors.wrap(rt.rpcRoutes(rpc)))
	}
	mux.Handle("/healthz", rt.only("GET, HEAD", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	}))
	mux.Handle("/readyz", rt.only("GET, HEAD", func(w http.ResponseWriter, _ *http.Request) {
		if ready() {
			plain(w, http.StatusOK, "ok")
			return
		}
		plain(w, http.StatusServiceUnavailable, "draining")
	}))
	// The document answers CORS like the API, so that a page on an allowed
	// origin (an API explorer, a client generator) can read it.
	mux.Handle("/openapi.json", cors.wrap(rt.only("GET, HEAD", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiv2.JSON)
	})))
	if opts.Console {
		console.Register(mux, func(h http.HandlerFunc) http.Handler { return rt.only("GET, HEAD", h) })
	}
	mux.HandleFunc("/", rt.notFound)
	// The origin rule holds for every path, the health probes included
	// (a probe from kubelet or a load balancer sends no Origin).
	h := guard.wrap(gw, m, canonicalPaths(gw, m, mux))
	if opts.Console {
		h = consoleCSP(h)
	}
	return h, nil
}

// consoleCSP puts the console's Content-Security-Policy on every answer
// under its path, the refusals (404, 405, 400) included: a page the
// browser shows from the console's origin and path runs under the policy,
// whoever wrote it.
func consoleCSP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, console.Prefix) {
			w.Header().Set("Content-Security-Policy", console.CSP)
		}
		next.ServeHTTP(w, r)
	})
}

// hopMetadata is the gateway's metadata annotator: the address the
// listener accepted, for the call's log line (the in-process hop's own
// peer address names no one), and what extra adds. One annotator, not
// two: the gateway joins their answers into a new map on every call.
func hopMetadata(extra func(context.Context, *http.Request) metadata.MD) func(context.Context, *http.Request) metadata.MD {
	if extra == nil {
		return telemetry.GatewayPeerMetadata
	}
	return func(ctx context.Context, r *http.Request) metadata.MD {
		md := telemetry.GatewayPeerMetadata(ctx, r)
		if md == nil {
			return extra(ctx, r)
		}
		for k, v := range extra(ctx, r) {
			md[k] = append(md[k], v...)
		}
		return md
	}
}

// plain writes a short, uncacheable text answer: probes must see the state
// now, not a cached one.
func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

// marshaler is the gateway's JSON marshaler with the NDJSON media type for
// streams. The delimiter is JSONPb's own "\n".
type marshaler struct {
	runtime.JSONPb
}

func newMarshaler() *marshaler {
	return &marshaler{JSONPb: runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{UseProtoNames: true},
		// DiscardUnknown stays false: an unknown field is a client bug,
		// answered with 400 rather than ignored.
		UnmarshalOptions: jsonbody.Options,
	}}
}

// StreamContentType is called by runtime.ForwardResponseStream.
func (*marshaler) StreamContentType(any) string { return ndjsonContentType }

// streamContentType is a forward-response option. ForwardResponseStream calls
// options once with a nil message before the first token; setting the type
// there makes an empty listing (200, no lines) application/x-ndjson too.
// Unary responses always pass a message, so they are untouched.
func streamContentType(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if m == nil {
		if isSSE(ctx) {
			w.Header().Set("Content-Type", sseContentType)
		} else {
			w.Header().Set("Content-Type", ndjsonContentType)
		}
	}
	return nil
}

// incomingHeaderMatcher lets through, of all the HTTP headers, only the
// metadata cbkgate needs (README "Limits"). The
// gateway forwards Authorization as "authorization" metadata on its own
// (the default matcher would also copy it as "grpcgateway-authorization",
// a second copy of a secret), and sets x-forwarded-for and
// x-forwarded-host itself. Anything else a client sends (Grpc-Metadata-*,
// cookies, any other header) stays out of gRPC: the default matcher
// forwarded every Grpc-Metadata-* header, and grpclog wrote a line for
// each one that was not a valid metadata key (one request with 1,800 of
// them wrote 1,801 lines).
//
// The request id and the W3C trace context go to the gRPC server as the
// metadata it reads them from (x-request-id, traceparent, tracestate), so
// that the HTTP request and its gRPC call share one id and one trace. The
// request id header is the one cbkgate chose (see telemetry.HTTPMiddleware).
func incomingHeaderMatcher(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case telemetry.RequestIDHeader, "Traceparent", "Tracestate":
		return strings.ToLower(key), true
	}
	return "", false
}

// canonicalPaths answers 400 INVALID_ARGUMENT for a request path that
// http.ServeMux would redirect (a "." or ".." segment, raw or escaped, or
// an empty one) or that is not valid UTF-8 once unescaped (no proto string
// can carry it, so the gateway failed with 500). Contract: bad input is a
// clear error, never a 5xx and never a redirect.
func canonicalPaths(gw *runtime.ServeMux, m runtime.Marshaler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		var bad string
		switch {
		case !utf8.ValidString(p):
			bad = "the request path is not valid UTF-8"
		case p != cleanPath(p):
			bad = "the request path has an empty, \".\" or \"..\" segment"
		case !utf8.ValidString(r.URL.RawQuery) || !validQueryUTF8(r):
			bad = "the query is not valid UTF-8"
		}
		if bad == "" {
			next.ServeHTTP(w, r)
			return
		}
		runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
			HTTPStatus: http.StatusBadRequest,
			Err:        apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, bad),
		})
	})
}

// cleanPath is the path http.ServeMux serves without a redirect.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func validQueryUTF8(r *http.Request) bool {
	for k, vs := range r.URL.Query() {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// checkQueries refuses, with 400, a query the gateway would not read in
// full (see checkQuery).
func checkQueries(rt router, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := checkQuery(r); st != nil {
			rt.refuse(w, r, http.StatusBadRequest, st.Err())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// capBody bounds the bytes a Connect or gRPC-Web request body may carry.
// Unlike limitBody it does not read ahead: the transcoder streams the body
// and answers an oversized message in the client's own protocol.
func capBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes+connectEnvelopeBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// connectEnvelopeBytes is the framing one message may add on the Connect
// and gRPC-Web routes (a 5-byte envelope, and an end-of-stream envelope).
const connectEnvelopeBytes = 64

// replayedHeader marks a Create answered from its request_id's record
// (the service's response metadata of the same name).
const replayedHeader = "idempotent-replayed"

// outgoingHeaderMatcher is the gateway default minus x-request-id: the HTTP
// answer already carries the id as X-Request-Id, and a second copy as
// Grpc-Metadata-X-Request-Id would only repeat it.
func outgoingHeaderMatcher(key string) (string, bool) {
	if strings.EqualFold(key, telemetry.RequestIDMetadata) || strings.EqualFold(key, "content-type") {
		// The request id has its own header; content-type is the hop's
		// gRPC framing (application/grpc), nothing an HTTP client can use.
		return "", false
	}
	if strings.EqualFold(key, replayedHeader) {
		// A header of the API itself, named the same on every transport.
		return replayedHeader, true
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// limitBody reads the request body up front, up to maxBodyBytes, so an
// oversized body becomes 413 here; inside the gateway a truncated read would
// only be reported as a JSON syntax error (400).
func limitBody(gw *runtime.ServeMux, m runtime.Marshaler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		tooLarge := func() {
			runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusRequestEntityTooLarge,
				Err: apierr.New(codes.ResourceExhausted, apierr.ReasonPayloadTooLarge,
					fmt.Sprintf("request body larger than %d bytes", maxBodyBytes)),
			})
		}
		if r.ContentLength > maxBodyBytes {
			tooLarge()
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		_ = r.Body.Close()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The server's body deadline passed (see internal/app).
			runtime.HTTPError(r.Context(), gw, m, w, r, &runtime.HTTPStatusError{
				HTTPStatus: http.StatusRequestTimeout,
				Err:        apierr.New(codes.DeadlineExceeded, apierr.ReasonBodyTimeout, "the request body did not arrive in time"),
			})
			return
		case err != nil:
			// The client went away or broke off its body; what the read
			// error says (addresses) is none of the answer's business.
			runtime.HTTPError(r.Context(), gw, m, w, r,
				apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, "the request body could not be read"))
			return
		}
		if len(body) > maxBodyBytes {
			tooLarge()
			return
		}
		r.Body = newRequestBody(body)
		next.ServeHTTP(w, r)
	})
}
