package telemetry

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Route patterns of the HTTP listener, the values of the route label.
const (
	RouteTokens = "/v1/users/{user_id}/tokens"
	RouteToken  = "/v1/users/{user_id}/tokens/{token_id}"
	// RouteConsole is every path of the token console (its page and files).
	RouteConsole = "/console/"
	routeOther   = "other"
)

// fixedRoutes are the routes whose path is their pattern: health, the
// OpenAPI document, and TokenService's Connect and gRPC-Web paths.
var fixedRoutes = map[string]bool{
	"/healthz":                              true,
	"/readyz":                               true,
	"/openapi.json":                         true,
	"/cbkgate.token.v1.TokenService/List":   true,
	"/cbkgate.token.v1.TokenService/Create": true,
	"/cbkgate.token.v1.TokenService/Update": true,
	"/cbkgate.token.v1.TokenService/Delete": true,
}

// routeOf is the route pattern of an HTTP request's path, or "other": never
// the raw path, which holds user and token ids.
func routeOf(r *http.Request) string {
	p := r.URL.EscapedPath()
	if fixedRoutes[p] {
		return p
	}
	if p == "/console" || strings.HasPrefix(p, "/console/") {
		return RouteConsole
	}
	rest, ok := strings.CutPrefix(p, "/v1/users/")
	if !ok {
		return routeOther
	}
	user, rest, _ := strings.Cut(rest, "/")
	if user == "" {
		return routeOther
	}
	if rest == "tokens" {
		return RouteTokens
	}
	if token, ok := strings.CutPrefix(rest, "tokens/"); ok && token != "" && !strings.Contains(token, "/") {
		return RouteToken
	}
	return routeOther
}

// HTTPRequest is what the HTTP middleware tells OnHTTPRefused about a
// request that was answered without reaching the gRPC server.
type HTTPRequest struct {
	Request  *http.Request
	Route    string
	Status   int
	Duration time.Duration
	// Caller is the identity the auth middleware established, "" when the
	// request was refused before or by authentication.
	Caller string
	// Reason is why authentication refused it, when it did, or what the
	// layer that noted the refusal (NoteHTTPRefusal) said.
	Reason string
	// ForwardedFor is the request's X-Forwarded-For (see ForwardedFor),
	// "" without one. The peer is Request.RemoteAddr.
	ForwardedFor string
	// Code is the gRPC code the request was refused with when the layer
	// that refused it noted one (NoteHTTPRefusal); OK when only the HTTP
	// status tells.
	Code codes.Code
}

// httpCall is the state the HTTP middleware shares with the layers inside
// it, through the request context.
type httpCall struct {
	// peer and forwardedFor are set when the call is made, and only read
	// after.
	peer, forwardedFor string
	reachedGRPC        atomic.Bool
	caller             atomic.Pointer[string]
	reason             atomic.Pointer[string]
	refusedWith        atomic.Uint32 // a codes.Code; 0 (OK) when none was noted
}

type httpCallKey struct{}

func httpCallFrom(ctx context.Context) *httpCall {
	c, _ := ctx.Value(httpCallKey{}).(*httpCall)
	return c
}

// NoteHTTPCaller records the caller the auth middleware established for
// the HTTP request of ctx; a refusal line after it names the caller.
func NoteHTTPCaller(ctx context.Context, caller string) {
	if c := httpCallFrom(ctx); c != nil && caller != "" {
		c.caller.Store(&caller)
	}
}

// NoteHTTPAuthRefused records why authentication refused the HTTP request
// of ctx, for its refusal line.
func NoteHTTPAuthRefused(ctx context.Context, reason string) {
	if c := httpCallFrom(ctx); c != nil {
		c.reason.Store(&reason)
	}
}

// NoteHTTPRefusal records that a layer inside refused the HTTP request of
// ctx with code, and why. The request is then reported as refused (with
// that code) whatever the HTTP status of the answer: gRPC-Web and Connect
// streams answer 200 and carry the status in the body.
func NoteHTTPRefusal(ctx context.Context, code codes.Code, why string) {
	if c := httpCallFrom(ctx); c != nil && code != codes.OK {
		c.refusedWith.Store(uint32(code))
		c.reason.Store(&why)
	}
}

// HTTPOptions configures the HTTP listener's middleware.
type HTTPOptions struct {
	Metrics *Metrics // nil: no metrics
	Tracing *Tracing // nil: tracing off
	// OnRefused, if set, is called for every request answered with a status
	// of 400 or more that never reached the gRPC server (the gateway, CORS,
	// authentication, body checks or the router refused it), except
	// /readyz's 503 while draining, which is a probe's answer.
	OnRefused func(HTTPRequest)
}

