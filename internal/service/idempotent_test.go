package service

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/emulator"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/state"
)

// idemEnv is the service over real gRPC, in front of a faulty upstream
// that forwards to the emulator unless a test scripts otherwise.
type idemEnv struct {
	client  tokenv1.TokenServiceClient
	up      *fu.Server
	emu     *emulator.Emulator
	store   state.Store
	records *state.Records

	mu     sync.Mutex
	audits []string // "action user token code"

	callerRate bool // serve with --caller-rate from store
}

func newIdemEnv(t *testing.T) *idemEnv {
	t.Helper()
	return newIdemEnvOn(t, state.NewMemory(0, nil))
}

// newIdemEnvOn is newIdemEnv with its records in store.
func newIdemEnvOn(t *testing.T, store state.Store) *idemEnv {
	t.Helper()
	e := &idemEnv{emu: emulator.New(emulator.Options{Secret: emulatorSecret}), up: fu.Start(t), store: store}
	e.up.SetDefaultAll(fu.Forward(e.emu))
	var err error
	if e.records, err = state.NewRecords(e.store, state.RandomKey()); err != nil {
		t.Fatal(err)
	}
	e.client = e.serve(t, e.records)
	return e
}

// serve runs another service on e's upstream, with records.
func (e *idemEnv) serve(t *testing.T, records *state.Records) tokenv1.TokenServiceClient {
	t.Helper()
	client, err := chatbotkit.New(chatbotkit.Options{BaseURL: e.up.URL})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(spendEmulatorSecret()...)
	opts := []Option{WithRecords(records),
		WithAudit(func(_ context.Context, action, user, token string, code codes.Code) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.audits = append(e.audits, action+" "+user+" "+token+" "+code.String())
		})}
	if e.callerRate {
		opts = append(opts, WithCallerRate(e.store.CallerRate()))
	}
	tokenv1.RegisterTokenServiceServer(gs, New(client, opts...))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tokenv1.NewTokenServiceClient(conn)
}

// create calls Create and says whether the answer was marked replayed.
func create(t *testing.T, c tokenv1.TokenServiceClient, req *tokenv1.CreateRequest) (*tokenv1.CreateResponse, *status.Status, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var header, trailer metadata.MD
	resp, err := c.Create(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
	replayed := len(header.Get(ReplayedHeader)) > 0 || len(trailer.Get(ReplayedHeader)) > 0
	return resp, status.Convert(err), replayed
}

// tokensWith lists userID's tokens that carry requestID in their meta.
func tokensWith(t *testing.T, c tokenv1.TokenServiceClient, userID, requestID string) []*tokenv1.Token {
	t.Helper()
	stream, err := c.List(context.Background(), &tokenv1.ListRequest{UserId: userID})
	if err != nil {
		t.Fatal(err)
	}
	var out []*tokenv1.Token
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.GetToken().GetMeta().GetFields()[metaRequestID].GetStringValue() == requestID {
			out = append(out, m.GetToken())
		}
	}
}

func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

