package service

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/state"
)

// ChatBotKit (and so the emulator) replaces a token's meta whole on update:
// the tests here check that an Update setting meta keeps the cbkgate.*
// markers a Create with a request_id left, and what that costs upstream.

func update(t *testing.T, c tokenv1.TokenServiceClient, req *tokenv1.UpdateRequest) *status.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Update(ctx, req)
	return status.Convert(err)
}

// routes lists the routes of the upstream requests from the seq-th (1-based)
// on.
func routes(up *fu.Server, from int) []fu.Route {
	var out []fu.Route
	for _, r := range up.Requests() {
		if r.Seq >= from {
			out = append(out, r.Route)
		}
	}
	return out
}

// listedMeta returns the meta of userID's token id as the service lists
// it, failing the test when the token is not listed.
func listedMeta(t *testing.T, c tokenv1.TokenServiceClient, userID, id string) *structpb.Struct {
	t.Helper()
	rs, err := listAll(t, c, &tokenv1.ListRequest{UserId: userID})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.GetToken().GetId() == id {
			return r.GetToken().GetMeta()
		}
	}
	t.Fatalf("token %s is not listed", id)
	return nil
}

// An Update that sets meta replaces the caller's keys and keeps cbkgate's
// markers, as they were; it costs one listing read before the update. An
// Update that leaves meta alone sends the update alone.
func TestUpdateMetaKeepsMarkers(t *testing.T) {
	e := newIdemEnv(t)
	e.emu.Seed("u1", 3) // the token is found among others
	created, st, _ := create(t, e.client, &tokenv1.CreateRequest{UserId: "u1", Name: "n",
		Meta: meta(t, map[string]any{"a": 1.0}), RequestId: "keep-1"})
	if st.Code() != codes.OK {
		t.Fatal(st)
	}
	before := listedMeta(t, e.client, "u1", created.GetId()).GetFields()
	attempt := before[metaAttempt].GetStringValue()
	if attempt == "" || before[metaRequestID].GetStringValue() != "keep-1" {
		t.Fatalf("the created token's meta: %v", before)
	}

	from := e.up.Count() + 1
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: created.GetId(),
		Meta: meta(t, map[string]any{"b": "x"})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	if got := routes(e.up, from); len(got) != 2 || got[0] != fu.List || got[1] != fu.Update {
		t.Fatalf("an Update with meta sent %v upstream, want [list update]", got)
	}
	after := listedMeta(t, e.client, "u1", created.GetId()).GetFields()
	if len(after) != 3 || after["b"].GetStringValue() != "x" ||
		after[metaRequestID].GetStringValue() != "keep-1" || after[metaAttempt].GetStringValue() != attempt {
		t.Fatalf("meta after the update: %v, want b and the markers (attempt %s)", after, attempt)
	}
	if got := tokensWith(t, e.client, "u1", "keep-1"); len(got) != 1 || got[0].GetId() != created.GetId() {
		t.Fatalf("tokens carrying keep-1: %v", got)
	}

	// An empty meta clears the caller's keys, not cbkgate's.
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: created.GetId(),
		Meta: &structpb.Struct{}}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	if after := listedMeta(t, e.client, "u1", created.GetId()).GetFields(); len(after) != 2 || after[metaAttempt].GetStringValue() != attempt {
		t.Fatalf("meta after an update to {}: %v", after)
	}

	// Without meta: the update alone.
	name := "renamed"
	from = e.up.Count() + 1
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: created.GetId(), Name: &name}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	if got := routes(e.up, from); len(got) != 1 || got[0] != fu.Update {
		t.Fatalf("an Update without meta sent %v upstream, want [update]", got)
	}

	// A token without markers gets the caller's meta and nothing else.
	plain := createN(t, e.client, "u1", 1)[0]
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: plain,
		Meta: meta(t, map[string]any{"c": true})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	if got := listedMeta(t, e.client, "u1", plain).GetFields(); len(got) != 1 || !got["c"].GetBoolValue() {
		t.Fatalf("meta of a token without markers: %v", got)
	}
}

