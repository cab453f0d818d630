// Package failtest holds the failure-semantics tests of cbkgate: the whole
// server (internal/gatetest: config.Load, app.New, Run on 127.0.0.1:0
// ports) driven over a real gRPC connection and the real JSON gateway, in
// front of a misbehaving upstream (internal/faultyupstream) or the
// emulator. Each test pins one row of the README's "Failure semantics"
// table.
package failtest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// heldSecret is the upstream secret cbkgate holds in these tests; the
// faulty upstream checks that it arrives.
const heldSecret = "sk-failtest-held-0123456789abcdef"

// callTimeout bounds every call a test makes that is not about deadlines,
// so that a hang fails the test rather than the run.
const callTimeout = gatetest.CallTimeout

const logKeep = 64 << 10

// gate is one running cbkgate (internal/gatetest) with the caller's side of
// these tests: the HTTP client they use and, in pass-through mode, the
// caller's own ChatBotKit secret that every call carries.
type gate struct {
	*gatetest.Gate
	t      *testing.T
	hc     *http.Client
	bearer string // pass-through: the caller's ChatBotKit secret
}

// startGate runs cbkgate in front of upstreamURL until the test ends: by
// default holding heldSecret, callers let in unauthenticated (unless opts
// have --api-keys-file), --shutdown-timeout=10s, info logs, the last
// logKeep bytes kept. gatetest.PassThrough() drops the held secret.
func startGate(t *testing.T, upstreamURL string, opts ...gatetest.Option) *gate {
	t.Helper()
	g := &gate{t: t, Gate: gatetest.Start(t, upstreamURL, append([]gatetest.Option{
		gatetest.Held(heldSecret),
		gatetest.ShutdownTimeout(10 * time.Second),
		gatetest.LogLevel(slog.LevelInfo),
		gatetest.LogKeep(logKeep),
	}, opts...)...)}
	g.hc = g.HTTP()
	if g.HeldSecret() == "" {
		g.bearer = "sk-caller-own-secret-0123456789"
	}
	return g
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
	stream, err := g.Client().List(ctx, req)
	if err != nil {
		return nil, err
	}
	return gatetest.Recv(stream)
}

// create is a Create with a fixed body.
func (g *gate) create(ctx context.Context) (*tokenv1.CreateResponse, error) {
	return g.Client().Create(ctx, &tokenv1.CreateRequest{UserId: "u1", Name: "n"})
}

// httpResult is one answer of the gateway.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the gateway and reads the whole answer.
func (g *gate) do(ctx context.Context, method, path, body string) httpResult {
	t := g.t
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+g.bearer)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
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

// ownReason reports whether the status carries cbkgate's own ErrorInfo
// with reason.
func ownReason(st *status.Status, reason string) bool {
	ei := gatetest.ErrorInfo(st)
	return ei.GetDomain() == "cbkgate" && ei.GetReason() == reason
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

// wantResumesAt checks that cursor, passed back to List, has the upstream
// asked to list from upstreamCursor (one more list request, answered with
// an empty page).
func wantResumesAt(t *testing.T, g *gate, up *faultyupstream.Server, cursor, upstreamCursor string) {
	t.Helper()
	up.Script(faultyupstream.List, faultyupstream.Page(""))
	if _, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", Cursor: cursor}); err != nil {
		t.Fatalf("resuming from %q: %v", cursor, err)
	}
	reqs := up.Requests()
	if got := reqs[len(reqs)-1].Query.Get("cursor"); got != upstreamCursor {
		t.Errorf("cursor %q resumed upstream at %q, want %q", cursor, got, upstreamCursor)
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
