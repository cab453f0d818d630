package app

import (
	"os"
	"runtime/debug"

	"google.golang.org/grpc"
)

// The performance tuning of cbkgate's process and gRPC server, in one place
// so that cmd/bench's floor server is tuned exactly as cbkgate is.

// gcPercent is the GOGC cbkgate runs with unless the environment sets one.
// cbkgate's live heap is a few MiB, so at Go's default GOGC=100 the
// collector runs after every few MiB allocated and took ~16% of the CPU of
// a call in profiles. At 200 it runs half as often, for a few MiB more
// memory.
const gcPercent = 200

const (
	// serverWindowBytes is the flow-control window of each connection: one
	// request of the largest size.
	serverWindowBytes = maxRecvMsgBytes
	// grpcStreamWindowBytes is each call's request window, the least grpc-go
	// takes. It is what a call may have sent before its handler reads (see
	// grpcConnRequestBytes): 256 calls of one connection hold at most 16 MiB
	// that way. Real requests are far smaller; a larger one costs one window
	// update, which grpc-go sends for the whole message as it starts to
	// read it.
	grpcStreamWindowBytes = 64 << 10
	// streamWorkers is how many goroutines are kept to run handlers; a call
	// that finds them all busy gets a goroutine of its own.
	streamWorkers = 64
)

// TuneGC sets gcPercent, unless GOGC set in the environment decides.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// ServerTuning returns the gRPC server options that tune grpc-go for many
// small calls.
func ServerTuning() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Static receive windows: with the default dynamic ones, grpc-go
		// answers nearly every small request with a BDP ping that the client
		// must acknowledge, two more frames (and wake-ups on both sides) per
		// call. Requests are small, so the windows need not grow.
		grpc.StaticStreamWindowSize(grpcStreamWindowBytes),
		grpc.StaticConnWindowSize(serverWindowBytes),
		// Handlers run on long-lived goroutines whose stacks have already
		// grown, instead of a new goroutine per call.
		grpc.NumStreamWorkers(streamWorkers),
	}
}
