package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/gen/openapiv2"
)

// fake is a TokenService that records what it was called with.
type fake struct {
	tokenv1.UnimplementedTokenServiceServer

	// Set before the first call.
	listN    int           // tokens List sends
	listErr  error         // returned by List after its tokens
	listGate chan struct{} // if set, List waits on it after the first token
	err      error         // returned by Create, Update and Delete

	mu    sync.Mutex
	calls []call
}

type call struct {
	method string
	req    proto.Message
	md     metadata.MD
}

func (f *fake) record(ctx context.Context, method string, req proto.Message) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method, req, md})
}

func (f *fake) called() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fake) List(req *tokenv1.ListRequest, s grpc.ServerStreamingServer[tokenv1.ListResponse]) error {
	f.record(s.Context(), "List", req)
	for i := range f.listN {
		tok := &tokenv1.Token{Id: "tok_" + string(rune('a'+i)), Name: "n", CreateTime: timestamppb.New(time.Unix(1700000000, 0))}
		if err := s.Send(&tokenv1.ListResponse{Token: tok, Cursor: "c" + tok.Id}); err != nil {
			return err
		}
		if i == 0 && f.listGate != nil {
			select {
			case <-f.listGate:
			case <-s.Context().Done():
				return s.Context().Err()
			}
		}
	}
	return f.listErr
}

func (f *fake) Create(ctx context.Context, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, error) {
	f.record(ctx, "Create", req)
	if f.err != nil {
		return nil, f.err
	}
	return &tokenv1.CreateResponse{Id: "tok_new", Token: "secret", CreateTime: timestamppb.New(time.Unix(1700000000, 0))}, nil
}

func (f *fake) Update(ctx context.Context, req *tokenv1.UpdateRequest) (*tokenv1.UpdateResponse, error) {
	f.record(ctx, "Update", req)
	if f.err != nil {
		return nil, f.err
	}
	return &tokenv1.UpdateResponse{Id: req.GetTokenId()}, nil
}

func (f *fake) Delete(ctx context.Context, req *tokenv1.DeleteRequest) (*tokenv1.DeleteResponse, error) {
	f.record(ctx, "Delete", req)
	if f.err != nil {
		return nil, f.err
	}
	return &tokenv1.DeleteResponse{Id: req.GetTokenId()}, nil
}

type env struct {
	url   string
	fake  *fake
	ready *atomic.Bool
}

// start runs f on a real gRPC server on loopback and serves New over it.
func start(t *testing.T, f *fake, opts Options) *env {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	tokenv1.RegisterTokenServiceServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ready := &atomic.Bool{}
	ready.Store(true)
	opts.Conn = conn
	opts.Ready = ready.Load
	h, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, fake: f, ready: ready}
}

func (e *env) do(t *testing.T, method, path, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return e.doReader(t, method, path, r, hdr...)
}

func (e *env) doReader(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func onlyCall(t *testing.T, f *fake, method string) call {
	t.Helper()
	cs := f.called()
	if len(cs) != 1 || cs[0].method != method {
		t.Fatalf("calls = %v, want one %s", cs, method)
	}
	return cs[0]
}

func wantProto(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("request = %v, want %v", got, want)
	}
}

func wantJSON(t *testing.T, body []byte, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Errorf("body = %s, want %s", gb, wb)
	}
}

func TestCreate(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "POST", "/v1/users/u1/tokens",
		`{"name":"n","description":"d","config":{"a":1},"meta":{"k":"v"}}`, "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	wantJSON(t, body, map[string]any{"id": "tok_new", "token": "secret", "create_time": "2023-11-14T22:13:20Z"})
	for k := range resp.Header {
		// The hop's own gRPC headers (content-type: application/grpc)
		// are not the HTTP client's business.
		if strings.HasPrefix(k, "Grpc-Metadata-") {
			t.Errorf("response header %s: %q", k, resp.Header.Values(k))
		}
	}
	c := onlyCall(t, e.fake, "Create")
	wantProto(t, c.req, &tokenv1.CreateRequest{
		UserId: "u1", Name: "n", Description: "d",
		Config: &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(1)}},
		Meta:   &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}},
	})
}

func TestUpdateLeavesUnsetFieldsUnset(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "PATCH", "/v1/users/u1/tokens/t1", `{"name":"x"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	wantJSON(t, body, map[string]any{"id": "t1"})
	c := onlyCall(t, e.fake, "Update")
	wantProto(t, c.req, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Name: proto.String("x")})
}

func TestDelete(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "DELETE", "/v1/users/u%201/tokens/t1", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	wantJSON(t, body, map[string]any{"id": "t1"})
	c := onlyCall(t, e.fake, "Delete")
	wantProto(t, c.req, &tokenv1.DeleteRequest{UserId: "u 1", TokenId: "t1"})
}

func TestListQueryAndNDJSON(t *testing.T) {
	e := start(t, &fake{listN: 2}, Options{})
	resp, body := e.do(t, "GET", "/v1/users/u1/tokens?order=ORDER_ASC&page_size=2&limit=3&cursor=x", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q", ct)
	}
	c := onlyCall(t, e.fake, "List")
	wantProto(t, c.req, &tokenv1.ListRequest{UserId: "u1", Order: tokenv1.Order_ORDER_ASC, PageSize: 2, Limit: 3, Cursor: "x"})

	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	for i, id := range []string{"tok_a", "tok_b"} {
		wantJSON(t, []byte(lines[i]), map[string]any{"result": map[string]any{
			"token":  map[string]any{"id": id, "name": "n", "create_time": "2023-11-14T22:13:20Z"},
			"cursor": "c" + id,
		}})
	}
}

func TestListEmpty(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "GET", "/v1/users/u1/tokens", "")
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q", ct)
	}
}

// TestListFlushesPerToken reads the first token while the server is still
// blocked before sending the second one.
func TestListFlushesPerToken(t *testing.T) {
	gate := make(chan struct{})
	e := start(t, &fake{listN: 2, listGate: gate}, Options{})
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/users/u1/tokens", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("first line: %v", err)
	}
	if !bytes.Contains(first, []byte(`"tok_a"`)) {
		t.Fatalf("first line = %s", first)
	}
	close(gate)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(rest, []byte("\n")); n != 1 || !bytes.Contains(rest, []byte(`"tok_b"`)) {
		t.Fatalf("rest = %q", rest)
	}
}

func errorInfoStatus(t *testing.T, c codes.Code, msg string, extra ...proto.Message) error {
	t.Helper()
	details := append([]proto.Message{&errdetails.ErrorInfo{
		Reason: "NOT_FOUND", Domain: "chatbotkit.com", Metadata: map[string]string{"http_status": "404"},
	}}, extra...)
	var v1 []protoadapt.MessageV1
	for _, d := range details {
		v1 = append(v1, protoadapt.MessageV1Of(d))
	}
	st, err := status.New(c, msg).WithDetails(v1...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// parseStatus decodes a JSON google.rpc.Status and checks its ErrorInfo.
func parseStatus(t *testing.T, b []byte, wantCode codes.Code, wantMsg string) {
	t.Helper()
	var st spb.Status
	if err := protojson.Unmarshal(b, &st); err != nil {
		t.Fatalf("status %s: %v", b, err)
	}
	if codes.Code(st.GetCode()) != wantCode || st.GetMessage() != wantMsg {
		t.Errorf("status = %v %q, want %v %q", codes.Code(st.GetCode()), st.GetMessage(), wantCode, wantMsg)
	}
	var found bool
	for _, d := range status.FromProto(&st).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			found = ei.GetReason() == "NOT_FOUND" && ei.GetDomain() == "chatbotkit.com" && ei.GetMetadata()["http_status"] == "404"
		}
	}
	if !found {
		t.Errorf("no ErrorInfo in %s", b)
	}
}

func TestListErrorMidStream(t *testing.T) {
	e := start(t, &fake{listN: 2, listErr: errorInfoStatus(t, codes.Unavailable, "cut short")}, Options{})
	resp, body := e.do(t, "GET", "/v1/users/u1/tokens", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines = %q", lines)
	}
	for _, l := range lines[:2] {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil || len(m) != 1 || m["result"] == nil {
			t.Errorf("line %s is not a result", l)
		}
	}
	var last map[string]json.RawMessage
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil || len(last) != 1 {
		t.Fatalf("last line %s: %v", lines[2], err)
	}
	parseStatus(t, last["error"], codes.Unavailable, "cut short")
}

func TestListErrorBeforeFirstToken(t *testing.T) {
	err := errorInfoStatus(t, codes.ResourceExhausted, "slow down",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	e := start(t, &fake{listErr: err}, Options{})
	resp, body := e.do(t, "GET", "/v1/users/u1/tokens", "")
	if resp.StatusCode != 429 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q, want 2", ra)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSuffix(body, []byte("\n")), &m); err != nil || len(m) != 1 {
		t.Fatalf("body %s: %v", body, err)
	}
	parseStatus(t, m["error"], codes.ResourceExhausted, "slow down")
}

func TestErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		code       codes.Code
		http       int
		retryAfter string
	}{
		{codes.NotFound, 404, ""},
		{codes.Unauthenticated, 401, ""},
		{codes.InvalidArgument, 400, ""},
		{codes.PermissionDenied, 403, ""},
		{codes.ResourceExhausted, 429, "3"},
		{codes.Unavailable, 503, ""},
		{codes.Internal, 500, ""},
		{codes.DeadlineExceeded, 504, ""},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			var extra []proto.Message
			if tc.retryAfter != "" {
				extra = append(extra, &errdetails.RetryInfo{RetryDelay: durationpb.New(2500 * time.Millisecond)})
			}
			e := start(t, &fake{err: errorInfoStatus(t, tc.code, "upstream says no", extra...)}, Options{})
			resp, body := e.do(t, "DELETE", "/v1/users/u1/tokens/t1", "")
			if resp.StatusCode != tc.http {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.http, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if ra := resp.Header.Get("Retry-After"); ra != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", ra, tc.retryAfter)
			}
			if tc.code == codes.Unauthenticated {
				if wa := resp.Header.Get("WWW-Authenticate"); wa != `Bearer realm="cbkgate"` {
					t.Errorf("WWW-Authenticate = %q", wa)
				}
			}
			parseStatus(t, body, tc.code, "upstream says no")
		})
	}
}

func TestHeaderForwarding(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "DELETE", "/v1/users/u1/tokens/t1", "",
		"Authorization", "Bearer s3cret", "Cookie", "a=b", "X-Custom", "1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	md := onlyCall(t, e.fake, "Delete").md
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("authorization = %q", got)
	}
	for _, k := range []string{"grpcgateway-authorization", "grpcgateway-cookie", "cookie", "x-custom"} {
		if v := md.Get(k); len(v) != 0 {
			t.Errorf("%s forwarded: %q", k, v)
		}
	}
}

func TestUnknownFieldIs400(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "POST", "/v1/users/u1/tokens", `{"nmae":"x"}`)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var st spb.Status
	if err := protojson.Unmarshal(body, &st); err != nil || codes.Code(st.Code) != codes.InvalidArgument {
		t.Errorf("body %s: %v", body, err)
	}
	if n := len(e.fake.called()); n != 0 {
		t.Errorf("%d calls reached gRPC", n)
	}
}

// onlyReader hides the length of a body, so it is sent chunked.
type onlyReader struct{ io.Reader }

func TestBodyTooLarge(t *testing.T) {
	e := start(t, &fake{}, Options{})
	big := `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	for name, r := range map[string]io.Reader{
		"content-length": strings.NewReader(big),
		"chunked":        onlyReader{strings.NewReader(big)},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.doReader(t, "POST", "/v1/users/u1/tokens", r)
			if resp.StatusCode != 413 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var st spb.Status
			if err := protojson.Unmarshal(body, &st); err != nil || codes.Code(st.Code) != codes.ResourceExhausted {
				t.Errorf("body %s: %v", body, err)
			}
			if !bytes.Contains(body, []byte(`"reason":"PAYLOAD_TOO_LARGE"`)) || !bytes.Contains(body, []byte(`"domain":"cbkgate"`)) {
				t.Errorf("body %s: no ErrorInfo{cbkgate, PAYLOAD_TOO_LARGE}", body)
			}
		})
	}
	if n := len(e.fake.called()); n != 0 {
		t.Errorf("%d calls reached gRPC", n)
	}
	// Just under the cap still goes through, chunked too.
	ok := `{"name":"` + strings.Repeat("x", maxBodyBytes-20) + `"}`
	resp, body := e.doReader(t, "POST", "/v1/users/u1/tokens", onlyReader{strings.NewReader(ok)})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

