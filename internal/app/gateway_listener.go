package app

import (
	"context"
	"net"

	"google.golang.org/grpc/test/bufconn"
)

// gatewayAddr is the peer address of every connection from cbkgate's own
// JSON gateway. Only the in-memory listener below produces it, so no
// network caller can claim to be the gateway.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "cbkgate-gateway" }
func (gatewayAddr) String() string  { return "gateway" }

// isGateway reports whether a gRPC peer is the in-process gateway, which
// authenticates HTTP callers itself before it calls the gRPC server.
func isGateway(a net.Addr) bool {
	_, ok := a.(gatewayAddr)
	return ok
}

// gatewayListener carries the HTTP side's gRPC connections (the gateway's,
// Connect's) to the hop server in memory: no port that anything else could
// reach, and no TLS or client certificate needed on a hop that never leaves
// the process.
type gatewayListener struct {
	*bufconn.Listener
}

func newGatewayListener() *gatewayListener {
	return &gatewayListener{bufconn.Listen(1 << 20)}
}

func (l *gatewayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatewayConn{c}, nil
}

func (l *gatewayListener) Addr() net.Addr { return gatewayAddr{} }

func (l *gatewayListener) dial(ctx context.Context, _ string) (net.Conn, error) {
	return l.DialContext(ctx)
}

type gatewayConn struct{ net.Conn }

func (gatewayConn) RemoteAddr() net.Addr { return gatewayAddr{} }
