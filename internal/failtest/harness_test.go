// Package failtest holds the failure-semantics tests of cbkgate: the whole
// server (config.Load, app.New, Run on 127.0.0.1:0 ports) driven over a real
// gRPC connection and the real JSON gateway, in front of a misbehaving
// upstream (internal/faultyupstream) or the emulator. Each test pins one row
// of the README's "Failure semantics" table.
package failtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

// heldSecret is the upstream secret cbkgate holds in these tests; the
// faulty upstream checks that it arrives.
const heldSecret = "sk-failtest-held-0123456789abcdef"

// callTimeout bounds every call a test makes that is not about deadlines,
// so that a hang fails the test rather than the run.
const callTimeout = 20 * time.Second

const logKeep = 64 << 10

// gate is one running cbkgate with a gRPC and an HTTP client.
type gate struct {
	t       *testing.T
	app     *app.App
	conn    *grpc.ClientConn
	api     tokenv1.TokenServiceClient
	httpURL string
	hc      *http.Client
	logs    *testlog.Buffer
	bearer  string // pass-through: the caller's ChatBotKit secret

	cancel  context.CancelFunc
	done    chan error
	stopped atomic.Bool
	runErr  error
}

type gateConfig struct {
	args            []string
	passThrough     bool
	shutdownTimeout string
}

type gateOption func(*gateConfig)

// passThrough runs cbkgate without a held secret: each call carries the
// caller's own ChatBotKit secret.
func passThrough() gateOption { return func(c *gateConfig) { c.passThrough = true } }

// withArgs adds command-line arguments. With --api-keys-file among them,
// callers must authenticate (no --allow-unauthenticated).
func withArgs(args ...string) gateOption {
	return func(c *gateConfig) { c.args = append(c.args, args...) }
}

// shutdownTimeout sets --shutdown-timeout.
func shutdownTimeout(d time.Duration) gateOption {
	return func(c *gateConfig) { c.shutdownTimeout = d.String() }
}

// startGate runs cbkgate in front of upstreamURL until the test ends.
func startGate(t *testing.T, upstreamURL string, opts ...gateOption) *gate {
	t.Helper()
	gc := gateConfig{shutdownTimeout: "10s"}
	for _, o := range opts {
		o(&gc)
	}
	args := []string{
		"--grpc-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--upstream=" + upstreamURL,
		"--shutdown-timeout=" + gc.shutdownTimeout,
	}
	env := map[string]string{}
	keys := false
	for _, a := range gc.args {
		keys = keys || strings.HasPrefix(a, "--api-keys-file")
	}
	args = append(args, gc.args...)
	if !gc.passThrough {
		env[config.EnvAPISecret] = heldSecret
		if !keys {
			args = append(args, "--allow-unauthenticated")
		}
	}
	cfg, err := config.Load(args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	logs := &testlog.Buffer{Keep: logKeep}
	a, err := app.New(cfg, logging.New(logs, slog.LevelInfo, "json"))
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gate{
		t: t, app: a, conn: conn, api: tokenv1.NewTokenServiceClient(conn),
		httpURL: "http://" + a.HTTPAddr().String(),
		hc:      &http.Client{Transport: &http.Transport{}},
		logs:    logs,
		cancel:  cancel,
		done:    make(chan error, 1),
	}
	if gc.passThrough {
		g.bearer = "sk-caller-own-secret-0123456789"
	}
	go func() { g.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		if err := g.stop(30 * time.Second); err != nil {
			t.Errorf("Run returned %v", err)
		}
		conn.Close()
		g.hc.CloseIdleConnections()
		if t.Failed() {
			t.Logf("cbkgate logs:\n%s", logs.String())
		}
	})
	g.waitReady()
	return g
}

// waitReady polls /readyz, bounded: Run marks the server ready after its
// goroutines start.
func (g *gate) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := g.hc.Get(g.httpURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("cbkgate not ready after 10s: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // bounded polling
	}
}

