package app

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/tap"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// The limits every client is held to: they hold for
// every client, authenticated or not, because an unauthenticated one reaches
// the transport (headers, streams, bodies) before any credential is looked
// at. README "Limits" lists them with what a client sees.
const (
	// MaxHeaderListBytes caps the decoded size of one gRPC request's
	// header list (metadata). grpc-go's default is 16 MiB; the largest
	// metadata a real caller sends (a bearer, a request id, a traceparent)
	// is well under 1 KiB. A larger list is refused by the transport before
	// it reaches any handler: its stream is reset or, far over the cap,
	// the connection is closed (grpc-go clients refuse to send one).
	MaxHeaderListBytes = 64 << 10
	// MaxStreamsPerConn caps the concurrent streams (calls) of one gRPC or
	// HTTP/2 connection, so one connection cannot hold an unbounded number
	// of calls, each with its metadata, open at once. The client queues
	// further calls until one ends.
	MaxStreamsPerConn = 256
	// MaxWatchStreams caps the Health Watch and server reflection streams
	// open at once in the process. Both need no credentials and can stay
	// open as long as the client likes; past the cap a new one fails at
	// once with RESOURCE_EXHAUSTED (TOO_MANY_STREAMS).
	MaxWatchStreams = 128
	// idleConnTimeout closes a gRPC connection without a call, and an HTTP
	// connection (HTTP/1 keep-alive or HTTP/2) without a request, after
	// this long: open idle connections cost a file descriptor and buffers
	// each and are free to make. Clients reconnect on their next call.
	idleConnTimeout = 5 * time.Minute
	// bodyTimeout is how long an HTTP request body may take to arrive,
	// counted from the end of its headers (which must come within
	// headerTimeout). A body trickled slower than that holds a connection
	// and a goroutine for nothing: the request is answered 408 (or with
	// whatever refused it before its body) and the connection is closed.
	bodyTimeout = 30 * time.Second
	// stalledReaderTimeout cuts off a streamed List whose reader takes no
	// message for this long (gRPC flow control, or an HTTP client that
	// stops reading): the server stops fetching pages for it and frees
	// what it held. A gRPC caller gets what was already sent and then
	// CANCELLED (the call's log line says READER_STALLED); an HTTP answer
	// is cut: its connection closed, or a last {"error"} line when the
	// gRPC side cut first.
	stalledReaderTimeout = 60 * time.Second
	// headerTimeout bounds the arrival of an HTTP request's headers.
	headerTimeout = 10 * time.Second
	// maxHTTPHeaderBytes caps the request line and headers of one HTTP
	// request, as MaxHeaderListBytes does for gRPC.
	maxHTTPHeaderBytes = MaxHeaderListBytes
)

// timeouts are the time limits in force. They are the constants above;
// only tests shorten them (export_test.go), to see a limit act without
// waiting minutes.
var timeouts = struct {
	idle, body, stalled time.Duration
}{idleConnTimeout, bodyTimeout, stalledReaderTimeout}

// watchStreamLimit is the stream interceptor that holds MaxWatchStreams.
// It must run before any interceptor that waits, so that a refused stream
// costs nothing.
func watchStreamLimit(max int) grpc.StreamServerInterceptor {
	sem := make(chan struct{}, max)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !isWatchOrReflection(info.FullMethod) {
			return handler(srv, ss)
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			return handler(srv, ss)
		default:
			return apierr.New(codes.ResourceExhausted, apierr.ReasonTooManyStreams,
				"too many Health Watch and reflection streams are open; try again later")
		}
	}
}

func isWatchOrReflection(method string) bool {
	return method == "/grpc.health.v1.Health/Watch" ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// listMethod is the one streamed call whose reader can stall the server.
var listMethod = "/" + tokenv1.TokenService_ServiceDesc.ServiceName + "/List"

// stallKey holds, in a List stream's context, the function that ends the
// stream's transport context.
type stallKey struct{}

// stallTap gives each List stream a transport context that cbkgate can
// cancel. grpc-go's Send blocks on flow control until the stream's own
// context ends, which nothing but the client or the connection ends;
// cancelling this one (see stallGuard) unblocks it, so a handler whose
// reader stopped reading can return.
func stallTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != listMethod {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	return context.WithValue(ctx, stallKey{}, cancel), nil
}

// stallGuard is the stream interceptor that cuts off a List whose Send has
// been blocked for timeouts.stalled.
func stallGuard() grpc.StreamServerInterceptor {
	stalled := timeouts.stalled
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		cancel, ok := ss.Context().Value(stallKey{}).(context.CancelFunc)
		if !ok {
			return handler(srv, ss)
		}
		g := &stallGuardStream{ServerStream: ss, cancel: cancel, after: stalled}
		g.timer = time.AfterFunc(stalled, g.fire)
		g.timer.Stop()
		defer g.timer.Stop()
		return handler(srv, g)
	}
}

type stallGuardStream struct {
	grpc.ServerStream
	cancel context.CancelFunc
	after  time.Duration
	timer  *time.Timer

	mu  sync.Mutex
	cut bool
}

func (g *stallGuardStream) fire() {
	g.mu.Lock()
	g.cut = true
	g.mu.Unlock()
	g.cancel()
}

// SendMsg runs the timer only while a message waits to go out: time spent
// fetching pages upstream (or paced by --caller-rate) is not the reader's.
func (g *stallGuardStream) SendMsg(m any) error {
	g.timer.Reset(g.after)
	err := g.ServerStream.SendMsg(m)
	g.timer.Stop()
	if err != nil {
		g.mu.Lock()
		cut := g.cut
		g.mu.Unlock()
		if cut {
			// The transport has already ended the stream with CANCELLED
			// (grpc-go writes the status of a failed Send itself), so the
			// call's log line says that code too, and why.
			return apierr.New(codes.Canceled, apierr.ReasonReaderStalled,
				"the stream was cut off: its reader took no message for "+g.after.String())
		}
	}
	return err
}
