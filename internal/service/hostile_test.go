package service

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// serveService runs svc on a bare gRPC server (no recovery interceptor,
// only the secret a call spends: what the service does on its own is what
// is tested).
func serveService(t *testing.T, svc *Service) tokenv1.TokenServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(spendEmulatorSecret()...)
	tokenv1.RegisterTokenServiceServer(gs, svc)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tokenv1.NewTokenServiceClient(conn)
}

func testClient(t *testing.T, url string) *chatbotkit.Client {
	t.Helper()
	c, err := chatbotkit.New(chatbotkit.Options{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantReason(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == "cbkgate" && ei.GetReason() == reason {
			return st
		}
	}
	t.Fatalf("details %v, want ErrorInfo{cbkgate, %s}", st.Details(), reason)
	return nil
}

// A panic on the goroutine that reads a List's upstream stream, which runs
// outside any recovery interceptor, ends that call with INTERNAL rather
// than the process (this test binary included), and the server goes on
// serving.
func TestPanicWhileReadingListEndsOnlyTheCall(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		w.Write([]byte(`{"type":"item","data":{"id":"a"}}` + "\n"))
	}))
	t.Cleanup(up.Close)
	svc := New(testClient(t, up.URL))
	var panicking atomic.Bool
	panicking.Store(true)
	svc.tokenRead = func() {
		if panicking.Load() {
			panic("a bug on the reading goroutine")
		}
	}
	api := serveService(t, svc)
	_, err := listAll(t, api, &tokenv1.ListRequest{UserId: "u"})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != msgInternal {
		t.Fatalf("got %v, want INTERNAL %q", err, msgInternal)
	}
	panicking.Store(false)
	got, err := listAll(t, api, &tokenv1.ListRequest{UserId: "u"})
	if err != nil || len(got) != 1 {
		t.Fatalf("after the panic: %d tokens, %v; want the one token, OK", len(got), err)
	}
}

// page_size over maxPageSize is clamped, not refused. It sets take only on
// page requests: the first request asks for the stream, without take.
func TestPageSizeIsClampedTo1000(t *testing.T) {
	takes := make(chan string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		takes <- r.URL.Query().Get("take")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("cursor") == "" {
			w.Write([]byte(`{"items":[{"id":"a"}],"cursor":"c1"}`))
			return
		}
		w.Write([]byte(`{"items":[]}`))
	}))
	t.Cleanup(up.Close)
	api := serveService(t, New(testClient(t, up.URL)))
	if _, err := listAll(t, api, &tokenv1.ListRequest{UserId: "u", PageSize: 5000}); err != nil {
		t.Fatal(err)
	}
	if got := <-takes; got != "" {
		t.Fatalf("the stream request's take = %s, want none", got)
	}
	if got := <-takes; got != "1000" {
		t.Fatalf("the page request's take = %s, want 1000", got)
	}
}

// A time a google.protobuf.Timestamp cannot hold (year 10000) is a
// malformed answer, over gRPC as over HTTP (where protojson would refuse
// to write it), and no token of that page goes out.
func TestTimestampOutOfRangeIsMalformed(t *testing.T) {
	page := `{"items":[{"id":"a","createdAt":1,"updatedAt":1},{"id":"b","createdAt":253402300800000,"updatedAt":1}]}`
	up := httptest.NewServer(pagedHandler(t, []string{page}, func(w http.ResponseWriter) { w.WriteHeader(500) }))
	t.Cleanup(up.Close)
	api := serveService(t, New(testClient(t, up.URL)))
	got, err := listAll(t, api, &tokenv1.ListRequest{UserId: "u"})
	wantReason(t, err, codes.Internal, "UPSTREAM_MALFORMED")
	if len(got) != 0 {
		t.Fatalf("tokens %v sent from a malformed page", ids(got))
	}
}

// Transport failures reach the caller as a short generic message: no
// address, URL, path or cursor.
func TestUpstreamDownMessageIsGeneric(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	url := up.URL
	up.Close() // nothing listens there now
	api := serveService(t, New(testClient(t, url)))
	_, err := listAll(t, api, &tokenv1.ListRequest{UserId: "user-secret-path", Cursor: "cursor-xyz"})
	st := wantReason(t, err, codes.Unavailable, "UPSTREAM_UNAVAILABLE")
	for _, leak := range []string{"127.0.0.1", strings.TrimPrefix(url, "http://"), "user-secret-path", "cursor-xyz", "dial", "/v1/"} {
		if strings.Contains(st.Message(), leak) {
			t.Fatalf("message %q shows %q", st.Message(), leak)
		}
	}
}
