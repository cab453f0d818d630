package failtest

// The attack suite, continued: hostile upstream answers, bad HTTP input,
// floods of refused calls, and what one caller may cost upstream.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

// peakHeap runs f while sampling the heap in use, and returns how far
// above its level before f the heap rose at most.
func peakHeap(t *testing.T, f func()) int64 {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapInuse)
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if v := int64(m.HeapInuse) - base; v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// TestHostileHugePage: an upstream page of 800,000 items (13 MB, under
// the body cap; the issue measured one List growing to 650 MB on a page
// of a million), plain, gzipped (2 MB) and in a shape only encoding/json
// reads, is a malformed answer: INTERNAL UPSTREAM_MALFORMED before a token
// goes out, and the heap grows by less than the two body caps a List may
// hold.
func TestHostileHugePage(t *testing.T) {
	gzipped := func(b []byte) string {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(b)
		zw.Close()
		return gz.String()
	}
	plain, odd := fu.PageOfIDs(800_000, false), fu.PageOfIDs(800_000, true)
	up := fu.Start(t)
	g := startGate(t, up.URL)
	for _, c := range []struct {
		name  string
		reply fu.Reply
	}{
		{fmt.Sprintf("plain, %d bytes", len(plain)), fu.Raw(200, "application/json", string(plain))},
		{"gzip", fu.Raw(200, "application/json", gzipped(plain)).WithHeader("Content-Encoding", "gzip")},
		{"gzip, escaped key", fu.Raw(200, "application/json", gzipped(odd)).WithHeader("Content-Encoding", "gzip")},
	} {
		up.Script(fu.List, c.reply)
		var got []*tokenv1.ListResponse
		var err error
		peak := peakHeap(t, func() { got, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 100}) })
		t.Logf("%s: heap peak %+.1f MiB", c.name, float64(peak)/miB)
		st := wantCode(t, err, codes.Internal)
		if !ownReason(st, "UPSTREAM_MALFORMED") {
			t.Errorf("%s: ErrorInfo %v, want UPSTREAM_MALFORMED", c.name, gatetest.ErrorInfo(st))
		}
		if len(got) != 0 {
			t.Errorf("%s: %d tokens passed on from a page longer than asked for", c.name, len(got))
		}
		if peak > 64*miB {
			t.Errorf("%s: the heap grew by %.1f MiB, want under 64 (two 16 MiB body caps and their decoding)", c.name, float64(peak)/miB)
		}
	}
}

// TestHostileEchoedSecrets: an upstream error that echoes the held secret
// or the caller's own bearer (6 characters, short as it is) in its code
// and message shows neither to the caller, over gRPC or HTTP, nor in the
// log.
func TestHostileEchoedSecrets(t *testing.T) {
	check := func(t *testing.T, g *gate, secret string, st *status.Status) {
		t.Helper()
		for _, s := range []string{st.Message(), gatetest.ErrorInfo(st).GetReason(), fmt.Sprint(st.Proto())} {
			if strings.Contains(s, secret) {
				t.Errorf("the caller sees the secret: %q", s)
			}
		}
		if strings.Contains(g.Logs().String(), secret) {
			t.Errorf("the log shows the secret:\n%s", g.Logs().String())
		}
	}
	t.Run("held secret", func(t *testing.T) {
		up := fu.Start(t)
		g := startGate(t, up.URL)
		echo := fu.Error(400, "BAD_"+heldSecret, "we got "+heldSecret)
		up.Script(fu.List, echo)
		up.Script(fu.Create, echo)
		_, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
		check(t, g, heldSecret, wantCode(t, err, codes.InvalidArgument))
		res := g.do(g.ctx(), http.MethodPost, "/v1/users/u1/tokens", `{"name":"n"}`)
		if res.status != http.StatusBadRequest {
			t.Fatalf("HTTP: %d %s", res.status, res.body)
		}
		check(t, g, heldSecret, gatetest.Status(t, res.body))
	})
	t.Run("short pass-through bearer", func(t *testing.T) {
		up := fu.Start(t)
		g := startGate(t, up.URL, gatetest.PassThrough())
		g.bearer = "k6c8zq"
		echo := fu.Error(403, "NO_"+g.bearer, "the key "+g.bearer+" may not do this")
		up.Script(fu.Create, echo, echo)
		_, err := g.create(g.ctx())
		check(t, g, g.bearer, wantCode(t, err, codes.PermissionDenied))
		res := g.do(g.ctx(), http.MethodPost, "/v1/users/u1/tokens", `{"name":"n"}`)
		if res.status != http.StatusForbidden {
			t.Fatalf("HTTP: %d %s", res.status, res.body)
		}
		check(t, g, g.bearer, gatetest.Status(t, res.body))
	})
}

