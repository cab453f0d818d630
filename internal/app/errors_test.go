package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

const upstreamMessage = "upstream says no"

// failingUpstream answers every request with status and a ChatBotKit
// error body (and Retry-After, if set). failures counts those answers.
func failingUpstream(t *testing.T, status int, code, retryAfter string) (up *fu.Server, failures func() int) {
	t.Helper()
	up = fu.Start(t)
	fail := fu.Error(status, code, upstreamMessage)
	if retryAfter != "" {
		fail = fail.WithHeader("Retry-After", retryAfter)
	}
	up.SetDefaultAll(fail)
	return up, func() int {
		n := 0
		for _, r := range up.Requests() {
			if r.Reply == fail.String() {
				n++
			}
		}
		return n
	}
}

// firstPage is the one good page of a listing that then fails: three
// tokens and a cursor.
var firstPage = fu.Page("page-2", fu.Tokens("tok_", 3)...)

// TestListUpstreamFailure: a listing that fails upstream, after the first
// page or before any token, ends with the mapped status after the tokens
// already sent over Server-Sent Events (a final error event: HTTP 200 once
// a token went out, else the matching status), Connect and gRPC-Web. The
// mapping itself is internal/service's (TestUpstreamErrorMapping); over gRPC
// and the NDJSON gateway, failtest's TestFaultStatusList and
// TestFaultStatusHTTP pin every status, before and after a page.
func TestListUpstreamFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status  int
		code    string
		want    codes.Code
		retried bool
	}{
		{http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", codes.Unavailable, true},
		{http.StatusBadGateway, "BAD_GATEWAY", codes.Unavailable, true},
		{http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", codes.Internal, false},
		{http.StatusNotFound, "NOT_FOUND", codes.NotFound, false},
		{http.StatusForbidden, "NOT_AUTHORIZED", codes.PermissionDenied, false},
	}
	for _, tc := range cases {
		for _, failFirst := range []bool{false, true} {
			name := fmt.Sprintf("%d/after-first-page", tc.status)
			if failFirst {
				name = fmt.Sprintf("%d/before-first-token", tc.status)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				up, failures := failingUpstream(t, tc.status, tc.code, "")
				s := startServer(t, up.URL, gatetest.Held("held-secret"))
				wantTokens := 3
				if failFirst {
					wantTokens = 0
				}
				e := s.sseCaller("")
				for _, c := range []caller{e, s.connectCaller(""), s.grpcWebCaller("")} {
					if !failFirst {
						up.Script(fu.List, firstPage)
					}
					before := failures()
					var rs []*tokenv1.ListResponse
					var st *status.Status
					var httpStatus int
					if c == caller(e) {
						r := e.listRaw(t, &tokenv1.ListRequest{UserId: "u"})
						rs, st, httpStatus = r.results, r.err, r.httpStatus
					} else {
						rs, st = c.list(t, &tokenv1.ListRequest{UserId: "u"})
					}
					if len(rs) != wantTokens {
						t.Errorf("%v: %d tokens before the error, want %d", c, len(rs), wantTokens)
					}
					if wantTokens > 0 && rs[2].GetCursor() == "" {
						t.Errorf("%v: last token of the page has no cursor", c)
					}
					if st == nil {
						t.Fatalf("%v: listing ended OK although upstream failed", c)
					}
					if st.Code() != tc.want || st.Message() != upstreamMessage {
						t.Errorf("%v: status %v %q, want %v %q", c, st.Code(), st.Message(), tc.want, upstreamMessage)
					}
					gatetest.WantErrorInfo(t, st, tc.code, tc.status)
					if c == caller(e) {
						wantHTTP := http.StatusOK
						if failFirst {
							wantHTTP = tc.status
							if tc.status == http.StatusBadGateway {
								wantHTTP = http.StatusServiceUnavailable // UNAVAILABLE
							}
						}
						if httpStatus != wantHTTP {
							t.Errorf("%v: HTTP status %d, want %d", c, httpStatus, wantHTTP)
						}
					}
					n := failures() - before
					switch {
					case tc.retried && (n < 2 || n > 10):
						t.Errorf("%v: %d upstream attempts of the failing page, want a few retries (2..10)", c, n)
					case !tc.retried && n != 1:
						t.Errorf("%v: %d upstream attempts of the failing page, want exactly 1 (not retried)", c, n)
					}
				}
			})
		}
	}
}

// TestUnaryUpstreamErrors: upstream error answers to Create, Update and
// Delete reach Connect and gRPC-Web callers with the contract's codes,
// the upstream message and ErrorInfo (and RetryInfo for 429). Writes that
// reached upstream are never retried. Over gRPC and the JSON gateway
// (the HTTP status, Retry-After), failtest's TestFaultStatusUnary and
// TestFaultStatusHTTP pin every status.
func TestUnaryUpstreamErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status     int
		code       string
		retryAfter string
		want       codes.Code
	}{
		{http.StatusBadRequest, "BAD_REQUEST", "", codes.InvalidArgument},
		{http.StatusPaymentRequired, "NO_SUBSCRIPTION", "", codes.FailedPrecondition},
		{http.StatusConflict, "CONFLICT", "", codes.Aborted},
		{http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", "", codes.InvalidArgument},
		{http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "7", codes.ResourceExhausted},
		{http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "", codes.Internal},
		{http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "", codes.Unavailable},
		{http.StatusGatewayTimeout, "GATEWAY_TIMEOUT", "", codes.Unavailable},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			up, failures := failingUpstream(t, tc.status, tc.code, tc.retryAfter)
			s := startServer(t, up.URL, gatetest.Held("held-secret"))
			for _, c := range []caller{s.connectCaller(""), s.grpcWebCaller("")} {
				for _, rpc := range []struct {
					name string
					run  func() *status.Status
				}{
					{"Create", func() *status.Status { _, st := c.create(t, &tokenv1.CreateRequest{UserId: "u", Name: "n"}); return st }},
					{"Update", func() *status.Status {
						_, st := c.update(t, &tokenv1.UpdateRequest{UserId: "u", TokenId: "t"})
						return st
					}},
					{"Delete", func() *status.Status {
						_, st := c.delete(t, &tokenv1.DeleteRequest{UserId: "u", TokenId: "t"})
						return st
					}},
				} {
					before := failures()
					st := rpc.run()
					if st.Code() != tc.want || st.Message() != upstreamMessage {
						t.Errorf("%v %s: status %v %q, want %v %q", c, rpc.name, st.Code(), st.Message(), tc.want, upstreamMessage)
					}
					gatetest.WantErrorInfo(t, st, tc.code, tc.status)
					if n := failures() - before; n != 1 {
						t.Errorf("%v %s: %d upstream requests, want exactly 1 (a write that reached upstream is not retried)", c, rpc.name, n)
					}
					if tc.retryAfter != "" {
						var ri *errdetails.RetryInfo
						for _, d := range st.Details() {
							if r, ok := d.(*errdetails.RetryInfo); ok {
								ri = r
							}
						}
						if ri == nil || ri.GetRetryDelay().AsDuration() != 7*time.Second {
							t.Errorf("%v %s: RetryInfo %v, want 7s", c, rpc.name, ri)
						}
					}
				}
			}
		})
	}
}
