// Package logging builds cbkgate's process logger and writes the lines
// about calls: one line per gRPC call (direct, or through the JSON gateway),
// one per HTTP request refused before it reached gRPC, and the audit line
// of every Create, Update and Delete.
//
// The call log is deliberately narrow: transport, method, status code,
// duration, caller identity, request id, peer, the HTTP route and status of
// a gateway call and, for server streams, how many messages were sent. Request and
// response messages and metadata are never logged (a Create response holds
// a new token's secret value, and authorization metadata holds Bearer
// secrets and API keys); the one exception is X-Forwarded-For (or gRPC's
// x-forwarded-for metadata), logged as forwarded_for, made printable and
// bounded, beside the peer it never replaces.
package logging

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// New builds the process logger writing to w at level, as JSON lines for
// format "json" or logfmt-style text for "text". Any other format gets JSON:
// the configuration has already rejected it. Every line logged with a call's
// context carries its request_id.
func New(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(requestIDHandler{slog.NewTextHandler(w, opts)})
	}
	return slog.New(requestIDHandler{slog.NewJSONHandler(w, opts)})
}

// requestIDHandler adds the request id of the context a line is logged
// with, so that every line about a call can be found by it.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := telemetry.RequestID(ctx); id != "" {
		r.AddAttrs(slog.String(keyRequestID, id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// callMessage is the message of every call log line.
const callMessage = "grpc call"

// Attribute keys of a call log line.
const (
	keyTransport    = "transport"
	keyMethod       = "method"
	keyCode         = "code"
	keyDurationMS   = "duration_ms"
	keyCaller       = "caller"
	keyRequestID    = "request_id"
	keyPeer         = "peer"
	keyForwardedFor = "forwarded_for"
	keyError        = "error"
	keyDetail       = "detail"
	keyMessagesSent = "messages_sent"
	keyHTTPMethod   = "http_method"
	keyRoute        = "route"
	keyStatus       = "status"
)

// Transports, the values of the transport attribute: how the call reached
// cbkgate.
const (
	transportGRPC = "grpc"
	transportHTTP = "http"
)

// unauthenticated stands for the caller of a call that established no
// identity (refused by authentication, or exempt from it: health checks
// and reflection).
const unauthenticated = "unauthenticated"

// Caps on caller- and upstream-influenced strings, so that one call cannot
// write an enormous log line.
const (
	maxErrorMessage = 512
	maxID           = 256
	// maxDetail leaves room for a panic's stack.
	maxDetail = 8 << 10
)

// healthPrefix: load balancers probe health every few seconds; successful
// probes are logged at debug so that they do not drown the calls that
// matter.
const healthPrefix = "/grpc.health.v1.Health/"

// call is what the outer interceptor learns from the inner one.
type call struct{ caller string }

type callKey struct{}

// UnaryInterceptor logs one line per unary call when the handler returns,
// and the audit line of a Create, Update or Delete. trustedPeer identifies
// the in-process gateway's connection (nil: none). Put it before the
// authentication interceptor, so that refused calls are logged and audited
// too, and CallerUnaryInterceptor after it.
func UnaryInterceptor(l *slog.Logger, trustedPeer func(net.Addr) bool) grpc.UnaryServerInterceptor {
	refused := newLineLimiter()
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		c := &call{}
		resp, err := handler(context.WithValue(ctx, callKey{}, c), req)
		logCall(ctx, l, refused, trustedPeer, info.FullMethod, start, err, c, nil)
		audit(ctx, l, info.FullMethod, req, resp, err, c)
		return resp, err
	}
}

// StreamInterceptor logs one line per streaming call when the handler
// returns, with the number of messages sent to the client.
func StreamInterceptor(l *slog.Logger, trustedPeer func(net.Addr) bool) grpc.StreamServerInterceptor {
	refused := newLineLimiter()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		c := &call{}
		cs := &countingStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callKey{}, c)}
		err := handler(srv, cs)
		n := cs.sent.Load()
		logCall(ss.Context(), l, refused, trustedPeer, info.FullMethod, start, err, c, &n)
		return err
	}
}

// CallerUnaryInterceptor and CallerStreamInterceptor go right after the
// authentication interceptors: they pass the caller identity those
// established (auth.Caller) back out to the call and audit lines.
func CallerUnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		noteCaller(ctx)
		return handler(ctx, req)
	}
}

func CallerStreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		noteCaller(ss.Context())
		return handler(srv, ss)
	}
}

func noteCaller(ctx context.Context) {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		c.caller = auth.Caller(ctx)
	}
}

func (c *call) callerOrNone() string {
	if c == nil || c.caller == "" {
		return unauthenticated
	}
	return c.caller
}

// countingStream counts messages sent successfully.
type countingStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent atomic.Int64
}

