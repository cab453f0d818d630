package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/telemetry"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

const (
	bearerValue  = "cbk-bearer-SECRET-0123456789"
	mintedToken  = "minted-token-SECRET-abcdef"
	requestField = "request-body-MARKER-42"
)

// tokenServer is the generated service with test behaviour: Create mints a
// token; Delete fails with the code numbered by user_id; List sends
// page_size messages, then ends with the code numbered by user_id. Update
// stays unimplemented.
type tokenServer struct {
	tokenv1.UnimplementedTokenServiceServer
}

func codeOf(userID string) error {
	n, _ := strconv.Atoi(userID)
	if n == 0 {
		return nil
	}
	// The message echoes nothing from the request.
	return status.Error(codes.Code(n), "test failure")
}

func (tokenServer) Create(context.Context, *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	return &tokenv1.CreateResponse{Id: "tok_1", Token: mintedToken}, nil
}

func (tokenServer) Delete(_ context.Context, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, error) {
	if err := codeOf(req.GetUserId()); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteResponse{Id: req.GetTokenId()}, nil
}

func (tokenServer) List(req *tokenv1.ListRequest, stream grpc.ServerStreamingServer[tokenv1.ListResponse]) error {
	for i := range int(req.GetPageSize()) {
		if err := stream.Send(&tokenv1.ListResponse{Token: &tokenv1.Token{Id: "t" + strconv.Itoa(i), Name: requestField}}); err != nil {
			return err
		}
	}
	return codeOf(req.GetUserId())
}

type testEnv struct {
	logs *testlog.Buffer
	addr string
	// trusted is the local address of the connection TrustedPeer accepts.
	mu      sync.Mutex
	trusted string
}

func (e *testEnv) trustedPeer(a net.Addr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return a.String() == e.trusted
}

func (e *testEnv) trust(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.trusted = addr
}

// start serves the token service and health on 127.0.0.1:0, with the
// logging interceptors first and pass-through authentication after them,
// logging JSON at debug level.
func start(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{logs: &testlog.Buffer{}}
	l := New(e.logs, slog.LevelDebug, "json")
	a, err := auth.Load(auth.Config{TrustedPeer: e.trustedPeer})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Stands in for the authenticator's identity: a call with credentials
	// is "key:test".
	identify := func(ctx context.Context) context.Context {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
			return auth.WithCaller(ctx, testCaller)
		}
		return ctx
	}
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryInterceptor(l, e.trustedPeer), a.UnaryInterceptor(),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				return h(identify(ctx), req)
			}, CallerUnaryInterceptor()),
		grpc.ChainStreamInterceptor(StreamInterceptor(l, e.trustedPeer), a.StreamInterceptor(),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				return h(srv, &ctxStream{ss, identify(ss.Context())})
			}, CallerStreamInterceptor()),
	)
	tokenv1.RegisterTokenServiceServer(s, tokenServer{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	e.addr = lis.Addr().String()
	return e
}

// dial connects and returns the connection with its local address, known
// once the connection is up.
func dial(t *testing.T, addr string) (*grpc.ClientConn, func() string) {
	t.Helper()
	var mu sync.Mutex
	local := ""
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", target)
			if err == nil {
				mu.Lock()
				local = nc.LocalAddr().String()
				mu.Unlock()
			}
			return nc, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	conn.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("connection not ready: %v", s)
		}
	}
	return conn, func() string {
		mu.Lock()
		defer mu.Unlock()
		return local
	}
}