// TestHostileUpstreamDownShowsNoInternals: with the upstream unreachable,
// the caller gets a short generic message, without the upstream's address,
// the request path or the cursor; the call's log line has the details.
func TestHostileUpstreamDownShowsNoInternals(t *testing.T) {
	refused, err := fu.RefusedURL()
	if err != nil {
		t.Fatal(err)
	}
	g := startGate(t, refused)
	addr := strings.TrimPrefix(refused, "http://")
	leaks := []string{addr, "127.0.0.1", "user-path-7f3", "cursor-9d2e", "/v1/partner", "dial", "connection refused"}
	_, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "user-path-7f3", Cursor: "cursor-9d2e"})
	st := wantCode(t, err, codes.Unavailable)
	res := g.do(g.ctx(), http.MethodGet, "/v1/users/user-path-7f3/tokens?cursor=cursor-9d2e", "")
	for _, msg := range []string{st.Message(), string(res.body)} {
		for _, leak := range leaks {
			if strings.Contains(msg, leak) {
				t.Errorf("the caller sees %q in %q", leak, msg)
			}
		}
	}
	if !strings.Contains(g.Logs().String(), addr) {
		t.Errorf("the log does not say which address failed:\n%s", g.Logs().String())
	}
}

// TestHostileBadHTTPInput: what cannot be decoded over HTTP is 400
// INVALID_ARGUMENT: never a 5xx (the issue found 500s), never a redirect
// (307 for a raw "." segment), and nothing reaches the upstream.
func TestHostileBadHTTPInput(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	noRedirect := &http.Client{
		Transport:     g.hc.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	deep := strings.Repeat(`{"a":`, 9000) + "1" + strings.Repeat("}", 9000)
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/v1/users/%ff/tokens/x", `{}`},
		{"GET", "/v1/users/%ff/tokens", ""},
		{"GET", "/v1/users/u1/tokens?cursor=%ff", ""},
		{"GET", "/v1/users/./tokens", ""},
		{"GET", "/v1/users/../users/u1/tokens", ""},
		{"GET", "/v1/users/%2e%2e/tokens", ""},
		{"DELETE", "/v1/users/u1/tokens/.", ""},
		{"GET", "/v1//users/u1/tokens", ""},
		{"POST", "/v1/users/u1/tokens", `{"meta":` + deep + `}`},
		{"POST", "/v1/users/u1/tokens", "{\"name\":\"\xff\"}"},
	} {
		req, err := http.NewRequestWithContext(g.ctx(), c.method, g.URL()+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %.60s: %d %s, want 400", c.method, c.path, resp.StatusCode, body)
			continue
		}
		if st := gatetest.Status(t, body); st.Code() != codes.InvalidArgument {
			t.Errorf("%s %.60s: %v, want INVALID_ARGUMENT", c.method, c.path, st)
		}
	}
	for _, r := range []fu.Route{fu.List, fu.Create, fu.Update, fu.Delete} {
		wantCalls(t, up, r, 0)
	}
}

// TestHostileTimestampOutOfRange: an upstream time a Timestamp cannot hold
// (year 10000) is INTERNAL over gRPC and over HTTP alike (the issue found
// OK over gRPC and an error line over HTTP whose log said OK), and the
// call's log line says what the caller got.
func TestHostileTimestampOutOfRange(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	tok := fu.Token{ID: "t1", CreatedAt: 253402300800000, UpdatedAt: 1}
	up.SetDefault(fu.List, fu.Page("", tok))

	_, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
	if st := wantCode(t, err, codes.Internal); !ownReason(st, "UPSTREAM_MALFORMED") {
		t.Errorf("gRPC: ErrorInfo %v, want UPSTREAM_MALFORMED", gatetest.ErrorInfo(st))
	}
	res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
	results, errLine := gatetest.NDJSON(t, res.body)
	if res.status != http.StatusInternalServerError || len(results) != 0 || errLine == nil || errLine.Code() != codes.Internal {
		t.Fatalf("HTTP: %d, %d results, error line %v; want 500 and an INTERNAL line", res.status, len(results), errLine)
	}
	listLines := 0
	for _, line := range strings.Split(g.Logs().String(), "\n") {
		if strings.Contains(line, `"method":"/cbkgate.token.v1.TokenService/List"`) {
			listLines++
			if !strings.Contains(line, `"code":"Internal"`) {
				t.Errorf("the log says otherwise: %s", line)
			}
		}
	}
	if listLines != 2 {
		t.Errorf("%d List call lines, want 2", listLines)
	}
}

