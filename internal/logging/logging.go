// Package logging builds cbkgate's process logger and logs one line per
// gRPC call.
//
// The call log is deliberately narrow: method, status code, duration, peer
// and, for server streams, how many messages were sent. Request and
// response messages and metadata are never logged (a Create response holds
// a new token's secret value, and authorization metadata holds Bearer
// secrets and API keys); the one exception is x-forwarded-for on calls from
// the trusted in-process gateway, which names the real HTTP caller.
package logging

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// New builds the process logger writing to w at level, as JSON lines for
// format "json" or logfmt-style text for "text". Any other format gets JSON:
// the configuration has already rejected it.
func New(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// callMessage is the message of every call log line.
const callMessage = "grpc call"

// Attribute keys of a call log line.
const (
	keyMethod       = "method"
	keyCode         = "code"
	keyDuration     = "duration"
	keyPeer         = "peer"
	keyForwardedFor = "forwarded_for"
	keyError        = "error"
	keyMessagesSent = "messages_sent"
)

// Caps on caller- and upstream-influenced strings, so that one call cannot
// write an enormous log line.
const (
	maxForwardedFor = 256
	maxErrorMessage = 512
)

// healthPrefix: load balancers probe health every few seconds; successful
// probes are logged at debug so that they do not drown the calls that
// matter.
const healthPrefix = "/grpc.health.v1.Health/"

// UnaryInterceptor logs one line per unary call when the handler returns.
// trustedPeer identifies the in-process gateway's connection (nil: none).
// Put it first in the chain, so that calls refused by later interceptors
// (authentication) are logged too.
func UnaryInterceptor(l *slog.Logger, trustedPeer func(net.Addr) bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, l, trustedPeer, info.FullMethod, start, err, nil)
		return resp, err
	}
}

// StreamInterceptor logs one line per streaming call when the handler
// returns, with the number of messages sent to the client.
func StreamInterceptor(l *slog.Logger, trustedPeer func(net.Addr) bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		cs := &countingStream{ServerStream: ss}
		err := handler(srv, cs)
		n := cs.sent.Load()
		logCall(ss.Context(), l, trustedPeer, info.FullMethod, start, err, &n)
		return err
	}
}

// countingStream counts messages sent successfully.
type countingStream struct {
	grpc.ServerStream
	sent atomic.Int64
}

func (s *countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.sent.Add(1)
	}
	return err
}

func logCall(ctx context.Context, l *slog.Logger, trustedPeer func(net.Addr) bool, method string, start time.Time, err error, sent *int64) {
	st := status.Convert(err)
	code := st.Code()
	level := levelFor(code)
	if code == codes.OK && strings.HasPrefix(method, healthPrefix) {
		level = slog.LevelDebug
	}
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String(keyMethod, method),
		slog.String(keyCode, code.String()),
		slog.Duration(keyDuration, time.Since(start)),
	)
	addr, chain := peerOf(ctx, trustedPeer)
	attrs = append(attrs, slog.String(keyPeer, addr))
	if chain != "" {
		attrs = append(attrs, slog.String(keyForwardedFor, chain))
	}
	if sent != nil {
		attrs = append(attrs, slog.Int64(keyMessagesSent, *sent))
	}
	if code != codes.OK {
		attrs = append(attrs, slog.String(keyError, truncate(st.Message(), maxErrorMessage)))
	}
	l.LogAttrs(ctx, level, callMessage, attrs...)
}

// peerOf returns the address to log as the caller. For the trusted gateway
// it is the last x-forwarded-for entry, the address the gateway itself saw
// (earlier entries come from the HTTP client's own X-Forwarded-For header
// and may be invented); the whole chain is returned too when it has more
// than one entry.
func peerOf(ctx context.Context, trustedPeer func(net.Addr) bool) (addr, chain string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown", ""
	}
	addr = p.Addr.String()
	if trustedPeer == nil || !trustedPeer(p.Addr) {
		return addr, ""
	}
	md, _ := metadata.FromIncomingContext(ctx)
	xff := md.Get("x-forwarded-for")
	if len(xff) == 0 {
		return addr, ""
	}
	full := strings.Join(xff, ", ")
	entries := strings.Split(full, ",")
	last := strings.TrimSpace(entries[len(entries)-1])
	if last == "" {
		return addr, ""
	}
	if len(entries) > 1 {
		chain = truncate(full, maxForwardedFor)
	}
	return truncate(last, maxForwardedFor), chain
}

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