// stop ends Run (as SIGTERM does in cmd/server) and waits for it, at most
// within; it returns Run's error. Later calls return the same.
func (g *gate) stop(within time.Duration) error {
	if g.stopped.Swap(true) {
		return g.runErr
	}
	g.cancel()
	select {
	case g.runErr = <-g.done:
		return g.runErr
	case <-time.After(within):
		g.t.Fatalf("Run did not return within %s of its context ending", within)
		return nil
	}
}

// ctx returns a call context bounded by callTimeout, carrying the caller's
// bearer in pass-through mode.
func (g *gate) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	g.t.Cleanup(cancel)
	return g.withAuth(ctx)
}

func (g *gate) withAuth(ctx context.Context) context.Context {
	if g.bearer != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.bearer)
	}
	return ctx
}

// list runs a List to its end and returns what arrived and the final error.
func (g *gate) list(ctx context.Context, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, error) {
	stream, err := g.api.List(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*tokenv1.ListResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// create is a Create with a fixed body.
func (g *gate) create(ctx context.Context) (*tokenv1.CreateResponse, error) {
	return g.api.Create(ctx, &tokenv1.CreateRequest{UserId: "u1", Name: "n"})
}

// httpResult is one answer of the gateway.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the gateway and reads the whole answer.
func (g *gate) do(ctx context.Context, method, path, body string) httpResult {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.httpURL+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+g.bearer)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantCode fails unless err has the code.
func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	if st.Code() != want {
		t.Fatalf("code %s (%q), want %s", st.Code(), st.Message(), want)
	}
	return st
}

// errorInfo returns the status's ErrorInfo, or nil.
func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// ownReason reports whether the status carries cbkgate's own ErrorInfo
// with reason.
func ownReason(st *status.Status, reason string) bool {
	ei := errorInfo(st)
	return ei.GetDomain() == "cbkgate" && ei.GetReason() == reason
}

// retryInfo returns the status's RetryInfo, or nil.
func retryInfo(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

// wantErrorInfo checks the ErrorInfo of an error from an upstream answer.
func wantErrorInfo(t *testing.T, st *status.Status, reason string, httpStatus string) {
	t.Helper()
	ei := errorInfo(st)
	if ei == nil {
		t.Fatalf("status %s %q has no ErrorInfo; details %v", st.Code(), st.Message(), st.Details())
	}
	if ei.GetReason() != reason || ei.GetDomain() != "chatbotkit.com" || ei.GetMetadata()["http_status"] != httpStatus {
		t.Fatalf("ErrorInfo reason %q domain %q http_status %q, want %q, chatbotkit.com, %q",
			ei.GetReason(), ei.GetDomain(), ei.GetMetadata()["http_status"], reason, httpStatus)
	}
}

// newUpstream starts a faulty upstream, closed when the test ends (after
// cbkgate, since cleanups run last-in first-out).
func newUpstream(t *testing.T) *faultyupstream.Server {
	t.Helper()
	s, err := faultyupstream.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// wantCalls fails unless route got exactly n requests, and nothing reached
// a path that is not one of the four endpoints.
func wantCalls(t *testing.T, up *faultyupstream.Server, route faultyupstream.Route, n int) {
	t.Helper()
	if got := up.Calls(route); got != n {
		t.Fatalf("upstream %s called %d times, want %d; requests: %+v", route, got, n, replies(up))
	}
	if got := up.Calls(faultyupstream.Unknown); got != 0 {
		t.Fatalf("%d requests reached an unknown upstream path: %+v", got, replies(up))
	}
}

func replies(up *faultyupstream.Server) []string {
	var out []string
	for _, r := range up.Requests() {
		out = append(out, string(r.Route)+": "+r.Reply)
	}
	return out
}

// ids returns the token ids of a listing, in order.
func ids(rs []*tokenv1.ListResponse) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.GetToken().GetId()
	}
	return out
}

func tokenIDs(ts []faultyupstream.Token) []string {
	out := make([]string, len(ts))
	for i, tok := range ts {
		out[i] = tok.ID
	}
	return out
}
