package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/stats"
)

// The request data one connection may make the server hold (the promise:
// at most 32 MiB across all its streams, authenticated or not). Flow
// control alone does not bound it: a stream's window is refilled as soon as
// a handler takes the bytes in, and a handler holds them until its request
// is complete (the gateway reads a whole body before decoding it; grpc-go
// widens a stream's window to a whole message as soon as the message is
// announced). 256 streams of one connection each holding a request of
// almost 1 MiB held 256 MiB. So each connection has a byteBudget of request
// bytes, which its handlers take from before they read and give back when
// their call ends; a handler that finds it spent waits, reading nothing, so
// its stream's window stays shut.
const (
	// httpConnBodyBytes is the HTTP/2 connection's budget of body bytes its
	// handlers may hold at once. With the connection's receive window
	// (httpConnWindowBytes, bytes not yet handed to a handler) and what
	// holding them costs (a buffer that grows in steps), it keeps a
	// connection within the 32 MiB. A real client's bodies are a few
	// hundred bytes: 256 of them at once take under 1 MiB of it.
	httpConnBodyBytes = 12 << 20
	// httpConnWindowBytes and httpStreamWindowBytes are net/http's HTTP/2
	// receive windows: the bytes a connection, and one of its streams, may
	// send before a handler reads them. net/http refills the connection's
	// window only as handlers read, so this bounds what waits unread on
	// all of its streams together. One request of the largest size fits.
	httpConnWindowBytes   = 1 << 20
	httpStreamWindowBytes = 1 << 20
	// grpcConnRequestBytes is the gRPC connection's budget of request
	// bytes. A call takes a whole request's worth (maxRecvMsgBytes) before
	// grpc-go reads its request, which it cannot learn the size of before,
	// and gives back all but what the request turned out to need once it is
	// decoded: a real call holds its slot for microseconds. Streams still
	// waiting for a slot hold at most their window (grpcStreamWindowBytes)
	// each: 256 of them 16 MiB, so the connection stays within 32 MiB.
	grpcConnRequestBytes = 12 << 20
)

// byteBudget is what one connection may still make the server hold.
type byteBudget struct {
	mu   sync.Mutex
	free int64
	back chan struct{} // closed when bytes come back; nil: nobody waits
}

func newByteBudget(n int64) *byteBudget { return &byteBudget{free: n} }

// errBodyDeadline is what a body read waiting for the connection's budget
// returns once the body's deadline has passed: the error net/http's own
// reads give then, so callers answer it alike (408).
var errBodyDeadline = fmt.Errorf("waiting for the connection's body budget: %w", os.ErrDeadlineExceeded)

// take waits until bytes are free, then takes up to want of them (all of
// want when whole), until ctx ends or expired is closed.
func (b *byteBudget) take(ctx context.Context, expired <-chan struct{}, want int64, whole bool) (int64, error) {
	for {
		b.mu.Lock()
		if b.free >= want || (!whole && b.free > 0) {
			n := min(want, b.free)
			b.free -= n
			b.mu.Unlock()
			return n, nil
		}
		if b.back == nil {
			b.back = make(chan struct{})
		}
		back := b.back
		b.mu.Unlock()
		select {
		case <-back:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-expired:
			return 0, errBodyDeadline
		}
	}
}

// give returns n bytes and wakes those waiting for them.
func (b *byteBudget) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	if b.back != nil {
		close(b.back)
		b.back = nil
	}
	b.mu.Unlock()
}

// httpBudgetKey holds an HTTP connection's byteBudget in its context.
type httpBudgetKey struct{}

// httpConnContext is http.Server.ConnContext: every connection gets its
// budget of body bytes.
func httpConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, httpBudgetKey{}, newByteBudget(httpConnBodyBytes))
}

// budgetedBody is an HTTP/2 request body whose bytes count against its
// connection's budget from the moment they are read until the request's
// handler returns (done): whatever read them may hold them that long.
// HTTP/1 bodies need none: a connection carries one request at a time.
// Reads may come from another goroutine (Connect's proxy copies the body
// to the hop), even after the handler returned.
type budgetedBody struct {
	io.ReadCloser
	ctx     context.Context
	budget  *byteBudget
	expired <-chan struct{} // the body's deadline passed

	mu       sync.Mutex
	held     int64
	finished bool // done has run: bytes read from now on are not kept
}

func (b *budgetedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return b.ReadCloser.Read(p)
	}
	n, err := b.budget.take(b.ctx, b.expired, int64(len(p)), false)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			// The client reset the stream or went away: what net/http's
			// own read would say.
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	got, err := b.ReadCloser.Read(p[:n])
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		b.budget.give(n)
	} else {
		b.budget.give(n - int64(got))
		b.held += int64(got)
	}
	return got, err
}

// done gives the bytes read back; the handler has returned.
func (b *budgetedBody) done() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished = true
	b.budget.give(b.held)
	b.held = 0
}

// grpcRequestBudget is the stats handler that holds each gRPC connection to
// grpcConnRequestBytes (see above). grpc-go reads a unary call's request
// before any interceptor runs, so this is the one place that runs in the
// call's goroutine before its request is read: stats.Begin. The in-process
// hop from the HTTP side has its own server without this handler: its
// requests were counted against their HTTP connection's budget already.
type grpcRequestBudget struct{}

type grpcBudgetKey struct{}

// grpcCallHold is what one call has taken from its connection's budget.
type grpcCallHold struct {
	budget       *byteBudget
	held         int64
	clientStream bool // more than one request message may come
}

func (grpcRequestBudget) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, grpcBudgetKey{}, newByteBudget(grpcConnRequestBytes))
}

func (grpcRequestBudget) HandleConn(context.Context, stats.ConnStats) {}

func (grpcRequestBudget) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if b, ok := ctx.Value(grpcBudgetKey{}).(*byteBudget); ok {
		return context.WithValue(ctx, grpcBudgetKey{}, &grpcCallHold{budget: b})
	}
	return ctx
}

func (grpcRequestBudget) HandleRPC(ctx context.Context, s stats.RPCStats) {
	// Most events are none of this handler's business; they go before any
	// context lookup (this runs several times on every call).
	switch s := s.(type) {
	case *stats.Begin:
		if h, ok := ctx.Value(grpcBudgetKey{}).(*grpcCallHold); ok {
			// Waiting ends with the call: the client cancels or resets it,
			// its deadline passes or the connection closes. grpc-go then
			// fails the read that follows.
			h.held, _ = h.budget.take(ctx, nil, maxRecvMsgBytes, true)
			h.clientStream = s.IsClientStream
		}
	case *stats.InPayload:
		if h, ok := ctx.Value(grpcBudgetKey{}).(*grpcCallHold); ok && !h.clientStream {
			// The one request is in: keep what it takes to hold it.
			keep := min(h.held, int64(max(s.Length, s.WireLength)))
			h.budget.give(h.held - keep)
			h.held = keep
		}
	case *stats.End:
		if h, ok := ctx.Value(grpcBudgetKey{}).(*grpcCallHold); ok {
			h.budget.give(h.held)
			h.held = 0
		}
	}
}