// The lookup stops reading the listing at the token, and a token the
// listing does not hold gets the update as asked (ChatBotKit's 404).
func TestUpdateMetaLookup(t *testing.T) {
	e := newIdemEnv(t)
	// The listing: the token sits second of three, and the stream is cut
	// after it. Were the lookup to read on, it would retry the cut.
	e.up.Script(fu.List, fu.CutAfterLines(2, false, fu.Lines(
		fu.Token{ID: "t0", CreatedAt: 1, UpdatedAt: 1},
		fu.Token{ID: "t1", Meta: map[string]any{"x": 1, metaRequestID: "r", metaAttempt: "A", "cbkgate.future": []any{1, "two"}}, CreatedAt: 1, UpdatedAt: 1},
		fu.Token{ID: "t2", CreatedAt: 1, UpdatedAt: 1},
	)))
	e.up.SetDefault(fu.Update, fu.ID("t1"))
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1",
		Meta: meta(t, map[string]any{"y": "z"})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	reqs := e.up.Requests()
	if len(reqs) != 2 || reqs[0].Route != fu.List || reqs[1].Route != fu.Update {
		t.Fatalf("requests: %v", reqs)
	}
	var sent struct{ Meta map[string]any }
	if err := json.Unmarshal([]byte(reqs[1].Body), &sent); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(sent.Meta) // keys sorted
	if want := `{"cbkgate.attempt":"A","cbkgate.future":[1,"two"],"cbkgate.request_id":"r","y":"z"}`; string(got) != want {
		t.Fatalf("meta sent: %s, want %s", got, want)
	}

	// Not in the listing: the update goes as asked, and its 404 is the
	// answer.
	e.up.SetDefault(fu.Update, fu.Forward(e.emu))
	from := e.up.Count() + 1
	st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "nope", Meta: meta(t, map[string]any{"y": "z"})})
	if st.Code() != codes.NotFound {
		t.Fatalf("update of a token not listed: %v", st)
	}
	if got := routes(e.up, from); len(got) != 2 || got[0] != fu.List || got[1] != fu.Update {
		t.Fatalf("an Update of a token not listed sent %v, want [list update]", got)
	}
}

// The case the markers exist for: a create whose outcome was unknown left
// a token upstream; its meta is updated before the repeat. The repeat
// still finds that token by its attempt marker and deletes it, so exactly
// one token of the user is left, carrying the request_id, and the caller
// has its secret.
func TestUpdatedOrphanIsReconciled(t *testing.T) {
	defer shorten(t, time.Second, 300*time.Millisecond)()
	e := newIdemEnv(t)
	e.up.Script(fu.Create, fu.ForwardThenReset(e.emu))
	req := &tokenv1.CreateRequest{UserId: "u1", Name: "n", RequestId: "lost"}
	if _, st, _ := create(t, e.client, req); st.Code() != codes.Unavailable || reason(st) != "UPSTREAM_OUTCOME_UNKNOWN" {
		t.Fatalf("lost answer: %v %q", st, reason(st))
	}
	orphans := tokensWith(t, e.client, "u1", "lost")
	if len(orphans) != 1 {
		t.Fatalf("%d tokens after the lost answer, want the orphan", len(orphans))
	}
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: orphans[0].GetId(),
		Meta: meta(t, map[string]any{"owner": "someone"})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	time.Sleep(reconcileAfter)
	resp, st, _ := create(t, e.client, req)
	if st.Code() != codes.OK || resp.GetToken() == "" {
		t.Fatalf("reconciling repeat: %v", st)
	}
	all, err := listAll(t, e.client, &tokenv1.ListRequest{UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].GetToken().GetId() != resp.GetId() {
		t.Fatalf("the user's tokens after the repeat: %v, want only %s (the orphan was %s)", ids(all), resp.GetId(), orphans[0].GetId())
	}
	if got := all[0].GetToken().GetMeta().GetFields()[metaRequestID].GetStringValue(); got != "lost" {
		t.Fatalf("the live token carries request_id %q", got)
	}
}

// When the lookup fails, the Update fails with the lookup's status and
// nothing reaches the update endpoint: an update sent blind could erase
// the markers.
func TestUpdateMetaLookupFailureSendsNoUpdate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reply  fu.Reply
		code   codes.Code
		reason string
	}{
		{"unreachable", fu.Reset(), codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{"503", fu.Error(503, "UNAVAILABLE", "down"), codes.Unavailable, ""},
		{"malformed", fu.Malformed(), codes.Internal, "UPSTREAM_MALFORMED"},
		{"meta not an object", fu.RawLines("chunked", `{"type":"item","data":{"id":"t1","meta":"x","createdAt":1,"updatedAt":1}}`+"\n"), codes.Internal, "UPSTREAM_MALFORMED"},
		{"401", fu.Error(401, "UNAUTHORIZED", "no"), codes.Unauthenticated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newIdemEnv(t)
			e.up.SetDefault(fu.List, tc.reply)
			st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Meta: meta(t, map[string]any{"a": 1.0})})
			if st.Code() != tc.code || (tc.reason != "" && reason(st) != tc.reason) {
				t.Fatalf("got %v %q, want %v %q", st, reason(st), tc.code, tc.reason)
			}
			if n := e.up.Calls(fu.Update); n != 0 {
				t.Fatalf("%d requests reached the update endpoint", n)
			}
			if e.up.Calls(fu.List) == 0 {
				t.Fatal("no lookup was made")
			}
		})
	}
}

