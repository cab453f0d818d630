package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// listAll lists every token of user (default order) and fails on error.
func listAll(t *testing.T, c caller, user string) []*tokenv1.Token {
	t.Helper()
	rs, st := c.list(t, &tokenv1.ListRequest{UserId: user})
	wantCode(t, "List", st, codes.OK)
	out := make([]*tokenv1.Token, len(rs))
	for i, r := range rs {
		out[i] = r.GetToken()
	}
	return out
}

func ids(toks []*tokenv1.Token) []string {
	out := make([]string, len(toks))
	for i, tok := range toks {
		out[i] = tok.GetId()
	}
	return out
}

// TestTokenLifecycle runs every RPC over gRPC and every route over HTTP
// against the emulator: create with meta and config, list, partial
// updates, delete, and NOT_FOUND afterwards.
func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-lifecycle"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)

	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret))} {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			user := "user-lifecycle-" + c.String()
			meta := mustStruct(t, map[string]any{
				"team":   "blue",
				"seats":  3,
				"tags":   []any{"a", "b", 1.5, false, nil},
				"nested": map[string]any{"ok": true, "deeper": map[string]any{"x": "y"}},
			})
			config := mustStruct(t, map[string]any{"scope": "chat", "limit": 10})

			before := time.Now()
			created, st := c.create(t, &tokenv1.CreateRequest{
				UserId: user, Name: "first", Description: "the first token", Config: config, Meta: meta,
			})
			wantCode(t, "Create", st, codes.OK)
			if created.GetId() == "" || created.GetToken() == "" {
				t.Fatalf("Create = %v, want an id and a token value", created)
			}
			ct := created.GetCreateTime().AsTime()
			if ct.Before(before.Add(-time.Minute)) || ct.After(time.Now().Add(time.Minute)) {
				t.Errorf("create_time %v is not about now (%v)", ct, before)
			}

			toks := listAll(t, c, user)
			if len(toks) != 1 {
				t.Fatalf("List after Create = %v, want one token", ids(toks))
			}
			got := toks[0]
			if got.GetId() != created.GetId() || got.GetName() != "first" || got.GetDescription() != "the first token" {
				t.Errorf("listed %v, want id %s, name first, description", got, created.GetId())
			}
			if !proto.Equal(got.GetMeta(), meta) {
				t.Errorf("meta did not round-trip:\n got  %v\n want %v", got.GetMeta(), meta)
			}
			if !got.GetCreateTime().AsTime().Equal(ct) || got.GetUpdateTime() == nil {
				t.Errorf("listed create_time %v update_time %v; want create_time %v and an update_time",
					got.GetCreateTime().AsTime(), got.GetUpdateTime(), ct)
			}

			// Partial update: only the name; the rest stays.
			upd, st := c.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: created.GetId(), Name: proto.String("renamed")})
			wantCode(t, "Update name", st, codes.OK)
			if upd.GetId() != created.GetId() {
				t.Errorf("Update id = %q, want %q", upd.GetId(), created.GetId())
			}
			got = listAll(t, c, user)[0]
			if got.GetName() != "renamed" || got.GetDescription() != "the first token" || !proto.Equal(got.GetMeta(), meta) {
				t.Errorf("after updating the name only: %v", got)
			}

			// Another partial update: description and meta; the name stays.
			meta2 := mustStruct(t, map[string]any{"team": "red"})
			_, st = c.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: created.GetId(), Description: proto.String(""), Meta: meta2})
			wantCode(t, "Update description and meta", st, codes.OK)
			got = listAll(t, c, user)[0]
			if got.GetName() != "renamed" || got.GetDescription() != "" || !proto.Equal(got.GetMeta(), meta2) {
				t.Errorf("after updating description and meta: %v", got)
			}

			// A second token: the default order is newest first, ORDER_ASC oldest first.
			second, st := c.create(t, &tokenv1.CreateRequest{UserId: user})
			wantCode(t, "Create without fields", st, codes.OK)
			if second.GetToken() == "" || second.GetToken() == created.GetToken() {
				t.Errorf("second token value %q, want a new one", second.GetToken())
			}
			if got, want := ids(listAll(t, c, user)), []string{second.GetId(), created.GetId()}; !slices.Equal(got, want) {
				t.Errorf("default order = %v, want newest first %v", got, want)
			}
			asc, st := c.list(t, &tokenv1.ListRequest{UserId: user, Order: tokenv1.Order_ORDER_ASC})
			wantCode(t, "List asc", st, codes.OK)
			if len(asc) != 2 || asc[0].GetToken().GetId() != created.GetId() {
				t.Errorf("ORDER_ASC = %v, want the first token first", asc)
			}

			del, st := c.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: created.GetId()})
			wantCode(t, "Delete", st, codes.OK)
			if del.GetId() != created.GetId() {
				t.Errorf("Delete id = %q, want %q", del.GetId(), created.GetId())
			}
			if got, want := ids(listAll(t, c, user)), []string{second.GetId()}; !slices.Equal(got, want) {
				t.Errorf("List after Delete = %v, want %v", got, want)
			}

			// The deleted token is gone: NOT_FOUND with ChatBotKit's ErrorInfo.
			_, st = c.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: created.GetId()})
			wantCode(t, "Delete again", st, codes.NotFound)
			gatetest.WantErrorInfo(t, st, "NOT_FOUND", http.StatusNotFound)
			if st.Message() == "" {
				t.Error("NOT_FOUND without the upstream message")
			}
			_, st = c.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: created.GetId(), Name: proto.String("x")})
			wantCode(t, "Update deleted", st, codes.NotFound)
			gatetest.WantErrorInfo(t, st, "NOT_FOUND", http.StatusNotFound)
		})
	}
}

