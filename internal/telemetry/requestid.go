package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader is the request id's HTTP header and, lowercased, its gRPC
// metadata key, on requests and responses alike.
const (
	RequestIDHeader   = "X-Request-Id"
	RequestIDMetadata = "x-request-id"
)

// maxRequestIDLen is the longest incoming request id kept.
const maxRequestIDLen = 64

// validRequestID reports whether an incoming id is kept as the call's
// request id: 1 to 64 characters of [A-Za-z0-9._:-]. Anything else (empty,
// too long, spaces, quotes, control characters) is replaced, so that a
// request id is always safe to log, to put in a header and to grep for.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// chooseRequestID returns the incoming id when it is valid, else the call's
// trace id (32 hex digits): the server span's when tracing is on, the
// caller's traceparent's when it is off. A call with neither gets a new
// random id of 32 hex digits.
func chooseRequestID(ctx context.Context, incoming string) string {
	if validRequestID(incoming) {
		return incoming
	}
	if sc := trace.SpanContextFromContext(ctx); sc.TraceID().IsValid() {
		return sc.TraceID().String()
	}
	return newHexID(16)
}

// newHexID returns n random bytes in hex, from the runtime's per-thread
// ChaCha8 generator (math/rand/v2): unpredictable enough for ids that are
// neither secrets nor capabilities, and without crypto/rand's system call
// per id.
func newHexID(n int) string {
	b := make([]byte, (n+7)/8*8)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
	return hex.EncodeToString(b[:n])
}

type requestIDKey struct{}

// withRequestID returns ctx carrying the call's request id.
func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the call's request id, or "" outside a call.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