const testCaller = "key:test"

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func TestCallLog(t *testing.T) {
	const (
		create = "/cbkgate.token.v1.TokenService/Create"
		update = "/cbkgate.token.v1.TokenService/Update"
		del    = "/cbkgate.token.v1.TokenService/Delete"
		list   = "/cbkgate.token.v1.TokenService/List"
		check  = "/grpc.health.v1.Health/Check"
	)
	bearer := []string{"authorization", "Bearer " + bearerValue}
	// The caller the HTTP layer authenticated, which the gateway hands
	// over (and the authenticator ignores from any other peer).
	bearer2 := append(append([]string{}, bearer...), auth.GatewayCallerKey, "bearer:0123abcd")
	type call func(ctx context.Context, c tokenv1.TokenServiceClient, conn *grpc.ClientConn) error
	deleteWith := func(code codes.Code) call {
		return func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
			_, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: strconv.Itoa(int(code)), TokenId: "tok_del"})
			return err
		}
	}
	listWith := func(n int32, code codes.Code) call {
		return func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
			s, err := c.List(ctx, &tokenv1.ListRequest{UserId: strconv.Itoa(int(code)), PageSize: n})
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		}
	}
	tests := []struct {
		name      string
		md        []string
		trusted   bool
		call      call
		method    string
		code      codes.Code
		level     string
		sent      int  // for streams
		stream    bool // messages_sent expected
		peer      string
		forwarded string // "" = absent
	}{
		{name: "create ok", md: bearer, method: create, code: codes.OK, level: "INFO",
			call: func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
				resp, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "u", Name: requestField})
				if err == nil && resp.GetToken() != mintedToken {
					return errors.New("unexpected token in response")
				}
				return err
			}},
		{name: "refused by auth", method: create, code: codes.Unauthenticated, level: "INFO",
			call: func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
				_, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "u", Name: requestField})
				return err
			}},
		{name: "not found", md: bearer, method: del, code: codes.NotFound, level: "INFO", call: deleteWith(codes.NotFound)},
		{name: "invalid argument", md: bearer, method: del, code: codes.InvalidArgument, level: "INFO", call: deleteWith(codes.InvalidArgument)},
		{name: "permission denied", md: bearer, method: del, code: codes.PermissionDenied, level: "INFO", call: deleteWith(codes.PermissionDenied)},
		{name: "unavailable", md: bearer, method: del, code: codes.Unavailable, level: "WARN", call: deleteWith(codes.Unavailable)},
		{name: "deadline exceeded", md: bearer, method: del, code: codes.DeadlineExceeded, level: "WARN", call: deleteWith(codes.DeadlineExceeded)},
		{name: "resource exhausted", md: bearer, method: del, code: codes.ResourceExhausted, level: "WARN", call: deleteWith(codes.ResourceExhausted)},
		{name: "internal", md: bearer, method: del, code: codes.Internal, level: "ERROR", call: deleteWith(codes.Internal)},
		{name: "unknown", md: bearer, method: del, code: codes.Unknown, level: "ERROR", call: deleteWith(codes.Unknown)},
		{name: "data loss", md: bearer, method: del, code: codes.DataLoss, level: "ERROR", call: deleteWith(codes.DataLoss)},
		{name: "unimplemented", md: bearer, method: update, code: codes.Unimplemented, level: "ERROR",
			call: func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
				_, err := c.Update(ctx, &tokenv1.UpdateRequest{UserId: "u", TokenId: "t"})
				return err
			}},
		{name: "stream ok", md: bearer, method: list, code: codes.OK, level: "INFO", stream: true, sent: 3, call: listWith(3, codes.OK)},
		{name: "stream cut short", md: bearer, method: list, code: codes.Unavailable, level: "WARN", stream: true, sent: 2, call: listWith(2, codes.Unavailable)},
		{name: "stream refused", method: list, code: codes.Unauthenticated, level: "INFO", stream: true, sent: 0, call: listWith(2, codes.OK)},
		{name: "health at debug", method: check, code: codes.OK, level: "DEBUG",
			call: func(ctx context.Context, _ tokenv1.TokenServiceClient, conn *grpc.ClientConn) error {
				_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			}},
		// The HTTP side's peer crosses the trusted hop as metadata; the
		// gateway's own x-forwarded-for never becomes the peer.
		{name: "gateway peer", md: append([]string{telemetry.PeerMetadata, "203.0.113.7:4711", "x-forwarded-for", "198.51.100.9"}, bearer2...), trusted: true,
			method: create, code: codes.OK, level: "INFO", peer: "203.0.113.7:4711",
			call: func(ctx context.Context, c tokenv1.TokenServiceClient, _ *grpc.ClientConn) error {
				_, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "u"})
				return err
			}},
		{name: "gateway peer, forwarded chain", md: append([]string{telemetry.PeerMetadata, "203.0.113.7:4711", telemetry.ForwardedForMetadata, "198.51.100.1, 10.0.0.1"}, bearer2...), trusted: true,
			method: del, code: codes.OK, level: "INFO", peer: "203.0.113.7:4711", forwarded: "198.51.100.1, 10.0.0.1", call: deleteWith(codes.OK)},
		{name: "gateway peer, stream", md: append([]string{telemetry.PeerMetadata, "203.0.113.9:80"}, bearer2...), trusted: true,
			method: list, code: codes.OK, level: "INFO", stream: true, sent: 1, peer: "203.0.113.9:80", call: listWith(1, codes.OK)},
		{name: "gateway peer without peer metadata", md: bearer2, trusted: true, method: del, code: codes.OK, level: "INFO", call: deleteWith(codes.OK)},
		{name: "untrusted peer's x-forwarded-for logged, not its peer", md: append([]string{"x-forwarded-for", "203.0.113.66"}, bearer2...),
			method: del, code: codes.OK, level: "INFO", forwarded: "203.0.113.66", call: deleteWith(codes.OK)},
		{name: "untrusted peer's peer metadata ignored", md: append([]string{telemetry.PeerMetadata, "203.0.113.66:1", telemetry.ForwardedForMetadata, "x"}, bearer2...),
			method: del, code: codes.OK, level: "INFO", call: deleteWith(codes.OK)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t)
			conn, local := dial(t, e.addr)
			if tt.trusted {
				e.trust(local())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if len(tt.md) > 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			err := tt.call(ctx, tokenv1.NewTokenServiceClient(conn), conn)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("call ended %v (%v), want %v", got, err, tt.code)
			}

			var calls, audits []map[string]any
			for _, l := range e.logs.JSON(t) {
				switch l["msg"] {
				case "grpc call":
					calls = append(calls, l)
				case "audit":
					audits = append(audits, l)
				default:
					t.Errorf("unexpected line %v", l)
				}
			}
			if len(calls) != 1 {
				t.Fatalf("got %d call lines, want 1:\n%s", len(calls), e.logs.String())
			}
			got := calls[0]
			wantPeer := tt.peer
			if wantPeer == "" {
				wantPeer = local()
			}
			wantCaller, transport := unauthenticated, "grpc"
			if len(tt.md) > 0 && tt.code != codes.Unauthenticated {
				wantCaller = testCaller
			}
			if tt.trusted {
				transport = "http"
			}
			want := map[string]any{
				"msg":       "grpc call",
				"level":     tt.level,
				"transport": transport,
				"method":    tt.method,
				"code":      tt.code.String(),
				"peer":      wantPeer,
				"caller":    wantCaller,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (line %v)", k, got[k], v, got)
				}
			}
			if d, ok := got["duration_ms"].(float64); !ok || d < 0 {
				t.Errorf("duration_ms = %v, want a number of milliseconds", got["duration_ms"])
			}
			if tt.trusted {
				// The gateway's HTTP answer: the method's binding (the
				// proto's google.api.http) and status.
				want := map[string][2]string{
					create: {"POST", "/v1/users/{user_id}/tokens"},
					list:   {"GET", "/v1/users/{user_id}/tokens"},
					del:    {"DELETE", "/v1/users/{user_id}/tokens/{token_id}"},
				}[tt.method]
				if got["http_method"] != want[0] || got["route"] != want[1] || got["status"] != float64(200) {
					t.Errorf("gateway call line without its HTTP method %s, route %s and status 200: %v", want[0], want[1], got)
				}
			} else if _, ok := got["route"]; ok {
				t.Errorf("direct gRPC call line with an HTTP route: %v", got)
			}
			wantAudit := map[string]string{create: "token.create", update: "token.update", del: "token.delete"}[tt.method]
			switch {
			case wantAudit == "" && len(audits) > 0:
				t.Errorf("audit line for %s: %v", tt.method, audits)
			case wantAudit != "" && len(audits) != 1:
				t.Errorf("%d audit lines for %s, want 1:\n%s", len(audits), tt.method, e.logs.String())
			case wantAudit != "":
				a := audits[0]
				wantToken := "tok_del"
				if tt.method == create {
					wantToken = "tok_1" // the new id
					if tt.code != codes.OK {
						wantToken = ""
					}
				} else if tt.method == update {
					wantToken = "t"
				}
				for k, v := range map[string]any{"level": "INFO", "action": wantAudit, "caller": wantCaller, "code": tt.code.String(), "token_id": wantToken} {
					if a[k] != v {
						t.Errorf("audit %s = %v, want %v (line %v)", k, a[k], v, a)
					}
				}
				if a["user_id"] == nil || a["token_id"] == nil {
					t.Errorf("audit line without user_id or token_id: %v", a)
				}
			}
			if n, ok := got["messages_sent"]; tt.stream != ok || (ok && n != float64(tt.sent)) {
				t.Errorf("messages_sent = %v (present %v), want %d (present %v)", n, ok, tt.sent, tt.stream)
			}
			if f, ok := got["forwarded_for"]; (tt.forwarded != "") != ok || (ok && f != tt.forwarded) {
				t.Errorf("forwarded_for = %v, want %q", f, tt.forwarded)
			}
			if _, ok := got["error"]; ok != (tt.code != codes.OK) {
				t.Errorf("error attribute present = %v for code %v", ok, tt.code)
			}

			out := e.logs.String()
			for _, s := range []string{bearerValue, mintedToken, requestField} {
				if strings.Contains(out, s) {
					t.Errorf("log contains %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestLevelFor(t *testing.T) {
	want := map[codes.Code]slog.Level{
		codes.OK: slog.LevelInfo, codes.Canceled: slog.LevelInfo, codes.InvalidArgument: slog.LevelInfo,
		codes.NotFound: slog.LevelInfo, codes.AlreadyExists: slog.LevelInfo, codes.PermissionDenied: slog.LevelInfo,
		codes.FailedPrecondition: slog.LevelInfo, codes.Aborted: slog.LevelInfo, codes.OutOfRange: slog.LevelInfo,
		codes.Unauthenticated: slog.LevelInfo,
		codes.Unavailable:     slog.LevelWarn, codes.DeadlineExceeded: slog.LevelWarn, codes.ResourceExhausted: slog.LevelWarn,
		codes.Internal: slog.LevelError, codes.Unknown: slog.LevelError, codes.DataLoss: slog.LevelError,
		codes.Unimplemented: slog.LevelError,
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if got := levelFor(c); got != want[c] {
			t.Errorf("levelFor(%v) = %v, want %v", c, got, want[c])
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name   string
		level  slog.Level
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", slog.LevelInfo, "json", func(t *testing.T, out string) {
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil {
				t.Fatalf("not one JSON line: %q", out)
			}
			if m["msg"] != "hello" || m["level"] != "INFO" || m["k"] != "v" {
				t.Errorf("line = %v", m)
			}
		}},
		{"text", slog.LevelInfo, "text", func(t *testing.T, out string) {
			if !strings.Contains(out, "level=INFO msg=hello k=v") {
				t.Errorf("text line = %q", out)
			}
		}},
		{"level filters", slog.LevelWarn, "json", func(t *testing.T, out string) {
			if out != "" {
				t.Errorf("info logged at warn level: %q", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			l := New(&b, tt.level, tt.format)
			l.Debug("debug line")
			l.Info("hello", "k", "v")
			tt.check(t, b.String())
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"aé", 2, "a…"}, // never splits a UTF-8 sequence
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
