package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// localAddrs records the local address of every connection a client
// dials, so a test knows the address cbkgate's listener accepted.
type localAddrs struct {
	mu    sync.Mutex
	addrs []string
}

func (l *localAddrs) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		l.mu.Lock()
		l.addrs = append(l.addrs, c.LocalAddr().String())
		l.mu.Unlock()
	}
	return c, err
}

// only returns the one address dialed, failing the test if there were
// more or none.
func (l *localAddrs) only(t *testing.T) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.addrs) != 1 {
		t.Fatalf("dialed %d connections (%v), want 1", len(l.addrs), l.addrs)
	}
	return l.addrs[0]
}

// spoofedPeer is what a client claims as its address in the metadata the
// HTTP side hands over; only the in-process hop is believed.
const spoofedPeer = "192.0.2.66:6666"

func spoofPeer(h http.Header) {
	h.Set(telemetry.PeerMetadata, spoofedPeer)
	h.Set("Grpc-Metadata-"+telemetry.PeerMetadata, spoofedPeer)
	h.Set(telemetry.ForwardedForMetadata, spoofedPeer)
}

// TestCallLinePeerIsTheListenersPeer: on every surface (gRPC, the JSON
// gateway, SSE, Connect, gRPC-Web) a call line's peer is the client's own
// address as cbkgate's listener accepted it, whatever X-Forwarded-For says
// (a malformed one included, which blanked the peer of a REST call); the
// header is logged as forwarded_for, printable. A client naming its own
// peer in the hop's metadata keys is not believed. Before, every HTTP call
// said "peer":"gateway" (Connect, gRPC-Web, or a REST call whose
// X-Forwarded-For was not ASCII) or the client's X-Forwarded-For entry.
func TestCallLinePeerIsTheListenersPeer(t *testing.T) {
	_, up := newEmulator(t, "sk-peer-held")
	s := startServer(t, up.URL, gatetest.Held("sk-peer-held"))
	const (
		xff       = "203.0.113.5, 198.51.100.7"
		malformed = "\xff\xfe 203.0.113.9"
	)

	type probe struct {
		name, requestID, xff, wantForwarded string
		call                                func(t *testing.T, dial *localAddrs, requestID, xff string)
	}
	httpClient := func(dial *localAddrs) *http.Client {
		tr := &http.Transport{DialContext: dial.dial}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: callTimeout}
	}
	rest := func(method, path, accept, body string) func(*testing.T, *localAddrs, string, string) {
		return func(t *testing.T, dial *localAddrs, requestID, xff string) {
			req, err := http.NewRequestWithContext(callCtx(t), method, s.URL()+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Request-Id", requestID)
			req.Header.Set("X-Forwarded-For", xff)
			spoofPeer(req.Header)
			req.Header.Set("Content-Type", "application/json")
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			resp, err := httpClient(dial).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
			}
		}
	}
	rpc := func(opts ...connect.ClientOption) func(*testing.T, *localAddrs, string, string) {
		return func(t *testing.T, dial *localAddrs, requestID, xff string) {
			c := connect.NewClient[tokenv1.CreateRequest, tokenv1.CreateResponse](httpClient(dial),
				s.URL()+"/cbkgate.token.v1.TokenService/Create", opts...)
			req := connect.NewRequest(&tokenv1.CreateRequest{UserId: "peer", Name: "n"})
			req.Header().Set("X-Request-Id", requestID)
			req.Header().Set("X-Forwarded-For", xff)
			spoofPeer(req.Header())
			if _, err := c.CallUnary(callCtx(t), req); err != nil {
				t.Fatal(err)
			}
		}
	}
	probes := []probe{
		{name: "grpc", requestID: "peer-grpc", xff: xff, wantForwarded: xff,
			call: func(t *testing.T, dial *localAddrs, requestID, xff string) {
				conn, err := grpc.NewClient("passthrough:///"+s.GRPCAddr(),
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
						return dial.dial(ctx, "tcp", addr)
					}))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-request-id", requestID, "x-forwarded-for", xff,
					telemetry.PeerMetadata, spoofedPeer, telemetry.ForwardedForMetadata, spoofedPeer)
				if _, err := tokenv1.NewTokenServiceClient(conn).Create(ctx, &tokenv1.CreateRequest{UserId: "peer", Name: "n"}); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "rest", requestID: "peer-rest", xff: xff, wantForwarded: xff,
			call: rest("POST", "/v1/users/peer/tokens", "", `{"name":"n"}`)},
		{name: "rest, malformed X-Forwarded-For", requestID: "peer-rest-malformed", xff: malformed, wantForwarded: "?? 203.0.113.9",
			call: rest("POST", "/v1/users/peer/tokens", "", `{"name":"n"}`)},
		{name: "sse", requestID: "peer-sse", xff: xff, wantForwarded: xff,
			call: rest("GET", "/v1/users/peer/tokens", "text/event-stream", "")},
		{name: "connect", requestID: "peer-connect", xff: xff, wantForwarded: xff, call: rpc(connect.WithProtoJSON())},
		{name: "grpc-web", requestID: "peer-grpcweb", xff: malformed, wantForwarded: "?? 203.0.113.9", call: rpc(connect.WithGRPCWeb())},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			dial := &localAddrs{}
			p.call(t, dial, p.requestID, p.xff)
			local := dial.only(t)
			var line map[string]any
			for _, l := range s.Logs().JSON(t) {
				if l["msg"] == "grpc call" && l["request_id"] == p.requestID {
					if line != nil {
						t.Fatalf("two call lines for %s: %v and %v", p.requestID, line, l)
					}
					line = l
				}
			}
			if line == nil {
				t.Fatalf("no call line with request_id %s", p.requestID)
			}
			if line["peer"] != local {
				t.Errorf("peer %v, want the client's address %s (line %v)", line["peer"], local, line)
			}
			if line["forwarded_for"] != p.wantForwarded {
				t.Errorf("forwarded_for %q, want %q", line["forwarded_for"], p.wantForwarded)
			}
		})
	}
}
