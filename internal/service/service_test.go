package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/secret"
)

const emulatorSecret = "test-secret"

// upstream counts the requests that reach the handler behind it.
type upstream struct {
	handler http.Handler
	calls   atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	u.handler.ServeHTTP(w, r)
}

// newTestService serves the service over a real gRPC connection, backed by
// the REST client talking to h over loopback HTTP.
func newTestService(t testing.TB, h http.Handler) (tokenv1.TokenServiceClient, *upstream) {
	t.Helper()
	up := &upstream{handler: h}
	hs := httptest.NewServer(up)
	t.Cleanup(hs.Close)

	client, err := chatbotkit.New(chatbotkit.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(spendEmulatorSecret()...)
	tokenv1.RegisterTokenServiceServer(gs, New(client))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tokenv1.NewTokenServiceClient(conn), up
}

// spendEmulatorSecret gives every call emulatorSecret to spend upstream, as
// the auth interceptors give a call the held secret.
func spendEmulatorSecret() []grpc.ServerOption {
	withSecret := func(ctx context.Context) context.Context {
		return auth.WithUpstreamSecret(ctx, secret.Value(emulatorSecret))
	}
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(withSecret(ctx), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, contextStream{ss, withSecret(ss.Context())})
		}),
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s contextStream) Context() context.Context { return s.ctx }

func newEmulatorService(t *testing.T) (tokenv1.TokenServiceClient, *emulator.Emulator, *upstream) {
	t.Helper()
	emu := emulator.New(emulator.Options{Secret: emulatorSecret})
	c, up := newTestService(t, emu)
	return c, emu, up
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// listAll drains a List call and returns what it sent and how it ended.
func listAll(t *testing.T, c tokenv1.TokenServiceClient, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, error) {
	t.Helper()
	stream, err := c.List(ctxT(t), req)
	if err != nil {
		return nil, err
	}
	var out []*tokenv1.ListResponse
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp)
	}
}

func ids(rs []*tokenv1.ListResponse) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetToken().GetId())
	}
	return out
}

func createN(t *testing.T, c tokenv1.TokenServiceClient, user string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		resp, err := c.Create(ctxT(t), &tokenv1.CreateRequest{UserId: user, Name: fmt.Sprintf("t%d", i)})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		out = append(out, resp.GetId())
	}
	return out
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	c, _, _ := newEmulatorService(t)
	ctx := ctxT(t)
	meta, _ := structpb.NewStruct(map[string]any{"team": "blue", "n": 3.5, "nested": map[string]any{"ok": true}})
	config, _ := structpb.NewStruct(map[string]any{"scope": "read"})

	created, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "user 1/ü", Name: "ci", Description: "for CI", Meta: meta, Config: config})
	if err != nil {
		t.Fatal(err)
	}
	if created.GetId() == "" || created.GetToken() == "" || created.GetCreateTime().AsTime().IsZero() {
		t.Fatalf("incomplete create response: %v", created)
	}

	got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "user 1/ü"})
	if err != nil || len(got) != 1 {
		t.Fatalf("list = %v, %v", got, err)
	}
	tok := got[0].GetToken()
	if tok.GetId() != created.GetId() || tok.GetName() != "ci" || tok.GetDescription() != "for CI" || !proto.Equal(tok.GetMeta(), meta) {
		t.Fatalf("listed token = %v", tok)
	}
	if !tok.GetCreateTime().AsTime().Equal(created.GetCreateTime().AsTime()) || tok.GetUpdateTime() == nil {
		t.Fatalf("listed times = %v, %v; created %v", tok.GetCreateTime(), tok.GetUpdateTime(), created.GetCreateTime())
	}

	newName := "renamed"
	upd, err := c.Update(ctx, &tokenv1.UpdateRequest{UserId: "user 1/ü", TokenId: created.GetId(), Name: &newName})
	if err != nil || upd.GetId() != created.GetId() {
		t.Fatalf("update = %v, %v", upd, err)
	}
	got, _ = listAll(t, c, &tokenv1.ListRequest{UserId: "user 1/ü"})
	if tok := got[0].GetToken(); tok.GetName() != "renamed" || tok.GetDescription() != "for CI" || !proto.Equal(tok.GetMeta(), meta) {
		t.Fatalf("after a partial update: %v", tok)
	}

	// Another user cannot see or touch the token.
	if _, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "someone-else", TokenId: created.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("delete under another user: %v", err)
	}
	del, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "user 1/ü", TokenId: created.GetId()})
	if err != nil || del.GetId() != created.GetId() {
		t.Fatalf("delete = %v, %v", del, err)
	}
	_, err = c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "user 1/ü", TokenId: created.GetId()})
	assertUpstreamError(t, err, codes.NotFound, "NOT_FOUND", 404)
	if got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "user 1/ü"}); err != nil || len(got) != 0 {
		t.Fatalf("list after delete = %v, %v", got, err)
	}
}

