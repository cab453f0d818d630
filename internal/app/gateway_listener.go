package app

import (
	"context"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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

// gatewayListener carries the gateway's gRPC connection to the gRPC server
// in memory: no port that anything else could reach, and no TLS or client
// certificate needed on a hop that never leaves the process.
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

// gatewayCreds is the gRPC server's TLS, minus the in-memory gateway hop: a
// connection from gatewayListener never leaves the process, and the gateway
// dials it in plaintext, so a TLS handshake there would only wait for a
// ClientHello that never comes. Every network connection still goes
// through TLS.
type gatewayCreds struct {
	credentials.TransportCredentials
}

func (c gatewayCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if _, ok := conn.(gatewayConn); ok {
		return insecure.NewCredentials().ServerHandshake(conn)
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c gatewayCreds) Clone() credentials.TransportCredentials {
	return gatewayCreds{c.TransportCredentials.Clone()}
}