func TestWrongMethodIs405(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "PUT", "/v1/users/u1/tokens", "{}")
	if resp.StatusCode != 405 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	resp, _ = e.do(t, "GET", "/v1/nope", "")
	if resp.StatusCode != 404 {
		t.Fatalf("unknown path: status %d", resp.StatusCode)
	}
}

func TestCORS(t *testing.T) {
	const path = "/v1/users/u1/tokens/t1"
	preflight := []string{"Origin", "", "Access-Control-Request-Method", "DELETE", "Access-Control-Request-Headers", "authorization,x-evil"}
	withOrigin := func(h []string, o string) []string {
		h = append([]string(nil), h...)
		h[1] = o
		return h
	}

	t.Run("allowed", func(t *testing.T) {
		var authCalls atomic.Int32
		auth := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				authCalls.Add(1)
				next.ServeHTTP(w, r)
			})
		}
		e := start(t, &fake{}, Options{CORSOrigins: []string{"https://app.example"}, Auth: auth})

		resp, _ := e.do(t, "DELETE", path, "", "Origin", "https://app.example")
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Errorf("actual: %d %v", resp.StatusCode, resp.Header)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("no Vary: Origin: %v", resp.Header)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Error("credentials allowed")
		}

		authCalls.Store(0)
		calls := len(e.fake.called())
		resp, body := e.do(t, "OPTIONS", path, "", withOrigin(preflight, "https://app.example")...)
		if resp.StatusCode != 204 {
			t.Fatalf("preflight: %d %s", resp.StatusCode, body)
		}
		for k, v := range map[string]string{
			"Access-Control-Allow-Origin":  "https://app.example",
			"Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE",
			"Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id, Traceparent, Tracestate, Last-Event-Id, " +
				"Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Content-Encoding, Connect-Accept-Encoding, " +
				"Grpc-Timeout, X-Grpc-Web, X-User-Agent",
			"Access-Control-Max-Age": "600",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if authCalls.Load() != 0 || len(e.fake.called()) != calls {
			t.Error("preflight reached auth or the gateway")
		}
	})

	t.Run("disallowed", func(t *testing.T) {
		e := start(t, &fake{}, Options{CORSOrigins: []string{"https://app.example"}})
		resp, _ := e.do(t, "DELETE", path, "", "Origin", "https://evil.example")
		if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" || len(e.fake.called()) != 0 {
			t.Errorf("actual: %d %v, %d gateway calls; want 403 without CORS headers and none", resp.StatusCode, resp.Header, len(e.fake.called()))
		}
		resp, _ = e.do(t, "OPTIONS", path, "", withOrigin(preflight, "https://evil.example")...)
		if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("any", func(t *testing.T) {
		e := start(t, &fake{}, Options{CORSOrigins: []string{"*"}})
		resp, _ := e.do(t, "DELETE", path, "", "Origin", "https://whoever.example")
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("actual: %v", resp.Header)
		}
		resp, _ = e.do(t, "OPTIONS", path, "", withOrigin(preflight, "https://whoever.example")...)
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("off", func(t *testing.T) {
		e := start(t, &fake{}, Options{})
		resp, _ := e.do(t, "DELETE", path, "", "Origin", "https://app.example")
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
				t.Errorf("CORS off but %s: %q", k, resp.Header.Values(k))
			}
		}
	})
}