func TestListAcrossPages(t *testing.T) {
	c, _, _ := newEmulatorService(t)
	created := createN(t, c, "u", 23)

	for _, tc := range []struct {
		name  string
		order tokenv1.Order
		want  []string
	}{
		{"default is newest first", tokenv1.Order_ORDER_UNSPECIFIED, reversed(created)},
		{"desc", tokenv1.Order_ORDER_DESC, reversed(created)},
		{"asc", tokenv1.Order_ORDER_ASC, created},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, pageSize := range []int32{0, 1, 5, 23, 200} {
				got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Order: tc.order, PageSize: pageSize})
				if err != nil {
					t.Fatalf("page_size %d: %v", pageSize, err)
				}
				if fmt.Sprint(ids(got)) != fmt.Sprint(tc.want) {
					t.Fatalf("page_size %d: got %v, want %v", pageSize, ids(got), tc.want)
				}
				if got[len(got)-1].GetCursor() == "" {
					t.Fatalf("page_size %d: the last token has no cursor", pageSize)
				}
			}
		})
	}
}

func TestListCursorResumesAfterEveryCursor(t *testing.T) {
	c, _, _ := newEmulatorService(t)
	created := createN(t, c, "u", 12)

	all, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Order: tokenv1.Order_ORDER_ASC, PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	withCursor := 0
	for i, r := range all {
		if r.GetCursor() == "" {
			continue
		}
		withCursor++
		rest, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Order: tokenv1.Order_ORDER_ASC, PageSize: 5, Cursor: r.GetCursor()})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids(rest)) != fmt.Sprint(created[i+1:]) {
			t.Fatalf("resume after #%d: got %v, want %v", i, ids(rest), created[i+1:])
		}
	}
	if withCursor != 12 {
		t.Fatalf("%d tokens carry a cursor, want every one of the 12", withCursor)
	}
}

func TestListLimit(t *testing.T) {
	c, _, _ := newEmulatorService(t)
	created := createN(t, c, "u", 10)
	for _, tc := range []struct{ pageSize, limit int32 }{{0, 1}, {3, 7}, {4, 8}, {100, 10}, {2, 50}} {
		got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Order: tokenv1.Order_ORDER_ASC, PageSize: tc.pageSize, Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		want := created[:min(int(tc.limit), len(created))]
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Fatalf("page_size %d limit %d: got %v, want %v", tc.pageSize, tc.limit, ids(got), want)
		}
		if got[len(got)-1].GetCursor() == "" {
			t.Fatalf("page_size %d limit %d: the last token has no cursor to resume from", tc.pageSize, tc.limit)
		}
	}
}