// HTTPMiddleware wraps the whole HTTP listener: it gives each request its
// request id (the X-Request-Id answer header, and the request header the
// gateway forwards to the gRPC server as x-request-id metadata), its trace
// context as the traceparent the gRPC call continues (the HTTP server
// span's; with tracing off the caller's, if it sent one), counts it in
// cbkgate_http_requests_total and the duration histogram by route
// pattern, and reports refusals. Put the tracing handler outside it.
func HTTPMiddleware(opts HTTPOptions, next http.Handler) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := opts.Tracing.withTraceContext(r.Context(), requestCarrier(r.Header))
		id := chooseRequestID(ctx, r.Header.Get(RequestIDHeader))
		ctx = withRequestID(ctx, id)
		call := &httpCall{peer: r.RemoteAddr}
		if xff, ok := r.Header["X-Forwarded-For"]; ok {
			call.forwardedFor = ForwardedFor(xff)
			// Nothing reads it after this (see GatewayPeerMetadata); the
			// gateway would copy all of it, however long, onto the hop.
			delete(r.Header, "X-Forwarded-For")
		}
		ctx = context.WithValue(ctx, httpCallKey{}, call)

		// The request's own headers are what the gateway turns into gRPC
		// metadata: the chosen id replaces whatever came in, and with
		// tracing on the HTTP server span's trace context does too (off,
		// the caller's traceparent crosses as it came). They are changed
		// in place: nothing reads the client's originals after this.
		r = r.WithContext(ctx)
		dropMetadataHeaders(r.Header)
		route := routeOf(r)
		r.Header[RequestIDHeader] = []string{id}
		opts.Tracing.injectOn(ctx, propagation.HeaderCarrier(r.Header))
		w.Header().Set(RequestIDHeader, id)

		sw := &statusWriter{ResponseWriter: w, requestID: id}
		next.ServeHTTP(sw, r)

		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		if opts.Metrics != nil {
			opts.Metrics.observeHTTP(r.Method, route, status, d.Seconds())
		}
		refusedWith := codes.Code(call.refusedWith.Load())
		if opts.OnRefused != nil && (status >= 400 || refusedWith != codes.OK) && !call.reachedGRPC.Load() &&
			!(route == "/readyz" && status == http.StatusServiceUnavailable) {
			ev := HTTPRequest{Request: r, Route: route, Status: status, Duration: d, ForwardedFor: call.forwardedFor, Code: refusedWith}
			if p := call.caller.Load(); p != nil {
				ev.Caller = *p
			}
			if p := call.reason.Load(); p != nil {
				ev.Reason = *p
			}
			opts.OnRefused(ev)
		}
	})
	return opts.Tracing.httpHandler(h)
}

// dropMetadataHeaders removes the headers grpc-gateway would turn into a
// second value of the metadata set here (its Grpc-Metadata- prefix), so
// that no client can put its own value next to cbkgate's.
func dropMetadataHeaders(h http.Header) {
	const prefix = "grpc-metadata-"
	for k := range h {
		if len(k) <= len(prefix) || !strings.EqualFold(k[:len(prefix)], prefix) {
			continue // most headers: no lower-cased copy of the name
		}
		rest := strings.ToLower(k[len(prefix):])
		switch {
		case rest == RequestIDMetadata, rest == "traceparent", rest == "tracestate", strings.HasPrefix(rest, "x-cbkgate-"):
			delete(h, k)
		}
	}
}

// statusWriter records the status code. It keeps Flush (the streamed List
// needs it) and Unwrap (for http.ResponseController).
//
// It also keeps X-Request-Id to the one value: a layer inside may copy the
// gRPC call's x-request-id header metadata into the answer too (Connect
// and gRPC-Web do).
type statusWriter struct {
	http.ResponseWriter
	status    int
	requestID string
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
		s.Header()[RequestIDHeader] = []string{s.requestID}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// GatewayUnaryInterceptor and GatewayStreamInterceptor go on the gateway's
// own gRPC connection. They mark the HTTP request as having reached the
// gRPC server, whose interceptors then log and audit it, so the HTTP
// middleware does not report it as refused.
func GatewayUnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		markReached(ctx)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func GatewayStreamInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		markReached(ctx)
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// MarkReachedGRPC records that the HTTP request of ctx is being passed to
// the gRPC server (the Connect and gRPC-Web routes, which do not use the
// gateway's grpc.ClientConn).
func MarkReachedGRPC(ctx context.Context) { markReached(ctx) }

// ReachedGRPC reports whether the HTTP request of ctx was passed to the
// gRPC server: an error after that is the call's, not the HTTP layer's.
func ReachedGRPC(ctx context.Context) bool {
	c := httpCallFrom(ctx)
	return c != nil && c.reachedGRPC.Load()
}

func markReached(ctx context.Context) {
	if c := httpCallFrom(ctx); c != nil {
		c.reachedGRPC.Store(true)
	}
}

// requestCarrier reads a trace context from request headers. It is
// propagation.HeaderCarrier, minus the canonicalization (an allocation) of
// the lower-case names the propagators ask for on every request.
type requestCarrier http.Header

func (c requestCarrier) Get(k string) string {
	var v []string
	switch k {
	case "traceparent":
		v = c["Traceparent"]
	case "tracestate":
		v = c["Tracestate"]
	default:
		return http.Header(c).Get(k)
	}
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (c requestCarrier) Set(k, v string) { http.Header(c).Set(k, v) }

func (c requestCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }
