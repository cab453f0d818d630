// Package gatetest runs a real cbkgate for end-to-end tests: config.Load,
// app.New and Run on 127.0.0.1:0 ports, in front of a given upstream
// (internal/faultyupstream, alone or in front of the emulator), with a gRPC
// connection and an HTTP client on it and its log lines in a buffer (Start).
// It also reads what the API answers (Recv, Status, NDJSON, ErrorInfo,
// RetryInfo, WantErrorInfo) and checks that nothing of cbkgate outlives it
// (Goroutines, WantNothingLeft). It is for tests only: no production code
// imports it. internal/app's and internal/failtest's tests use it.
package gatetest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

// CallTimeout bounds a single call of a test (and every request of
// HTTPClient's clients), so that a hang fails the test, not the run.
const CallTimeout = 20 * time.Second

// Option is a start option of Start.
type Option func(*options)

type options struct {
	args      []string
	env       map[string]string
	held      string
	shutdown  time.Duration
	level     slog.Level
	logKeep   int
	clientTLS *tls.Config
}

// Args adds command-line arguments after the listen addresses and
// --upstream.
func Args(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// Env sets an environment variable of config.Load.
func Env(key, value string) Option {
	return func(o *options) { o.env[key] = value }
}

// Held makes cbkgate hold secret for ChatBotKit (CHATBOTKIT_API_SECRET).
// Callers are then let in without authenticating (--allow-unauthenticated)
// unless Args names a way to authenticate them (--api-keys-file,
// --tls-client-ca) or has --allow-unauthenticated itself.
func Held(secret string) Option {
	return func(o *options) { o.held = secret }
}

// PassThrough runs cbkgate without a held secret, as without Held: each
// call carries the caller's own ChatBotKit secret. It undoes an earlier
// Held.
func PassThrough() Option {
	return func(o *options) { o.held = "" }
}

// ShutdownTimeout sets --shutdown-timeout (the last one given counts).
func ShutdownTimeout(d time.Duration) Option {
	return func(o *options) { o.shutdown = d }
}

// LogLevel sets the level of cbkgate's JSON logger (default debug).
func LogLevel(l slog.Level) Option {
	return func(o *options) { o.level = l }
}

// LogKeep keeps only about the last n bytes of the log (testlog.Buffer.Keep).
func LogKeep(n int) Option {
	return func(o *options) { o.logKeep = n }
}

// ClientTLS is what the test's clients use to reach cbkgate's TLS
// listeners (given by Args); without it they speak plaintext.
func ClientTLS(c *tls.Config) Option {
	return func(o *options) { o.clientTLS = c }
}

// Gate is one running cbkgate.
type Gate struct {
	t         testing.TB
	app       *app.App
	logs      *testlog.Buffer
	held      string
	grpcAddr  string
	url       string
	clientTLS *tls.Config
	conn      *grpc.ClientConn
	http      *http.Client

	cancel  context.CancelFunc
	exited  chan struct{} // closed when Run has returned
	runErr  error         // Run's result, once exited is closed
	stopped atomic.Bool   // Stop was called
}

// Start runs cbkgate in front of upstream (a base URL) until the test ends;
// it returns once /readyz answers 200. At cleanup it stops cbkgate (unless
// the test did), failing the test if Run returns an error, and prints the
// log if the test failed.
func Start(t testing.TB, upstream string, opts ...Option) *Gate {
	t.Helper()
	o := options{env: map[string]string{}, level: slog.LevelDebug}
	for _, opt := range opts {
		opt(&o)
	}
	args := append([]string{
		"--grpc-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--upstream=" + upstream,
	}, o.args...)
	if o.shutdown != 0 {
		args = append(args, "--shutdown-timeout="+o.shutdown.String())
	}
	if o.held != "" {
		o.env[config.EnvAPISecret] = o.held
		if !hasFlag(o.args, auth.FlagAPIKeysFile, auth.FlagTLSClientCA, auth.FlagAllowUnauth) {
			args = append(args, "--allow-unauthenticated")
		}
	}
	cfg, err := config.Load(args, func(k string) string { return o.env[k] })
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	logs := &testlog.Buffer{Keep: o.logKeep}
	a, err := app.New(cfg, logging.New(logs, o.level, "json"))
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gate{
		t: t, app: a, logs: logs, held: o.held,
		grpcAddr:  a.GRPCAddr().String(),
		url:       "http://" + a.HTTPAddr().String(),
		clientTLS: o.clientTLS,
		cancel:    cancel,
		exited:    make(chan struct{}),
	}
	if cfg.TLSCertFile != "" {
		g.url = "https://" + a.HTTPAddr().String()
	}
	go func() {
		g.runErr = a.Run(ctx)
		close(g.exited)
	}()
	t.Cleanup(func() {
		if !g.stopped.Load() {
			if err := g.Stop(30 * time.Second); err != nil {
				t.Errorf("Run returned %v at cleanup", err)
			}
		}
		if t.Failed() {
			t.Logf("cbkgate logs:\n%s", logs.String())
		}
	})
	g.conn = g.Dial(nil)
	g.http = g.HTTPClient(nil)
	g.waitReady()
	// Ready comes just before the last start line; a test that counts
	// log lines from here on must not count it as its own.
	if !logs.Await(10*time.Second, func(kept string) bool { return strings.Contains(kept, `"msg":"cbkgate serving"`) }) {
		t.Fatalf("no \"cbkgate serving\" line within 10 s of /readyz answering 200")
	}
	return g
}

// hasFlag reports whether args set any of the flags (named without "--").
func hasFlag(args []string, flags ...string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if slices.Contains(flags, name) {
			return true
		}
	}
	return false
}

// waitReady polls /readyz, bounded, until it answers 200: Run marks the
// server ready after its goroutines start.
func (g *Gate) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := g.http.Get(g.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("/readyz not 200 within 10s (last error %v)", err)
		}
		time.Sleep(5 * time.Millisecond) // bounded polling
	}
}

// App is the running app.
func (g *Gate) App() *app.App { return g.app }

// HeldSecret is the secret given to Held, "" in pass-through mode.
func (g *Gate) HeldSecret() string { return g.held }

// Logs holds cbkgate's JSON log lines.
func (g *Gate) Logs() *testlog.Buffer { return g.logs }

// GRPCAddr is the gRPC listener's host:port.
func (g *Gate) GRPCAddr() string { return g.grpcAddr }

// URL is the HTTP listener's base URL, http(s)://host:port.
func (g *Gate) URL() string { return g.url }

// Conn is the test's gRPC connection, closed at cleanup.
func (g *Gate) Conn() *grpc.ClientConn { return g.conn }

// Client is TokenService over Conn.
func (g *Gate) Client() tokenv1.TokenServiceClient { return tokenv1.NewTokenServiceClient(g.conn) }

// Dial returns a new gRPC connection, closed at cleanup. cert, if not nil,
// is presented as the TLS client certificate.
func (g *Gate) Dial(cert *tls.Certificate) *grpc.ClientConn {
	g.t.Helper()
	creds := insecure.NewCredentials()
	if g.clientTLS != nil {
		creds = credentials.NewTLS(g.tlsConfig(cert))
	}
	cc, err := grpc.NewClient(g.grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		g.t.Fatalf("grpc.NewClient: %v", err)
	}
	g.t.Cleanup(func() { cc.Close() })
	return cc
}

// DialCounting returns a plaintext gRPC connection to addr, closed at
// cleanup, and how many times it has dialled (each dial a new TCP
// connection): what the tests of connection ageing watch.
func DialCounting(t testing.TB, addr string) (*grpc.ClientConn, *atomic.Int64) {
	t.Helper()
	dials := new(atomic.Int64)
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, dials
}

// HTTP is the test's HTTP client (as HTTPClient(nil)).
func (g *Gate) HTTP() *http.Client { return g.http }

// HTTPClient returns a new HTTP client for the HTTP listener, on a
// transport of its own whose idle connections close at cleanup; each
// request is bounded by CallTimeout. cert as for Dial.
func (g *Gate) HTTPClient(cert *tls.Certificate) *http.Client {
	tr := &http.Transport{}
	if g.clientTLS != nil {
		tr.TLSClientConfig = g.tlsConfig(cert)
	}
	g.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: CallTimeout}
}

func (g *Gate) tlsConfig(cert *tls.Certificate) *tls.Config {
	tc := g.clientTLS.Clone()
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return tc
}

// Shutdown ends Run's context, as SIGTERM does in cmd/server, and returns
// at once: cbkgate drains.
func (g *Gate) Shutdown() { g.cancel() }

// Done is closed once Run has returned.
func (g *Gate) Done() <-chan struct{} { return g.exited }

// Err is what Run returned; call it after Done is closed.
func (g *Gate) Err() error { return g.runErr }

// Stop ends Run's context and waits for Run to return, failing the test if
// it does not within; it returns Run's error. Later calls return the same.
func (g *Gate) Stop(within time.Duration) error {
	g.t.Helper()
	g.stopped.Store(true)
	g.cancel()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-g.exited:
		return g.runErr
	case <-t.C:
		g.t.Fatalf("Run did not return within %s of its context ending", within)
		return nil
	}
}

// Recv receives the rest of a stream (a List over gRPC): what arrived, and
// the error that ended it (nil at io.EOF).
func Recv[T any](stream interface{ Recv() (T, error) }) ([]T, error) {
	var out []T
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}
