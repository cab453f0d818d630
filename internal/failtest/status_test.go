package failtest

import (
	"net/http"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"

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

// TestFaultStatusUnary: every upstream error status, answered to Create,
// Update and Delete: the caller sees the contract's code, the upstream
// message, and ErrorInfo{reason: upstream code, domain, http_status}; each
// write reached the upstream exactly once (a create answered by 500 is never
// sent again, so no second token can be minted).
func TestFaultStatusUnary(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			reply := fu.Error(c.status, c.code, c.message())
			up.Script(fu.Create, reply)
			up.Script(fu.Update, reply)
			up.Script(fu.Delete, reply)

			_, err := g.create(g.ctx())
			st := wantCode(t, err, c.grpc)
			if st.Message() != c.message() {
				t.Errorf("create: message %q, want the upstream's %q", st.Message(), c.message())
			}
			wantErrorInfo(t, st, c.code, strconv.Itoa(c.status))
			wantCalls(t, up, fu.Create, 1)

			name := "x"
			_, err = g.Client().Update(g.ctx(), &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Name: &name})
			wantErrorInfo(t, wantCode(t, err, c.grpc), c.code, strconv.Itoa(c.status))
			wantCalls(t, up, fu.Update, 1)

			_, err = g.Client().Delete(g.ctx(), &tokenv1.DeleteRequest{UserId: "u1", TokenId: "t1"})
			wantErrorInfo(t, wantCode(t, err, c.grpc), c.code, strconv.Itoa(c.status))
			wantCalls(t, up, fu.Delete, 1)
		})
	}
}

// TestFaultStatusList: every upstream error status, answered to every
// attempt at a list page: the caller sees the same code, message and
// ErrorInfo; 429, 502, 503 and 504 were retried up to the bound of 4
// attempts, every other status was not retried.
func TestFaultStatusList(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			up.SetDefault(fu.List, fu.Error(c.status, c.code, c.message()))

			got, err := g.list(g.ctx(), &tokenv1.ListRequest{UserId: "u1"})
			if len(got) != 0 {
				t.Errorf("%d tokens arrived from a failing listing", len(got))
			}
			st := wantCode(t, err, c.grpc)
			if st.Message() != c.message() {
				t.Errorf("message %q, want the upstream's %q", st.Message(), c.message())
			}
			wantErrorInfo(t, st, c.code, strconv.Itoa(c.status))
			want := 1
			if c.retryList {
				want = maxAttempts
			}
			wantCalls(t, up, fu.List, want)
		})
	}
}

// TestFaultStatusHTTP: the same statuses through the JSON gateway: the HTTP
// status of the gRPC code and a JSON google.rpc.Status body with the
// upstream message and ErrorInfo, for a unary route and for a List that
// fails before its first token (one {"error": Status} line).
func TestFaultStatusHTTP(t *testing.T) {
	for _, c := range statusCases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			t.Parallel()
			up := fu.Start(t)
			g := startGate(t, up.URL)
			up.Script(fu.Create, fu.Error(c.status, c.code, c.message()))
			up.SetDefault(fu.List, fu.Error(c.status, c.code, c.message()))

			res := g.do(g.ctx(), http.MethodPost, "/v1/users/u1/tokens", `{"name":"n"}`)
			if res.status != c.http {
				t.Fatalf("POST: HTTP %d, want %d; body %s", res.status, c.http, res.body)
			}
			st := gatetest.Status(t, res.body)
			if st.Code() != c.grpc || st.Message() != c.message() {
				t.Fatalf("POST: Status %s %q, want %s %q", st.Code(), st.Message(), c.grpc, c.message())
			}
			wantErrorInfo(t, st, c.code, strconv.Itoa(c.status))
			if c.status == 401 && res.header.Get("WWW-Authenticate") != `Bearer realm="cbkgate"` {
				t.Errorf("POST: 401 without WWW-Authenticate: Bearer")
			}
			wantCalls(t, up, fu.Create, 1)

			res = g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
			if res.status != c.http {
				t.Fatalf("GET list: HTTP %d, want %d; body %s", res.status, c.http, res.body)
			}
			results, errLine := gatetest.NDJSON(t, res.body)
			if len(results) != 0 || errLine == nil {
				t.Fatalf("GET list: %d results and error line %v, want only an error line", len(results), errLine)
			}
			if errLine.Code() != c.grpc || errLine.Message() != c.message() {
				t.Fatalf("GET list: error %s %q, want %s %q", errLine.Code(), errLine.Message(), c.grpc, c.message())
			}
			wantErrorInfo(t, errLine, c.code, strconv.Itoa(c.status))
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
	wantErrorInfo(t, st, "BAD_GATEWAY", "502")
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
	wantErrorInfo(t, st, "CONFLICT", "409")
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
