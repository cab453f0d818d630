package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/secret"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// tokenServer is the real generated service with two methods filled in; it
// records the upstream secret each call saw.
type tokenServer struct {
	tokenv1.UnimplementedTokenServiceServer

	mu    sync.Mutex
	calls []seenCall
}

type seenCall struct {
	method string
	secret secret.Value
	caller string
}

func (s *tokenServer) record(ctx context.Context, method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, seenCall{method, auth.UpstreamSecret(ctx), auth.Caller(ctx)})
}

func (s *tokenServer) seen() []seenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenCall(nil), s.calls...)
}

func (s *tokenServer) Create(ctx context.Context, _ *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	s.record(ctx, "Create")
	return &tokenv1.CreateResponse{Id: "tok_1", Token: "minted-token-value"}, nil
}

const listLen = 3

func (s *tokenServer) List(_ *tokenv1.ListRequest, stream grpc.ServerStreamingServer[tokenv1.ListResponse]) error {
	s.record(stream.Context(), "List")
	for i := range listLen {
		if err := stream.Send(&tokenv1.ListResponse{Token: &tokenv1.Token{Id: string(rune('a' + i))}}); err != nil {
			return err
		}
	}
	return nil
}

// startGRPC serves the token service, health and reflection on
// 127.0.0.1:0 with the authenticator's interceptors; tlsCfg nil means
// plaintext.
func startGRPC(t *testing.T, a *auth.Authenticator, tlsCfg *tls.Config) (string, *tokenServer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamInterceptor()),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	ts := &tokenServer{}
	tokenv1.RegisterTokenServiceServer(s, ts)
	hs := health.NewServer()
	hs.SetServingStatus(tokenv1.TokenService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), ts
}

// client is a connection that knows its own local address, so that a
// TrustedPeer func can single it out.
type client struct {
	conn  *grpc.ClientConn
	mu    sync.Mutex
	local string
}

func (c *client) localAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

func (c *client) tokens() tokenv1.TokenServiceClient { return tokenv1.NewTokenServiceClient(c.conn) }

// dial connects to addr; tlsCfg nil means plaintext. The connection is
// established before dial returns, so localAddr is known.
func dial(t *testing.T, addr string, tlsCfg *tls.Config) *client {
	t.Helper()
	c := &client{}
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", target)
			if err == nil {
				c.mu.Lock()
				c.local = nc.LocalAddr().String()
				c.mu.Unlock()
			}
			return nc, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c.conn = conn
	// Force the connection up: a health check is exempt from auth in every
	// mode; with TLS it may still fail the handshake, which the caller's
	// own calls will then report.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return c
}

// pki is a throwaway CA with a server certificate for 127.0.0.1, a client
// certificate it signs, and a client certificate from another CA.
type pki struct {
	pool        *x509.CertPool
	server      tls.Certificate
	client      tls.Certificate
	rogueClient tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := testpki.NewCA(t, "cbkgate test CA")
	rogue := testpki.NewCA(t, "rogue CA")
	return &pki{
		pool:        ca.Pool(),
		server:      ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth).TLS(),
		client:      ca.Issue(t, "good client", x509.ExtKeyUsageClientAuth).TLS(),
		rogueClient: rogue.Issue(t, "rogue client", x509.ExtKeyUsageClientAuth).TLS(),
	}
}

func mustNew(t *testing.T, o auth.Options) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}