func TestAuthWrapsOnlyAPI(t *testing.T) {
	deny := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusUnauthorized)
		})
	}
	e := start(t, &fake{}, Options{Auth: deny})
	if resp, _ := e.do(t, "DELETE", "/v1/users/u1/tokens/t1", ""); resp.StatusCode != 401 {
		t.Errorf("API: %d", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if resp, _ := e.do(t, "GET", p, ""); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if n := len(e.fake.called()); n != 0 {
		t.Errorf("%d calls reached gRPC", n)
	}
}

func TestHealthAndDiscovery(t *testing.T) {
	e := start(t, &fake{}, Options{})
	resp, body := e.do(t, "GET", "/healthz", "")
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	if resp, _ := e.do(t, "HEAD", "/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("HEAD healthz: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "POST", "/healthz", ""); resp.StatusCode != 405 {
		t.Errorf("POST healthz: %d", resp.StatusCode)
	}

	if resp, _ := e.do(t, "GET", "/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("readyz ready: %d", resp.StatusCode)
	}
	e.ready.Store(false)
	if resp, _ := e.do(t, "GET", "/readyz", ""); resp.StatusCode != 503 {
		t.Errorf("readyz draining: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "HEAD", "/readyz", ""); resp.StatusCode != 503 {
		t.Errorf("HEAD readyz draining: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("healthz while draining: %d", resp.StatusCode)
	}
	e.ready.Store(true)
	if resp, _ := e.do(t, "GET", "/readyz", ""); resp.StatusCode != 200 {
		t.Errorf("readyz ready again: %d", resp.StatusCode)
	}

	resp, body = e.do(t, "GET", "/openapi.json", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, openapiv2.JSON) {
		t.Errorf("openapi.json: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if !json.Valid(body) {
		t.Error("openapi.json is not JSON")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(t.Context(), Options{}); err == nil {
		t.Error("nil Conn accepted")
	}
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = New(t.Context(), Options{Conn: conn, CORSOrigins: []string{"*", "https://a.example"}})
	if err == nil {
		t.Error(`"*" with other origins accepted`)
	}
	if h, err := New(t.Context(), Options{Conn: conn}); err != nil || h == nil {
		t.Errorf("nil Ready: %v", err)
	}
}

// TestOpenAPI: the served document describes List as it is served (NDJSON
// and SSE, lines of result or error) and answers CORS like the API.
func TestOpenAPI(t *testing.T) {
	e := start(t, &fake{}, Options{CORSOrigins: []string{"https://app.example"}})
	resp, body := e.do(t, "GET", "/openapi.json", "", "Origin", "https://app.example")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("GET from an allowed origin: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Produces  []string `json:"produces"`
			Responses map[string]struct {
				Schema struct {
					Properties map[string]struct {
						Ref string `json:"$ref"`
					} `json:"properties"`
				} `json:"schema"`
			} `json:"responses"`
			Parameters []struct {
				Name, In string
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	list := doc.Paths["/v1/users/{user_id}/tokens"]["get"]
	if fmt.Sprint(list.Produces) != "[application/x-ndjson text/event-stream]" {
		t.Errorf("List produces %v", list.Produces)
	}
	for _, code := range []string{"200", "default"} {
		if ref := list.Responses[code].Schema.Properties["error"].Ref; ref != "#/definitions/rpcStatus" {
			t.Errorf("List %s: error line schema %q", code, ref)
		}
	}
	if ref := list.Responses["200"].Schema.Properties["result"].Ref; ref != "#/definitions/v1ListResponse" {
		t.Errorf("List 200: result line schema %q", ref)
	}
	if !slices.ContainsFunc(list.Parameters, func(p struct{ Name, In string }) bool { return p.Name == "Last-Event-ID" && p.In == "header" }) {
		t.Errorf("List parameters lack the Last-Event-ID header: %v", list.Parameters)
	}

	resp, _ = e.do(t, "OPTIONS", "/openapi.json", "", "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	resp, _ = e.do(t, "GET", "/openapi.json", "", "Origin", "https://evil.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("a foreign origin got Allow-Origin")
	}
	if resp, _ := e.do(t, "POST", "/openapi.json", ""); resp.StatusCode != 405 {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}
