package telemetry

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// listMethod is the one method whose sent messages are tokens.
const listMethod = "/cbkgate.token.v1.TokenService/List"

// GRPC is what the gRPC server needs from telemetry.
type GRPC struct {
	Metrics *Metrics // nil: no metrics
	Tracing *Tracing // nil: tracing off
	// Gateway reports whether a peer is cbkgate's own in-process HTTP
	// side, whose answer carries X-Request-Id already (nil: none is).
	Gateway func(net.Addr) bool
}

// ServerOptions are the gRPC server's options: the tracing stats handler
// when tracing is on.
func (g GRPC) ServerOptions() []grpc.ServerOption {
	if h := g.Tracing.serverHandler(); h != nil {
		return []grpc.ServerOption{grpc.StatsHandler(h)}
	}
	return nil
}

// UnaryInterceptor goes first in the server's chain, so that calls refused
// by later interceptors (authentication, rate limits) are counted and have
// a request id: the gRPC server metrics (see grpcServerMetrics), the
// request id (see callContext) and the cbkgate counters read from the
// final status.
func (g GRPC) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		var series *methodSeries
		if g.Metrics != nil {
			series = g.Metrics.grpc.series(info.FullMethod, grpcUnary)
			series.started.Inc()
			series.received.Inc()
		}
		ctx = g.callContext(ctx)
		if !g.fromGateway(ctx) {
			_ = grpc.SetHeader(ctx, metadata.MD{RequestIDMetadata: {RequestID(ctx)}})
		}
		resp, err := handler(ctx, req)
		if series != nil {
			if err == nil {
				series.sent.Inc()
			}
			g.Metrics.grpc.done(series, err, start)
		}
		g.Metrics.observeStatus(err)
		return resp, err
	}
}

// StreamInterceptor: UnaryInterceptor for streams; each message received
// and sent counts, and List's sent messages count as tokens sent too.
func (g GRPC) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		s := &callStream{ServerStream: ss}
		if g.Metrics != nil {
			s.series = g.Metrics.grpc.series(info.FullMethod, methodType(info.IsClientStream, info.IsServerStream))
			s.series.started.Inc()
			if info.FullMethod == listMethod {
				s.tokens = g.Metrics.listTokensSent
			}
		}
		s.ctx = g.callContext(ss.Context())
		if !g.fromGateway(s.ctx) {
			_ = ss.SetHeader(metadata.MD{RequestIDMetadata: {RequestID(s.ctx)}})
		}
		err := handler(srv, s)
		if s.series != nil {
			g.Metrics.grpc.done(s.series, err, start)
		}
		g.Metrics.observeStatus(err)
		return err
	}
}

// callContext gives the call its trace context (tracing off: the caller's
// traceparent, if it sent one) and its request id: the incoming
// x-request-id when valid, else the trace id, else a new one.
func (g GRPC) callContext(ctx context.Context) context.Context {
	ctx = g.Tracing.withTraceContext(ctx, incomingCarrier{ctx})
	var incoming string
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDMetadata); len(v) > 0 {
		incoming = v[0]
	}
	return withRequestID(ctx, chooseRequestID(ctx, incoming))
}

// fromGateway: the call came over HTTP through cbkgate itself, whose HTTP
// middleware puts the request id on the answer; header metadata with it
// would only be dropped again (and costs a header per call on the hop).
func (g GRPC) fromGateway(ctx context.Context) bool {
	if g.Gateway == nil {
		return false
	}
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && g.Gateway(p.Addr)
}

// callStream carries the call's context, and counts the messages it
// receives and sends (series nil: metrics off) and the tokens List sends.
type callStream struct {
	grpc.ServerStream
	ctx    context.Context
	series *methodSeries
	tokens prometheus.Counter
}

func (s *callStream) Context() context.Context { return s.ctx }

func (s *callStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil && s.series != nil {
		s.series.sent.Inc()
		if s.tokens != nil {
			s.tokens.Inc()
		}
	}
	return err
}

func (s *callStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.series != nil {
		s.series.received.Inc()
	}
	return err
}

// observeStatus counts, from a call's final status, what cbkgate refused
// itself: rate-limited calls, calls no grant allows, and authentication
// failures. Reading the
// status (rather than hooking the limiter and the authenticator) counts
// every refusal exactly once, whichever layer made it. Errors from
// ChatBotKit carry its own domain and are not counted here.
func (m *Metrics) observeStatus(err error) {
	if m == nil || err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		return
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		if reason, ours := cbkgateReason(st); ours && reason == apierr.ReasonRateLimited {
			m.rateLimited.Inc()
		}
	case codes.PermissionDenied:
		if info := cbkgateErrorInfo(st); info != nil && info.GetReason() == apierr.ReasonPermissionDenied {
			m.permissionDenied.WithLabelValues(deniedMethodLabel(info.GetMetadata()["method"])).Inc()
		}
	case codes.Unauthenticated:
		reason, ours := cbkgateReason(st)
		if !ours {
			if upstreamError(st) {
				return
			}
			// A refusal without an ErrorInfo: only cbkgate's own
			// authenticator makes those.
			reason = authReasonFromMessage(st.Message())
		}
		m.AuthFailure(reason)
	}
}

// cbkgateErrorInfo returns the ErrorInfo of a status cbkgate made itself,
// nil for any other.
func cbkgateErrorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if ei.GetDomain() == apierr.Domain {
				return ei
			}
			return nil
		}
	}
	return nil
}

// deniedMethodLabel keeps the method label to the four methods grants name
// (the operations' names), whatever a status carries.
func deniedMethodLabel(m string) string {
	for _, op := range upstreamOperations {
		if m == op {
			return m
		}
	}
	return "other"
}

// cbkgateReason returns the ErrorInfo reason of a status cbkgate made
// itself.
func cbkgateReason(st *status.Status) (string, bool) {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason(), ei.GetDomain() == apierr.Domain
		}
	}
	return "", false
}

func upstreamError(st *status.Status) bool {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetDomain() != apierr.Domain
		}
	}
	return false
}

// authReasonFromMessage sorts an authentication refusal that carries no
// ErrorInfo: no credential at all, or one that is wrong or malformed.
func authReasonFromMessage(msg string) string {
	if strings.HasPrefix(msg, "missing") {
		return "MISSING_CREDENTIALS"
	}
	return "INVALID_CREDENTIALS"
}

// incomingCarrier reads a trace context from a call's incoming metadata,
// key by key, without copying all of it.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(k string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (incomingCarrier) Set(string, string) {} // incoming metadata is read-only

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	out := make([]string, 0, len(md))
	for k := range md {
		out = append(out, k)
	}
	return out
}