func meta(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A repeat with the same fields replays the first outcome (same id, same
// secret) marked replayed, with no second upstream create; a repeat with
// other fields is REQUEST_ID_REUSED and reaches no upstream either.
func TestIdempotentCreateReplays(t *testing.T) {
	e := newIdemEnv(t)
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", Meta: meta(t, map[string]any{"a": 1.0, "b": "x"}), RequestId: "req-1"}
	first, st, replayed := create(t, e.client, req)
	if st.Code() != codes.OK || replayed {
		t.Fatalf("first create: %v, replayed %v", st, replayed)
	}
	// The same fields, built in another order.
	again := &tokenv1.CreateRequest{RequestId: "req-1", Meta: meta(t, map[string]any{"b": "x", "a": 1}), Name: "n", UserId: "u1"}
	second, st, replayed := create(t, e.client, again)
	if st.Code() != codes.OK || !replayed {
		t.Fatalf("repeat: %v, replayed %v", st, replayed)
	}
	if !proto.Equal(first, second) || first.GetToken() == "" {
		t.Fatalf("repeat answered %v, first %v", second, first)
	}
	other := proto.Clone(req).(*tokenv1.CreateRequest)
	other.Name = "another"
	if _, st, _ := create(t, e.client, other); st.Code() != codes.InvalidArgument || reason(st) != "REQUEST_ID_REUSED" {
		t.Fatalf("other fields under the same request_id: %v %q", st, reason(st))
	}
	if n := e.up.Calls(fu.Create); n != 1 {
		t.Fatalf("%d upstream creates, want 1", n)
	}
	// The token carries the request id and its attempt.
	if got := tokensWith(t, e.client, "u1", "req-1"); len(got) != 1 || got[0].GetId() != first.GetId() {
		t.Fatalf("tokens carrying req-1: %v", got)
	}
	// Another caller's user, or another user, is another record.
	req2 := proto.Clone(req).(*tokenv1.CreateRequest)
	req2.UserId = "u2"
	if r, st, replayed := create(t, e.client, req2); st.Code() != codes.OK || replayed || r.GetId() == first.GetId() {
		t.Fatalf("same request_id for another user: %v %v replayed %v", r, st, replayed)
	}
}

// Only a success or a definitive refusal is recorded: a 429 or a 503
// leaves the request_id free, so the retry goes upstream again. So does a
// 401: it needs no valid secret, and recording it let made-up bearers in
// pass-through mode fill every record the process may hold.
func TestIdempotentRecordsOnlyDefinitiveOutcomes(t *testing.T) {
	for _, tc := range []struct {
		status   int
		recorded bool
	}{
		{409, true}, {422, true}, {403, true}, {401, false}, {429, false}, {503, false},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			e := newIdemEnv(t)
			e.up.Script(fu.Create, fu.Error(tc.status, "SOME_CODE", "refused"))
			req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "r"}
			_, st1, _ := create(t, e.client, req)
			if st1.Code() == codes.OK {
				t.Fatal("scripted refusal answered OK")
			}
			resp, st2, replayed := create(t, e.client, req)
			if tc.recorded {
				if replayed != true || st2.Code() != st1.Code() || st2.Message() != st1.Message() || e.up.Calls(fu.Create) != 1 {
					t.Fatalf("repeat of a recorded refusal: %v replayed %v, %d upstream creates", st2, replayed, e.up.Calls(fu.Create))
				}
				return
			}
			if st2.Code() != codes.OK || replayed || resp.GetToken() == "" || e.up.Calls(fu.Create) != 2 {
				t.Fatalf("retry after %d: %v replayed %v, %d upstream creates", tc.status, st2, replayed, e.up.Calls(fu.Create))
			}
		})
	}
}

// Repeats that arrive while the first call runs wait for it and get its
// outcome; exactly one create goes upstream.
func TestIdempotentConcurrentRepeatsWait(t *testing.T) { testConcurrentRepeatsWait(t, newIdemEnv(t)) }

func testConcurrentRepeatsWait(t *testing.T, e *idemEnv) {
	e.up.Script(fu.Create, fu.Hang(fu.Forward(e.emu)))
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "conc"}
	const n = 8
	resps := make([]*tokenv1.CreateResponse, n)
	sts := make([]*status.Status, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { resps[i], sts[i], _ = create(t, e.client, req) })
	}
	if !e.up.Wait(10*time.Second, func(r []fu.Request) bool { return fu.Held(r) == 1 }) {
		t.Fatal("the first create never reached the upstream")
	}
	time.Sleep(3 * recordPoll) // the others are waiting on the record
	e.up.Release()
	wg.Wait()
	for i := range n {
		if sts[i].Code() != codes.OK || !proto.Equal(resps[i], resps[0]) {
			t.Fatalf("call %d: %v %v, first %v", i, sts[i], resps[i], resps[0])
		}
	}
	if c := e.up.Calls(fu.Create); c != 1 {
		t.Fatalf("%d upstream creates, want 1", c)
	}
}