// TestHostileRefusedCallFlood: thousands of List attempts without
// credentials, as fast as one client can make them (the issue measured
// 50,000 lines, 14 MB, in 0.55 s), write a bounded number of log lines,
// and say how many they left out.
func TestHostileRefusedCallFlood(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.PassThrough())
	before := g.Logs().Lines()
	start := time.Now()
	const attempts = 3000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for range attempts / 8 {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				_, err := g.list(ctx, &tokenv1.ListRequest{UserId: fmt.Sprint("u", w)})
				cancel()
				if status.Code(err) != codes.Unauthenticated {
					t.Errorf("List without credentials: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	lines := g.Logs().Lines() - before
	// The limiter's burst, its rate over the flood, and a line or two of
	// the server's own.
	bound := 20 + int(10*elapsed.Seconds()) + 5
	t.Logf("%d refused calls in %s wrote %d log lines (bound %d)", attempts, elapsed.Round(time.Millisecond), lines, bound)
	if lines > bound {
		t.Errorf("%d log lines for %d refused calls, want at most %d", lines, attempts, bound)
	}
	// A later line says how many were left out.
	time.Sleep(150 * time.Millisecond) // let the limiter take a line again
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	g.list(ctx, &tokenv1.ListRequest{UserId: "u"})
	if !strings.Contains(g.Logs().String(), `"suppressed":`) {
		t.Errorf("no line says how many were suppressed")
	}
	wantCalls(t, up, fu.List, 0)
}

// TestHostileGatewayHeaders: one HTTP request with 1,800 Grpc-Metadata-*
// headers (the issue: 1,801 plain-text grpclog lines in a JSON log) writes
// at most a couple of lines, every one of them JSON, and none of those
// headers reaches gRPC.
func TestHostileGatewayHeaders(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	before, beforeGRPC := g.Logs().Lines(), grpcLogs.Lines()
	req, err := http.NewRequestWithContext(g.ctx(), http.MethodGet, g.URL()+"/v1/users/u1/tokens", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1800 {
		req.Header.Set(fmt.Sprintf("Grpc-Metadata-X%d", i), "v\u00e9")
	}
	req.Header.Set("Grpc-Metadata-Injected", "yes")
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := g.Logs().Lines() - before + grpcLogs.Lines() - beforeGRPC
	t.Logf("one request with 1,800 Grpc-Metadata headers wrote %d log lines", lines)
	if lines > 2 {
		t.Errorf("%d log lines, want at most 2:\n%s\n%s", lines, g.Logs().String(), grpcLogs.String())
	}
	for _, b := range []*testlog.Buffer{g.Logs(), grpcLogs} {
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			if line != "" && !strings.HasPrefix(line, "{") {
				t.Errorf("a log line is not JSON: %q", line)
			}
		}
	}
	// Nothing of it went upstream either (the upstream sees what gRPC saw
	// only through cbkgate's own headers).
	for _, r := range up.Requests() {
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x1") || strings.Contains(strings.ToLower(k), "injected") {
				t.Errorf("header %q reached the upstream", k)
			}
		}
	}
}

// TestHostileCallerRate: with --caller-rate 5, one caller (API key) that
// fires creates as fast as it can causes at most 10 (the burst) plus 5 a
// second upstream; the rest are refused RESOURCE_EXHAUSTED RATE_LIMITED
// with RetryInfo and reach no upstream. A List of many pages is paced, not
// failed, and every page counts.
func TestHostileCallerRate(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	const key = "sk-caller-rate-0123456789abcdef"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.Args("--caller-rate=5", "--api-keys-file="+keyFile))
	ctx := func() context.Context {
		return metadata.AppendToOutgoingContext(g.ctx(), "authorization", "Bearer "+key)
	}

	start := time.Now()
	ok, limited := 0, 0
	for range 40 {
		_, err := g.create(ctx())
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			st := status.Convert(err)
			if !ownReason(st, "RATE_LIMITED") || gatetest.RetryInfo(st).GetRetryDelay().AsDuration() <= 0 {
				t.Fatalf("refusal without RATE_LIMITED and RetryInfo: %v", st.Details())
			}
			limited++
		default:
			t.Fatalf("create: %v", err)
		}
	}
	elapsed := time.Since(start)
	bound := 10 + int(5*elapsed.Seconds()) + 1
	t.Logf("40 creates in %s: %d went upstream (bound %d), %d refused", elapsed.Round(time.Millisecond), ok, bound, limited)
	if ok > bound || limited == 0 {
		t.Errorf("%d creates went upstream, %d refused; want at most %d upstream", ok, limited, bound)
	}
	wantCalls(t, up, fu.Create, ok)

	// A List of 12 pages after the burst is spent: paced to the rate,
	// complete, OK.
	all := fu.Tokens("t", 12)
	var pages []fu.Reply
	for i, tok := range all {
		cursor := fmt.Sprint("c", i+1)
		if i == len(all)-1 {
			cursor = ""
		}
		pages = append(pages, fu.Page(cursor, tok))
	}
	up.Script(fu.List, pages...)
	start = time.Now()
	got, err := g.list(ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 1})
	if err != nil || !slices.Equal(ids(got), tokenIDs(all)) {
		t.Fatalf("paced List: %v, %v", ids(got), err)
	}
	t.Logf("a List of 12 pages with the caller's burst spent took %s", time.Since(start).Round(time.Millisecond))
	if time.Since(start) < time.Second {
		t.Errorf("12 pages at 5 a second after the burst took only %s: not paced", time.Since(start))
	}
	wantCalls(t, up, fu.List, 12)
}