func TestValidationRefusesBeforeUpstream(t *testing.T) {
	c, _, up := newEmulatorService(t)
	ctx := ctxT(t)
	long := strings.Repeat("a", 257)
	okLong := strings.Repeat("a", 256)
	name := "x"

	for _, tc := range []struct {
		name   string
		fields []string // the BadRequest field violations expected, in order
		call   func() error
	}{
		{"list without user", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{}); return err }},
		{"list user too long", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: long}); return err }},
		{"list user dot", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "."}); return err }},
		{"list user dotdot", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: ".."}); return err }},
		{"list user newline", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "a\nb"}); return err }},
		{"list user NUL", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "a\x00b"}); return err }},
		{"list user DEL", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "a\x7fb"}); return err }},
		{"list user C1 control", []string{"user_id"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "a\u0085b"}); return err }},
		{"negative page_size", []string{"page_size"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", PageSize: -1}); return err }},
		{"negative limit", []string{"limit"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Limit: -1}); return err }},
		{"undefined order", []string{"order"}, func() error { _, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Order: 7}); return err }},
		{"create without user", []string{"user_id"}, func() error { _, err := c.Create(ctx, &tokenv1.CreateRequest{}); return err }},
		{"create user tab", []string{"user_id"}, func() error { _, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "a\tb"}); return err }},
		{"create meta NaN", []string{"meta"}, func() error {
			_, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "u", Meta: &structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(nan())}}})
			return err
		}},
		{"update without token", []string{"token_id"}, func() error { _, err := c.Update(ctx, &tokenv1.UpdateRequest{UserId: "u", Name: &name}); return err }},
		{"update token dotdot", []string{"token_id"}, func() error { _, err := c.Update(ctx, &tokenv1.UpdateRequest{UserId: "u", TokenId: ".."}); return err }},
		{"update token too long", []string{"token_id"}, func() error { _, err := c.Update(ctx, &tokenv1.UpdateRequest{UserId: "u", TokenId: long}); return err }},
		{"delete without user", []string{"user_id"}, func() error { _, err := c.Delete(ctx, &tokenv1.DeleteRequest{TokenId: "t"}); return err }},
		{"delete token control", []string{"token_id"}, func() error { _, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "u", TokenId: "t\r"}); return err }},
		{"delete token dot", []string{"token_id"}, func() error { _, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "u", TokenId: "."}); return err }},
		{"list every field bad", []string{"user_id", "page_size", "limit", "order"}, func() error {
			_, err := listAll(t, c, &tokenv1.ListRequest{PageSize: -1, Limit: -1, Order: 9})
			return err
		}},
		{"delete both ids bad", []string{"user_id", "token_id"}, func() error {
			_, err := c.Delete(ctx, &tokenv1.DeleteRequest{UserId: "..", TokenId: ""})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.calls.Load()
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want INVALID_ARGUMENT", err)
			}
			if status.Convert(err).Message() == "" {
				t.Fatal("no message says what is wrong")
			}
			assertBadRequest(t, err, tc.fields...)
			if n := up.calls.Load() - before; n != 0 {
				t.Fatalf("%d upstream calls, want none", n)
			}
		})
	}

	// The boundary itself is allowed, and ids that only look odd are fine.
	for _, id := range []string{okLong, "...", "a/b", "a?b#c", "%2F", "ü ß"} {
		if _, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: id, Name: "ok"}); err != nil {
			t.Fatalf("create for user %q: %v", id, err)
		}
		got, err := listAll(t, c, &tokenv1.ListRequest{UserId: id})
		if err != nil || len(got) != 1 {
			t.Fatalf("list for user %q = %d tokens, %v; want exactly its own token", id, len(got), err)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

// assertUpstreamError checks an error that came from an upstream response.
func assertUpstreamError(t *testing.T, err error, code codes.Code, reason string, httpStatus int) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%v), want %v", st.Code(), err, code)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if d, ok := d.(*errdetails.ErrorInfo); ok {
			info = d
		}
	}
	if info == nil {
		t.Fatalf("no ErrorInfo in %v", st.Details())
	}
	if info.GetReason() != reason || info.GetDomain() != "chatbotkit.com" || info.GetMetadata()["http_status"] != fmt.Sprint(httpStatus) {
		t.Fatalf("ErrorInfo = %v, want reason %s, domain chatbotkit.com, http_status %d", info, reason, httpStatus)
	}
	return st
}

func TestUpstreamErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   codes.Code
	}{
		{400, codes.InvalidArgument}, {401, codes.Unauthenticated}, {402, codes.FailedPrecondition},
		{403, codes.PermissionDenied}, {404, codes.NotFound}, {408, codes.DeadlineExceeded},
		{409, codes.Aborted}, {413, codes.InvalidArgument}, {422, codes.InvalidArgument},
		{429, codes.ResourceExhausted}, {500, codes.Internal}, {501, codes.Unimplemented},
		{502, codes.Unavailable}, {503, codes.Unavailable}, {504, codes.Unavailable},
		{418, codes.Unknown},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			reason := fmt.Sprintf("CODE_%d", tc.status)
			message := fmt.Sprintf("upstream says %d", tc.status)
			c, up := newTestService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if tc.status == 429 {
					w.Header().Set("Retry-After", "7")
				}
				w.WriteHeader(tc.status)
				json.NewEncoder(w).Encode(map[string]string{"message": message, "code": reason})
			}))
			_, err := c.Create(ctxT(t), &tokenv1.CreateRequest{UserId: "u"})
			st := assertUpstreamError(t, err, tc.code, reason, tc.status)
			if st.Message() != message {
				t.Fatalf("message = %q, want the upstream message %q", st.Message(), message)
			}
			if n := up.calls.Load(); n != 1 {
				t.Fatalf("create reached upstream %d times, want exactly 1", n)
			}
			var retry *errdetails.RetryInfo
			for _, d := range st.Details() {
				if d, ok := d.(*errdetails.RetryInfo); ok {
					retry = d
				}
			}
			if tc.status == 429 {
				if retry == nil || retry.GetRetryDelay().AsDuration() != 7*time.Second {
					t.Fatalf("RetryInfo = %v, want 7s", retry)
				}
			} else if retry != nil {
				t.Fatalf("unexpected RetryInfo %v", retry)
			}
		})
	}
}

func TestWrongSecretIsUnauthenticated(t *testing.T) {
	emu := emulator.New(emulator.Options{Secret: "another-secret"})
	c, _ := newTestService(t, emu)
	_, err := c.Create(ctxT(t), &tokenv1.CreateRequest{UserId: "u"})
	assertUpstreamError(t, err, codes.Unauthenticated, "NOT_AUTHENTICATED", 401)
}

// pagedHandler serves a JSON page per request from pages, then fails.
func pagedHandler(t *testing.T, pages []string, fail func(w http.ResponseWriter)) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i < len(pages) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, pages[i])
			return
		}
		fail(w)
	})
}

func TestListEndsInErrorAfterTokensAlreadySent(t *testing.T) {
	page := `{"items":[{"id":"a","createdAt":1,"updatedAt":1},{"id":"b","createdAt":2,"updatedAt":2}],"cursor":"c1"}`
	c, _ := newTestService(t, pagedHandler(t, []string{page}, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		io.WriteString(w, `{"message":"boom","code":"INTERNAL_SERVER_ERROR"}`)
	}))
	got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u"})
	if fmt.Sprint(ids(got)) != "[a b]" {
		t.Fatalf("tokens before the failure = %v", ids(got))
	}
	if pos, err := decodeCursor(got[1].GetCursor(), chatbotkit.OrderDefault); err != nil || pos != (chatbotkit.Position{Cursor: "c1"}) {
		t.Fatalf("cursor of the page's last token = %q (%+v, %v), want the page's cursor c1", got[1].GetCursor(), pos, err)
	}
	assertUpstreamError(t, err, codes.Internal, "INTERNAL_SERVER_ERROR", 500)
}

func TestListMalformedUpstreamIsInternal(t *testing.T) {
	for name, body := range map[string]string{
		"not json":       `{"items":[`,
		"meta not a map": `{"items":[{"id":"a","createdAt":1,"updatedAt":1,"meta":[1,2]}],"cursor":"c"}`,
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := newTestService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, body)
			}))
			_, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u"})
			if status.Code(err) != codes.Internal && !(name == "not json" && status.Code(err) == codes.Unavailable) {
				t.Fatalf("got %v, want INTERNAL", err)
			}
		})
	}
}

func TestUpstreamUnreachableIsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	client, err := chatbotkit.New(chatbotkit.Options{BaseURL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(client)
	_, err = svc.Create(auth.WithUpstreamSecret(context.Background(), "s"), &tokenv1.CreateRequest{UserId: "u"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

func TestCallerDeadlineAndCancel(t *testing.T) {
	release := make(chan struct{})
	var cancelled atomic.Int64
	c, _ := newTestService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a client hang-up only once the body is read.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-release:
		}
	}))
	// Registered after the server's cleanup, so it runs first and no
	// handler is left blocking the server's Close.
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Create(ctx, &tokenv1.CreateRequest{UserId: "u"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	stream, err := c.List(ctx, &tokenv1.ListRequest{UserId: "u"})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = stream.Recv()
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want CANCELLED", err)
	}
	// Both upstream requests saw their cancellation promptly.
	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := cancelled.Load(); n != 2 {
		t.Fatalf("%d upstream requests were cancelled, want 2", n)
	}
}

func TestToStatusKeepsContextErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := status.Code(toStatus(ctx, errors.New("whatever the transport said"), nil)); got != codes.Canceled {
		t.Fatalf("got %v, want CANCELLED once the caller is gone", got)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if got := status.Code(toStatus(ctx, errors.New("whatever the transport said"), nil)); got != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED once the caller's deadline passed", got)
	}
	// cbkgate's own bound on an upstream request ran out while the caller
	// still waits: ChatBotKit is not answering.
	if got := status.Code(toStatus(context.Background(), fmt.Errorf("x: %w", context.DeadlineExceeded), nil)); got != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", got)
	}
}

func TestListPageLongerThanTakeIsMalformed(t *testing.T) {
	// An upstream that ignores take: asked for 3 (the limit's rest), it
	// answers 4 and a cursor after the fourth: a
	// malformed answer, never trimmed (resuming from that cursor would skip
	// the fourth token) nor passed on. The first page, answered to the
	// stream request without take, may hold up to 1000.
	first := `{"items":[{"id":"a","createdAt":1,"updatedAt":1},{"id":"b","createdAt":2,"updatedAt":2}],"cursor":"c1"}`
	second := `{"items":[{"id":"c"},{"id":"d"},{"id":"e"},{"id":"f"}],"cursor":"after-f"}`
	var takes []string
	c, _ := newTestService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		takes = append(takes, r.URL.Query().Get("take"))
		w.Header().Set("Content-Type", "application/json")
		if len(takes) == 1 {
			io.WriteString(w, first)
			return
		}
		io.WriteString(w, second)
	}))
	got, err := listAll(t, c, &tokenv1.ListRequest{UserId: "u", Limit: 5})
	if fmt.Sprint(ids(got)) != "[a b]" {
		t.Fatalf("tokens %v, want a and b, none from the page longer than asked for", ids(got))
	}
	if fmt.Sprint(takes) != "[ 3]" {
		t.Fatalf("takes asked for %q, want none, then 3", takes)
	}
	st := status.Convert(err)
	if st.Code() != codes.Internal {
		t.Fatalf("got %v, want INTERNAL", err)
	}
	if info, ok := st.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != "UPSTREAM_MALFORMED" || info.GetDomain() != "cbkgate" {
		t.Fatalf("details %v, want ErrorInfo{cbkgate, UPSTREAM_MALFORMED}", st.Details())
	}
}

// assertBadRequest checks that err carries what the contract promises for a
// validation error: ErrorInfo{domain cbkgate, reason INVALID_ARGUMENT} first,
// then a BadRequest with exactly one violation per bad field, each with a
// description.
func assertBadRequest(t *testing.T, err error, fields ...string) {
	t.Helper()
	details := status.Convert(err).Details()
	if len(details) != 2 {
		t.Fatalf("details = %v, want ErrorInfo and BadRequest", details)
	}
	info, ok := details[0].(*errdetails.ErrorInfo)
	if !ok || info.GetDomain() != "cbkgate" || info.GetReason() != "INVALID_ARGUMENT" {
		t.Fatalf("first detail = %v, want ErrorInfo{cbkgate, INVALID_ARGUMENT}", details[0])
	}
	br, ok := details[1].(*errdetails.BadRequest)
	if !ok {
		t.Fatalf("second detail = %T, want BadRequest", details[1])
	}
	var got []string
	for _, fv := range br.GetFieldViolations() {
		if fv.GetDescription() == "" {
			t.Errorf("violation of %s has no description", fv.GetField())
		}
		got = append(got, fv.GetField())
	}
	if fmt.Sprint(got) != fmt.Sprint(fields) {
		t.Fatalf("field violations = %v, want %v", got, fields)
	}
}
