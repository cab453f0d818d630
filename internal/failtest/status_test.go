package failtest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// statusCase is one upstream error status: the gRPC code the contract maps
// it to, the HTTP status the gateway answers with, and whether a list read
// retries it.
type statusCase struct {
	status    int
	code      string // the upstream body's code
	grpc      codes.Code
	http      int
	retryList bool
}

var statusCases = []statusCase{
	{400, "BAD_REQUEST", codes.InvalidArgument, 400, false},
	{401, "NOT_AUTHENTICATED", codes.Unauthenticated, 401, false},
	{402, "NO_SUBSCRIPTION", codes.FailedPrecondition, 400, false},
	{403, "NOT_AUTHORIZED", codes.PermissionDenied, 403, false},
	{404, "NOT_FOUND", codes.NotFound, 404, false},
	{408, "TIMEOUT", codes.DeadlineExceeded, 504, false},
	{409, "CONFLICT", codes.Aborted, 409, false},
	{413, "CONTENT_TOO_LARGE", codes.InvalidArgument, 400, false},
	{422, "UNPROCESSABLE_ENTITY", codes.InvalidArgument, 400, false},
	{429, "LIMITS_REACHED", codes.ResourceExhausted, 429, true},
	{500, "INTERNAL_SERVER_ERROR", codes.Internal, 500, false},
	{501, "NOT_IMPLEMENTED", codes.Unimplemented, 501, false},
	{502, "BAD_GATEWAY", codes.Unavailable, 503, true},
	{503, "SERVICE_UNAVAILABLE", codes.Unavailable, 503, true},
	{504, "GATEWAY_TIMEOUT", codes.Unavailable, 503, true},
	// Not in the contract's table: UNKNOWN, as gRPC's own HTTP mapping does.
	{418, "TEAPOT", codes.Unknown, 500, false},
}

// maxAttempts is the REST client's bound on the attempts of a list read
// (cbkgate leaves it at the client's default).
const maxAttempts = chatbotkit.DefaultMaxAttempts

func (c statusCase) message() string {
	return "upstream says " + strconv.Itoa(c.status) + " for this reason"
}

// reply is the upstream's answer in case c: its status and {message, code}
// body, and for 429 a Retry-After of 7 seconds (for writes, which are
// never retried, so nothing waits for it).
func (c statusCase) reply(retryAfter bool) fu.Reply {
	r := fu.Error(c.status, c.code, c.message())
	if retryAfter && c.status == http.StatusTooManyRequests {
		r = r.WithHeader("Retry-After", "7")
	}
	return r
}

// wantStatus checks what the caller saw in case c: the contract's code, the
// upstream message, ErrorInfo{reason: upstream code, domain, http_status},
// and for a 429 with Retry-After, RetryInfo of 7s.
func (c statusCase) wantStatus(t *testing.T, what string, st *status.Status, retryAfter bool) {
	t.Helper()
	if st.Code() != c.grpc || st.Message() != c.message() {
		t.Fatalf("%s: status %s %q, want %s %q", what, st.Code(), st.Message(), c.grpc, c.message())
	}
	gatetest.WantErrorInfo(t, st, c.code, c.status)
	if retryAfter && c.status == http.StatusTooManyRequests {
		if ri := gatetest.RetryInfo(st); ri == nil || ri.GetRetryDelay().AsDuration() != 7*time.Second {
			t.Errorf("%s: RetryInfo %v, want 7s", what, ri)
		}
	}
}

// listAttempts is how many times a list page failing in case c is asked
// for.
func (c statusCase) listAttempts() int {
	if c.retryList {
		return maxAttempts
	}
	return 1
}

// TestFaultStatusUnary: every upstream error status, answered to Create,
// Update and Delete: the caller sees the contract's code, the upstream
// message, ErrorInfo{reason: upstream code, domain, http_status} (and
// RetryInfo for a 429 with Retry-After); each write reached the upstream
// exactly once (a create answered by 500 is never sent again, so no second
// token can be minted).
func TestFaultStatusUnary(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			reply := c.reply(true)
			up.Script(fu.Create, reply)
			up.Script(fu.Update, reply)
			up.Script(fu.Delete, reply)

			_, err := g.create(g.ctx())
			c.wantStatus(t, "create", wantCode(t, err, c.grpc), true)
			wantCalls(t, up, fu.Create, 1)

			name := "x"
			_, err = g.Client().Update(g.ctx(), &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Name: &name})
			c.wantStatus(t, "update", wantCode(t, err, c.grpc), true)
			wantCalls(t, up, fu.Update, 1)

			_, err = g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: "t1"})
			c.wantStatus(t, "delete", wantCode(t, err, c.grpc), true)
			wantCalls(t, up, fu.Delete, 1)
		})
	}
}

// TestFaultStatusList: every upstream error status, answered to every
// attempt at a list page, the first or one after a page of tokens: the
// caller sees the same code, message and ErrorInfo, after the tokens
// already listed (the last with its cursor); 429, 502, 503 and 504 were
// retried up to the bound of 4 attempts, every other status was not
// retried.
func TestFaultStatusList(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			up.SetDefault(fu.List, c.reply(false))

			got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
			if len(got) != 0 {
				t.Errorf("%d tokens arrived from a failing listing", len(got))
			}
			c.wantStatus(t, "first page", wantCode(t, err, c.grpc), false)
			wantCalls(t, up, fu.List, c.listAttempts())

			first := fu.Tokens("tok_", 2)
			up.Script(fu.List, fu.Page("c1", first...))
			got, err = g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1", PageSize: 2})
			if !slices.Equal(ids(got), tokenIDs(first)) {
				t.Fatalf("listed %v before the error, want %v", ids(got), tokenIDs(first))
			}
			c.wantStatus(t, "second page", wantCode(t, err, c.grpc), false)
			wantCalls(t, up, fu.List, 2*c.listAttempts()+1)
			wantResumesAt(t, g, up, got[len(got)-1].GetCursor(), "c1")
		})
	}
}

