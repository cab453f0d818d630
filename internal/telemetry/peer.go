package telemetry

import (
	"context"
	"net/http"

	"google.golang.org/grpc/metadata"
)

// A call's log line names as its peer the address cbkgate's listener
// accepted, on every surface. An HTTP request reaches the gRPC server over
// the in-process hop, whose own peer address names no one, so the HTTP
// side hands the real one over as metadata, the way it hands over the
// caller it authenticated: the gRPC server believes these keys only on a
// connection from that hop, and no client header can become them (the
// gateway forwards only the metadata cbkgate needs, the Connect hop only
// an allow-list of headers).
//
// X-Forwarded-For never changes the peer: anyone can send one. Its value,
// made printable and bounded, is logged beside the peer as forwarded_for.
const (
	// PeerMetadata is the address the HTTP listener accepted.
	PeerMetadata = "cbkgate-internal-peer"
	// ForwardedForMetadata is the request's X-Forwarded-For (ForwardedFor).
	ForwardedForMetadata = "cbkgate-internal-forwarded-for"
)

// MaxForwardedFor bounds the forwarded_for a log line carries, in bytes.
const MaxForwardedFor = 256

// ForwardedFor is the X-Forwarded-For values a client sent, joined as one
// header, with every byte that is not printable ASCII replaced by '?' (a
// log line, and gRPC metadata, can carry it as it is), cut to
// MaxForwardedFor bytes. "" when there are none.
func ForwardedFor(values []string) string {
	if len(values) == 0 {
		return ""
	}
	out := make([]byte, 0, 64)
	for i, v := range values {
		if i > 0 {
			out = append(out, ", "...)
		}
		for j := 0; j < len(v) && len(out) <= MaxForwardedFor; j++ {
			c := v[j]
			if c < 0x20 || c > 0x7e {
				c = '?'
			}
			out = append(out, c)
		}
		if len(out) > MaxForwardedFor {
			return string(append(out[:MaxForwardedFor-3], "..."...))
		}
	}
	return string(out)
}

// HTTPPeer returns the address the HTTP listener accepted for the request
// of ctx and its ForwardedFor; ok is false outside HTTPMiddleware.
func HTTPPeer(ctx context.Context) (addr, forwardedFor string, ok bool) {
	c := httpCallFrom(ctx)
	if c == nil {
		return "", "", false
	}
	return c.peer, c.forwardedFor, true
}

// GatewayPeerMetadata is a grpc-gateway metadata annotator: it passes the
// HTTP request's peer (and forwarded-for) on to the gRPC server.
func GatewayPeerMetadata(ctx context.Context, _ *http.Request) metadata.MD {
	addr, fwd, ok := HTTPPeer(ctx)
	if !ok {
		return nil
	}
	if fwd == "" {
		return metadata.MD{PeerMetadata: {addr}}
	}
	return metadata.MD{PeerMetadata: {addr}, ForwardedForMetadata: {fwd}}
}

// SetHopPeer puts the peer of the HTTP request of ctx on the headers of
// the request that carries it to the gRPC server (the Connect and
// gRPC-Web hop), as the same metadata.
func SetHopPeer(ctx context.Context, h http.Header) {
	addr, fwd, ok := HTTPPeer(ctx)
	if !ok {
		return
	}
	h[PeerMetadata] = []string{addr}
	if fwd != "" {
		h[ForwardedForMetadata] = []string{fwd}
	}
}