// A create whose answer is lost after ChatBotKit stored the token is
// UPSTREAM_OUTCOME_UNKNOWN; a repeat before reconcileAfter is told when to
// come back; one after it deletes the orphan (audited) and creates anew:
// exactly one live token carries the request id, and the caller has its
// secret.
func TestUnknownOutcomeIsReconciled(t *testing.T) {
	defer shorten(t, time.Second, 300*time.Millisecond)()
	testUnknownOutcomeIsReconciled(t, newIdemEnv(t))
}

func testUnknownOutcomeIsReconciled(t *testing.T, e *idemEnv) {
	e.up.Script(fu.Create, fu.ForwardThenReset(e.emu))
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "lost"}
	_, st, _ := create(t, e.client, req)
	if st.Code() != codes.Unavailable || reason(st) != "UPSTREAM_OUTCOME_UNKNOWN" {
		t.Fatalf("lost answer: %v %q", st, reason(st))
	}
	orphans := tokensWith(t, e.client, "u1", "lost")
	if len(orphans) != 1 {
		t.Fatalf("%d tokens after the lost answer, want the orphan", len(orphans))
	}
	_, st, _ = create(t, e.client, req)
	if st.Code() != codes.Unavailable || reason(st) != "UPSTREAM_OUTCOME_UNKNOWN" || retryDelay(st) <= 0 || retryDelay(st) > reconcileAfter {
		t.Fatalf("early repeat: %v %q retry %v", st, reason(st), retryDelay(st))
	}
	if e.up.Calls(fu.Create) != 1 {
		t.Fatal("an early repeat went upstream")
	}
	time.Sleep(reconcileAfter)
	resp, st, _ := create(t, e.client, req)
	if st.Code() != codes.OK || resp.GetToken() == "" {
		t.Fatalf("reconciling repeat: %v", st)
	}
	live := tokensWith(t, e.client, "u1", "lost")
	if len(live) != 1 || live[0].GetId() != resp.GetId() || live[0].GetId() == orphans[0].GetId() {
		t.Fatalf("live tokens carrying the request id: %v, answer %s, orphan %s", live, resp.GetId(), orphans[0].GetId())
	}
	e.mu.Lock()
	audits := append([]string(nil), e.audits...)
	e.mu.Unlock()
	if want := "token.delete u1 " + orphans[0].GetId() + " OK"; len(audits) != 1 || audits[0] != want {
		t.Fatalf("audits %q, want [%q]", audits, want)
	}
	// And from now on it replays.
	again, st, replayed := create(t, e.client, req)
	if st.Code() != codes.OK || !replayed || !proto.Equal(again, resp) {
		t.Fatalf("after reconciliation: %v replayed %v", st, replayed)
	}
}

// A reconciliation's upstream requests count against --caller-rate like
// the call's own: a repeat that finds its caller over the rate is refused
// RATE_LIMITED before its listing, and sends nothing upstream (it used to
// list and delete first, and be refused only at the create). The id stays
// open: a repeat within the rate settles it.
func TestReconciliationIsHeldToCallerRate(t *testing.T) {
	defer shorten(t, time.Second, 300*time.Millisecond)()
	e := &idemEnv{emu: emulator.New(emulator.Options{Secret: emulatorSecret}), up: fu.Start(t),
		store: state.NewMemory(1, nil), callerRate: true} // 1 a second, burst 2
	e.up.SetDefaultAll(fu.Forward(e.emu))
	var err error
	if e.records, err = state.NewRecords(e.store, state.RandomKey()); err != nil {
		t.Fatal(err)
	}
	e.client = e.serve(t, e.records)

	e.up.Script(fu.Create, fu.ForwardThenReset(e.emu))
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "lost"}
	if _, st, _ := create(t, e.client, req); reason(st) != "UPSTREAM_OUTCOME_UNKNOWN" {
		t.Fatalf("lost answer: %v", st)
	}
	// The burst's second request, spent.
	if _, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u2"}); st.Code() != codes.OK {
		t.Fatalf("second create: %v", st)
	}
	time.Sleep(reconcileAfter) // 0.3 of a request back: still over the rate
	lists, deletes, creates := e.up.Calls(fu.List), e.up.Calls(fu.Delete), e.up.Calls(fu.Create)
	_, st, _ := create(t, e.client, req)
	if st.Code() != codes.ResourceExhausted || reason(st) != "RATE_LIMITED" || retryDelay(st) <= 0 {
		t.Fatalf("repeat over the rate: %v %q", st, reason(st))
	}
	if l, d, c := e.up.Calls(fu.List)-lists, e.up.Calls(fu.Delete)-deletes, e.up.Calls(fu.Create)-creates; l+d+c != 0 {
		t.Fatalf("a repeat over the rate sent %d lists, %d deletes, %d creates upstream; want none", l, d, c)
	}
	time.Sleep(2 * time.Second) // the burst back
	resp, st, _ := create(t, e.client, req)
	if st.Code() != codes.OK || resp.GetToken() == "" {
		t.Fatalf("repeat within the rate: %v", st)
	}
	if live := tokensWith(t, e.client, "u1", "lost"); len(live) != 1 || live[0].GetId() != resp.GetId() {
		t.Fatalf("live tokens carrying the request id: %v, answer %s", live, resp.GetId())
	}
}