// TestHTTPWireNames checks the gateway's JSON spelling directly: proto
// field names in requests and answers.
func TestHTTPWireNames(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-wire"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	h := s.httpCaller(bearer(secret))

	resp, b := h.do(t, http.MethodPost, tokensPath("wire-user"), []byte(`{"name":"n","meta":{"k":"v"},"config":{}}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: HTTP %d: %s", resp.StatusCode, b)
	}
	var created map[string]any
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "token", "create_time"} {
		if _, ok := created[k]; !ok {
			t.Errorf("create answer %s lacks %q", b, k)
		}
	}

	// An unknown (here: camelCase-misspelled) field is refused, not ignored.
	resp, b = h.do(t, http.MethodPatch, tokenPath("wire-user", created["id"].(string)), []byte(`{"nmae":"typo"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PATCH with an unknown field: HTTP %d %s, want 400", resp.StatusCode, b)
	}

	resp, b = h.do(t, http.MethodGet, tokensPath("wire-user")+"?page_size=1&limit=1&order=ORDER_ASC", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: HTTP %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var lines int
	for sc.Scan() {
		lines++
		var line struct {
			Result map[string]json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		var tok map[string]json.RawMessage
		if err := json.Unmarshal(line.Result["token"], &tok); err != nil {
			t.Fatalf("line %s: %v", sc.Bytes(), err)
		}
		for _, k := range []string{"id", "name", "meta", "create_time", "update_time"} {
			if _, ok := tok[k]; !ok {
				t.Errorf("listed token %s lacks %q", line.Result["token"], k)
			}
		}
	}
	if lines != 1 {
		t.Errorf("GET ...?limit=1 gave %d lines, want 1: %s", lines, b)
	}
}

// TestValidation: invalid requests are refused with INVALID_ARGUMENT
// before anything goes upstream.
func TestValidation(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-validation"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	longID := strings.Repeat("u", 257)
	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret))} {
		t.Run(c.String(), func(t *testing.T) {
			code := func(st *status.Status) codes.Code { return st.Code() }
			cases := []struct {
				name string
				run  func(t *testing.T) codes.Code
			}{
				{"negative page_size", func(t *testing.T) codes.Code {
					_, st := c.list(t, &tokenv1.ListRequest{UserId: "u", PageSize: -1})
					return code(st)
				}},
				{"negative limit", func(t *testing.T) codes.Code {
					_, st := c.list(t, &tokenv1.ListRequest{UserId: "u", Limit: -5})
					return code(st)
				}},
				{"user_id too long", func(t *testing.T) codes.Code {
					_, st := c.create(t, &tokenv1.CreateRequest{UserId: longID})
					return code(st)
				}},
				{"user_id with a control character", func(t *testing.T) codes.Code {
					_, st := c.delete(t, &tokenv1.DeleteRequest{UserId: "u\x01", TokenId: "t"})
					return code(st)
				}},
			}
			for _, tc := range cases {
				before := up.Count()
				if got := tc.run(t); got != codes.InvalidArgument {
					t.Errorf("%s: code %v, want InvalidArgument", tc.name, got)
				}
				if n := up.Count() - before; n != 0 {
					t.Errorf("%s: %d upstream requests, want none", tc.name, n)
				}
			}
		})
	}
}