// At --caller-rate 1 (a burst of 2), an Update with meta takes both
// requests of the burst, its lookup and its update: the next call is
// RATE_LIMITED and reaches no upstream. An Update with meta over the rate
// makes no lookup either.
func TestUpdateMetaLookupCountsAgainstCallerRate(t *testing.T) {
	e := newIdemEnv(t)
	c := serveService(t, New(testClient(t, e.up.URL), WithCallerRate(state.NewMemory(1, nil).CallerRate())))
	e.emu.Seed("u1", 1)
	tokens, err := listAll(t, e.client, &tokenv1.ListRequest{UserId: "u1"}) // not through c: no rate spent
	if err != nil {
		t.Fatal(err)
	}
	id := tokens[0].GetToken().GetId()
	n := e.up.Count()
	if st := update(t, c, &tokenv1.UpdateRequest{UserId: "u1", TokenId: id, Meta: meta(t, map[string]any{"a": 1.0})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	n += 2
	for _, req := range []*tokenv1.UpdateRequest{
		{UserId: "u1", TokenId: id, Meta: meta(t, map[string]any{"a": 2.0})},
		{UserId: "u1", TokenId: id},
	} {
		st := update(t, c, req)
		if st.Code() != codes.ResourceExhausted || reason(st) != "RATE_LIMITED" {
			t.Fatalf("a call right after an Update with meta at --caller-rate 1: %v %q", st, reason(st))
		}
	}
	if got := e.up.Count(); got != n {
		t.Fatalf("%d upstream requests, want %d", got, n)
	}
}

// A token whose stored meta is nested too deep to be listed (meta_omitted)
// can have its meta replaced, and keeps its markers.
func TestUpdateMetaOfOmittedMetaKeepsMarkers(t *testing.T) {
	e := newIdemEnv(t)
	deep := strings.Repeat(`{"d":`, 40) + "1" + strings.Repeat("}", 40)
	body := `{"name":"deep","meta":{"cbkgate.request_id":"r","cbkgate.attempt":"A","deep":` + deep + `}}`
	req := httptest.NewRequest(http.MethodPost, "/v1/partner/user/u1/token/create", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+emulatorSecret)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.emu.ServeHTTP(rec, req)
	var created struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &created); rec.Code != http.StatusOK || err != nil || created.ID == "" {
		t.Fatalf("seeding the deep token: %d %s", rec.Code, rec.Body)
	}
	all, err := listAll(t, e.client, &tokenv1.ListRequest{UserId: "u1"})
	if err != nil || len(all) != 1 || !all[0].GetToken().GetMetaOmitted() {
		t.Fatalf("the deep token is not listed with meta_omitted: %v %v", all, err)
	}
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: created.ID,
		Meta: meta(t, map[string]any{"shallow": true})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	got := listedMeta(t, e.client, "u1", created.ID).GetFields()
	if len(got) != 3 || !got["shallow"].GetBoolValue() || got[metaRequestID].GetStringValue() != "r" || got[metaAttempt].GetStringValue() != "A" {
		t.Fatalf("meta after the update: %v", got)
	}
}

// An upstream that answers the lookup with JSON pages is read page by
// page, as a List reads it, until the token.
func TestUpdateMetaLookupReadsPages(t *testing.T) {
	e := newIdemEnv(t)
	e.up.Script(fu.List,
		fu.Page("c1", fu.Token{ID: "t0", CreatedAt: 1, UpdatedAt: 1}),
		fu.Page("c2", fu.Token{ID: "t1", Meta: map[string]any{metaAttempt: "A"}, CreatedAt: 1, UpdatedAt: 1}))
	e.up.SetDefault(fu.Update, fu.ID("t1"))
	if st := update(t, e.client, &tokenv1.UpdateRequest{UserId: "u1", TokenId: "t1", Meta: meta(t, map[string]any{})}); st.Code() != codes.OK {
		t.Fatal(st)
	}
	reqs := e.up.Requests()
	if len(reqs) != 3 || reqs[1].Route != fu.List || reqs[1].Query.Get("cursor") != "c1" || reqs[2].Route != fu.Update {
		t.Fatalf("requests: %v", reqs)
	}
	if want := `{"meta":{"cbkgate.attempt":"A"}}`; reqs[2].Body != want {
		t.Fatalf("update body %s, want %s", reqs[2].Body, want)
	}
}