// Each upstream create for a request_id is bounded at createBound,
// whatever the caller's deadline: past it the outcome is unknown.
func TestIdempotentCreateIsBounded(t *testing.T) {
	defer shorten(t, 200*time.Millisecond, time.Hour)()
	e := newIdemEnv(t)
	e.up.Script(fu.Create, fu.Hang(fu.Forward(e.emu)))
	start := time.Now()
	_, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1", RequestId: "slow"})
	if st.Code() != codes.Unavailable || reason(st) != "UPSTREAM_OUTCOME_UNKNOWN" {
		t.Fatalf("hung create: %v %q", st, reason(st))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("hung create took %v, bound %v", d, createBound)
	}
}

// Bad request ids and meta keys in cbkgate's namespace are refused before
// anything is claimed or sent.
func TestIdempotentValidation(t *testing.T) {
	e := newIdemEnv(t)
	for _, id := range []string{"has space", "x/y", string(make([]byte, 65)), "é"} {
		_, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1", RequestId: id})
		if st.Code() != codes.InvalidArgument || reason(st) != "INVALID_ARGUMENT" {
			t.Fatalf("request_id %q: %v", id, st)
		}
		if br := badRequestFields(st); len(br) != 1 || br[0] != "request_id" {
			t.Fatalf("request_id %q: violations %v", id, br)
		}
	}
	forged := meta(t, map[string]any{"cbkgate.attempt": "x"})
	if _, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1", Meta: forged}); st.Code() != codes.InvalidArgument {
		t.Fatalf("create with a cbkgate. meta key: %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.client.Update(ctx, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t", Meta: forged})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update with a cbkgate. meta key: %v", err)
	}
	if n := e.up.Count(); n != 0 {
		t.Fatalf("%d upstream requests for refused calls", n)
	}
}

func badRequestFields(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

// A record sealed under another key is STATE_UNAVAILABLE, never
// re-executed.
func TestUndecryptableRecordIsNotReexecuted(t *testing.T) {
	e := newIdemEnv(t)
	req := &tokenv1.CreateRequest{UserId: "u1", RequestId: "k"}
	if _, st, _ := create(t, e.client, req); st.Code() != codes.OK {
		t.Fatal(st)
	}
	otherKey, err := state.NewRecords(e.store, state.RandomKey())
	if err != nil {
		t.Fatal(err)
	}
	other := e.serve(t, otherKey)
	_, st, _ := create(t, other, req)
	if st.Code() != codes.Unavailable || reason(st) != "STATE_UNAVAILABLE" {
		t.Fatalf("record under another key: %v %q", st, reason(st))
	}
	if n := e.up.Calls(fu.Create); n != 1 {
		t.Fatalf("%d upstream creates, want 1", n)
	}
}

// Past the per-caller bound of records, a Create with a request_id is
// RATE_LIMITED and nothing goes upstream; one without is unaffected.
func TestMemoryRecordBound(t *testing.T) {
	e := newIdemEnv(t)
	ctx := context.Background()
	for i := range state.MaxMemoryRecordsPerCaller {
		// The test service's calls have no caller identity ("").
		if _, ok, err := e.store.Claim(ctx, state.Key{UserID: "u1", RequestID: strconv.Itoa(i)}, []byte("x"), time.Hour); !ok || err != nil {
			t.Fatalf("claim %d: %v %v", i, ok, err)
		}
	}
	_, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1", RequestId: "one-too-many"})
	if st.Code() != codes.ResourceExhausted || reason(st) != "RATE_LIMITED" || retryDelay(st) <= 0 {
		t.Fatalf("past the bound: %v %q", st, reason(st))
	}
	if n := e.up.Count(); n != 0 {
		t.Fatalf("%d upstream requests past the bound", n)
	}
	if _, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1"}); st.Code() != codes.OK {
		t.Fatalf("create without request_id past the bound: %v", st)
	}
}