func (s *countingStream) Context() context.Context { return s.ctx }

func (s *countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.sent.Add(1)
	}
	return err
}

func logCall(ctx context.Context, l *slog.Logger, refused *lineLimiter, trustedPeer func(net.Addr) bool, method string, start time.Time, err error, c *call, sent *int64) {
	st := status.Convert(err)
	code := st.Code()
	level := levelFor(code)
	switch {
	case code == codes.OK && strings.HasPrefix(method, healthPrefix):
		level = slog.LevelDebug
	case apierr.IsClientFault(err):
		level = slog.LevelInfo // the caller's own error
	}
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 13)
	addr, chain, gateway := peerOf(ctx, trustedPeer)
	transport := transportGRPC
	if gateway {
		transport = transportHTTP
	}
	attrs = append(attrs,
		slog.String(keyTransport, transport),
		slog.String(keyMethod, method),
		slog.String(keyCode, code.String()),
		durationMS(time.Since(start)),
		slog.String(keyCaller, c.callerOrNone()),
		slog.String(keyPeer, addr),
	)
	if chain != "" {
		attrs = append(attrs, slog.String(keyForwardedFor, chain))
	}
	if gateway {
		httpMethod, route, ok := telemetry.GatewayRoute(ctx, method)
		if ok {
			attrs = append(attrs, slog.String(keyHTTPMethod, httpMethod), slog.String(keyRoute, route))
		}
		if strings.HasPrefix(route, "/v1/") {
			// The JSON gateway's answer for this code; a stream that already
			// sent tokens has answered 200. (Connect and gRPC-Web answer in
			// their own protocols, so their status is not derived here.)
			status := runtime.HTTPStatusFromCode(code)
			if sent != nil && *sent > 0 {
				status = http.StatusOK
			}
			attrs = append(attrs, slog.Int(keyStatus, status))
		}
	}
	if sent != nil {
		attrs = append(attrs, slog.Int64(keyMessagesSent, *sent))
	}
	if code != codes.OK {
		attrs = append(attrs, slog.String(keyError, truncate(st.Message(), maxErrorMessage)))
		// What the caller was not told (an upstream address, a parse
		// error), already cleaned of secrets where it was made.
		if d := apierr.LogDetail(err); d != "" {
			attrs = append(attrs, slog.String(keyDetail, truncate(d, maxDetail)))
		}
	}
	if isRefusal(code) || apierr.IsClientFault(err) {
		refused.Log(ctx, l, level, callMessage, attrs...)
		return
	}
	l.LogAttrs(ctx, level, callMessage, attrs...)
}

// isRefusal reports whether a call ending with code was refused (no or
// bad credentials, a request that does not validate, a rate or stream
// limit, an unknown method) or cancelled by its client (a client can open
// and reset calls as fast as it refused ones, with valid credentials too):
// such lines are rate-limited, see lineLimiter. Audit lines never are.
func isRefusal(code codes.Code) bool {
	switch code {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.ResourceExhausted, codes.Unimplemented,
		codes.Canceled:
		return true
	}
	return false
}

// durationMS is a duration in milliseconds with microsecond precision: a
// unit a person reads at a glance.
func durationMS(d time.Duration) slog.Attr {
	return slog.Float64(keyDurationMS, float64(d.Microseconds())/1000)
}

// peerOf returns the address to log as the caller's: the one cbkgate's
// listener accepted. A call from the trusted in-process hop came over
// HTTP, and the HTTP side handed that address over as metadata
// (telemetry.PeerMetadata), believed from that hop alone. forwardedFor is
// the X-Forwarded-For the client sent, made printable and bounded: logged
// beside the peer, never instead of it.
func peerOf(ctx context.Context, trustedPeer func(net.Addr) bool) (addr, forwardedFor string, viaHTTP bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", "", false
	}
	addr = p.Addr.String()
	if trustedPeer == nil || !trustedPeer(p.Addr) {
		return addr, telemetry.ForwardedFor(metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")), false
	}
	if v := metadata.ValueFromIncomingContext(ctx, telemetry.PeerMetadata); len(v) == 1 && v[0] != "" {
		addr = truncate(v[0], maxID)
	}
	if v := metadata.ValueFromIncomingContext(ctx, telemetry.ForwardedForMetadata); len(v) == 1 {
		forwardedFor = truncate(v[0], telemetry.MaxForwardedFor)
	}
	return addr, forwardedFor, true
}

// TruncateID caps an id for a log line, as call and audit lines do.
func TruncateID(id string) string { return truncate(id, maxID) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// levelFor is the level a call ending with code is logged at: Info for success
// and for the caller's own errors, Warn for conditions that are transient
// or about capacity, Error for failures that point at a bug or at data
// loss.
func levelFor(code codes.Code) slog.Level {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return slog.LevelWarn
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