// TestFaultStatusHTTP: the same statuses through the JSON gateway: the HTTP
// status of the gRPC code and a JSON google.rpc.Status body with the
// upstream message and ErrorInfo (and for a 429 with Retry-After, that
// header and RetryInfo), for POST, PATCH and DELETE; for a List that fails
// before its first token, that status and one {"error": Status} line; for
// one that fails after a page, 200, the page's lines and the error line.
func TestFaultStatusHTTP(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			for _, r := range []fu.Route{fu.Create, fu.Update, fu.Delete} {
				up.Script(r, c.reply(true))
			}
			up.SetDefault(fu.List, c.reply(false))

			for _, w := range []struct {
				route        fu.Route
				method, path string
				body         string
			}{
				{fu.Create, http.MethodPost, "/v1/users/u1/tokens", `{"name":"n"}`},
				{fu.Update, http.MethodPatch, "/v1/users/u1/tokens/t1", `{"name":"n"}`},
				{fu.Delete, http.MethodDelete, "/v1/users/u1/tokens/t1", ""},
			} {
				res := g.do(g.ctx(), w.method, w.path, w.body)
				if res.status != c.http {
					t.Fatalf("%s: HTTP %d, want %d; body %s", w.method, res.status, c.http, res.body)
				}
				if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q, want application/json", w.method, ct)
				}
				c.wantStatus(t, w.method, gatetest.Status(t, res.body), true)
				if c.status == 401 && res.header.Get("WWW-Authenticate") != `Bearer realm="cbkgate"` {
					t.Errorf("%s: 401 without WWW-Authenticate: Bearer", w.method)
				}
				if got := res.header.Get("Retry-After"); c.status == 429 && got != "7" {
					t.Errorf("%s: 429 with Retry-After %q, want the upstream's 7", w.method, got)
				}
				wantCalls(t, up, w.route, 1)
			}

			res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
			if res.status != c.http {
				t.Fatalf("GET list: HTTP %d, want %d; body %s", res.status, c.http, res.body)
			}
			results, errLine := gatetest.NDJSON(t, res.body)
			if len(results) != 0 || errLine == nil {
				t.Fatalf("GET list: %d results and error line %v, want only an error line", len(results), errLine)
			}
			c.wantStatus(t, "GET list", errLine, false)
			wantCalls(t, up, fu.List, c.listAttempts())

			first := fu.Tokens("tok_", 2)
			up.Script(fu.List, fu.Page("c1", first...))
			res = g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens?page_size=2", "")
			if res.status != http.StatusOK {
				t.Fatalf("GET list failing after a page: HTTP %d, want 200 (the tokens went out first); body %s", res.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("GET list failing after a page: Content-Type %q, want application/x-ndjson", ct)
			}
			results, errLine = gatetest.NDJSON(t, res.body)
			if !slices.Equal(ids(results), tokenIDs(first)) || errLine == nil {
				t.Fatalf("GET list failing after a page: results %v, error line %v; want %v then the error", ids(results), errLine, tokenIDs(first))
			}
			c.wantStatus(t, "GET list failing after a page", errLine, false)
			wantCalls(t, up, fu.List, 2*c.listAttempts()+1)
		})
	}
}

// TestFaultErrorBodyNotJSON: an error status whose body is not JSON (an
// HTML page from a proxy): the code follows the status, ErrorInfo's reason
// falls back to the status's standard code and the message to its text.
func TestFaultErrorBodyNotJSON(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.Script(fu.Create, fu.Raw(http.StatusBadGateway, "text/html", "<html><body>502 Bad Gateway</body></html>"))

	_, err := g.create(g.ctx())
	st := wantCode(t, err, codes.Unavailable)
	if st.Message() != http.StatusText(http.StatusBadGateway) {
		t.Errorf("message %q, want %q", st.Message(), http.StatusText(http.StatusBadGateway))
	}
	gatetest.WantErrorInfo(t, st, "BAD_GATEWAY", 502)
	wantCalls(t, up, fu.Create, 1)
}

// TestFaultErrorBodyOversized: an error status with a body that never ends
// is read only up to a small cap: the caller gets the status's code with the
// fallback message, at once, and cbkgate read a bounded amount.
func TestFaultErrorBodyOversized(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	up.Script(fu.Create, fu.Oversized(http.StatusConflict))

	_, err := g.create(g.ctx())
	st := wantCode(t, err, codes.Aborted)
	gatetest.WantErrorInfo(t, st, "CONFLICT", 409)
	wantCalls(t, up, fu.Create, 1)
	if !up.Wait(callTimeout, func(rs []fu.Request) bool { return rs[0].Done }) {
		t.Fatal("the upstream is still sending the body")
	}
	// The client reads at most 64 KiB of an error body and closes the
	// connection; what went out beyond that filled socket buffers (a few
	// MiB on loopback). Without a cap it would have read all of 1 GiB.
	n := up.Requests()[0].BytesWritten
	t.Logf("the upstream got %d bytes of an endless error body out", n)
	if n >= 32<<20 {
		t.Errorf("the upstream sent %d bytes before cbkgate stopped reading", n)
	}
}