// carriesAttempt finds the marker however ChatBotKit spells its key: a
// key written with \u escapes is the same key to encoding/json, and an
// orphan missed would stay live beside the new token.
func TestCarriesAttemptSpellings(t *testing.T) {
	for meta, want := range map[string]bool{
		`{"cbkgate.attempt":"a1"}`:           true,
		`{"cbkgate\u002eattempt":"a1"}`:      true,
		`{"\u0063bkgate.attempt":"a\u0031"}`: true,
		`{"cbkgate.attempt":"a2"}`:           false,
		`{"note":"\u00e9"}`:                  false,
		`{}`:                                 false,
	} {
		if got := carriesAttempt([]byte(meta), []string{"a1"}); got != want {
			t.Errorf("carriesAttempt(%s) = %v, want %v", meta, got, want)
		}
	}
}

// flushingStore forgets a record just before the next Replace, as a
// FLUSHALL or an eviction in Redis would while a create is upstream.
type flushingStore struct {
	state.Store
	flush atomic.Bool
}

func (f *flushingStore) Replace(ctx context.Context, key state.Key, old, value []byte, ttl time.Duration) (bool, error) {
	if f.flush.CompareAndSwap(true, false) {
		if cur, err := f.Store.Get(ctx, key); err == nil && cur != nil {
			_ = f.Store.Remove(ctx, key, cur)
		}
	}
	return f.Store.Replace(ctx, key, old, value, ttl)
}

// A create whose record vanished from the store while it was upstream
// (Redis flushed) cannot be recorded, and no repeat could find its token:
// the next one created a second live token with the request_id, the
// first's secret lost. The call now revokes the token it made (audited)
// and says so; a repeat then leaves exactly one live token.
func TestCreateWhoseRecordVanishedIsRevoked(t *testing.T) {
	fs := &flushingStore{Store: state.NewMemory(0, nil)}
	e := newIdemEnvOn(t, fs)
	fs.flush.Store(true)
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "flushed"}
	_, st, _ := create(t, e.client, req)
	if st.Code() != codes.Unavailable || reason(st) != "STATE_UNAVAILABLE" {
		t.Fatalf("a create whose record vanished: %v %q, want UNAVAILABLE STATE_UNAVAILABLE", st, reason(st))
	}
	if live := tokensWith(t, e.client, "u1", "flushed"); len(live) != 0 {
		t.Fatalf("%d live tokens carry the request id after the revocation, want 0", len(live))
	}
	e.mu.Lock()
	audits := append([]string(nil), e.audits...)
	e.mu.Unlock()
	if len(audits) != 1 || !strings.HasPrefix(audits[0], "token.delete u1 ") || !strings.HasSuffix(audits[0], " OK") {
		t.Fatalf("audits %q, want the revocation's token.delete", audits)
	}
	resp, st, _ := create(t, e.client, req)
	if st.Code() != codes.OK || resp.GetToken() == "" {
		t.Fatalf("the repeat: %v", st)
	}
	if live := tokensWith(t, e.client, "u1", "flushed"); len(live) != 1 || live[0].GetId() != resp.GetId() {
		t.Fatalf("live tokens carrying the request id: %v, want only %s", live, resp.GetId())
	}
}
