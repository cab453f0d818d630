package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// deepStruct is a Struct nested levels deep: {"a":{"a":...{"leaf":true}}}.
func deepStruct(levels int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"leaf": structpb.NewBoolValue(true)}}
	for i := 1; i < levels; i++ {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStructValue(s)}}
	}
	return s
}

// deepJSON is deepStruct(levels) as JSON text.
func deepJSON(levels int) string {
	return strings.Repeat(`{"a":`, levels-1) + `{"leaf":true}` + strings.Repeat("}", levels-1)
}

// wantBadField checks an INVALID_ARGUMENT with ErrorInfo {cbkgate,
// INVALID_ARGUMENT} and a BadRequest naming field.
func wantBadField(t *testing.T, what string, st interface {
	Code() codes.Code
	Details() []any
}, field string) {
	t.Helper()
	if st == nil || st.Code() != codes.InvalidArgument {
		t.Errorf("%s: %v, want INVALID_ARGUMENT", what, st)
		return
	}
	var info *errdetails.ErrorInfo
	var fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if info.GetReason() != "INVALID_ARGUMENT" || info.GetDomain() != "cbkgate" {
		t.Errorf("%s: ErrorInfo %v, want cbkgate INVALID_ARGUMENT", what, info)
	}
	if len(fields) != 1 || fields[0] != field {
		t.Errorf("%s: BadRequest fields %v, want [%s]", what, fields, field)
	}
}

// TestDeepStructRefused: a meta or config nested deeper than 32 levels is
// INVALID_ARGUMENT naming the field, on Create and Update, over gRPC, the
// JSON gateway, Connect and gRPC-Web, before any upstream call. (The issue:
// a gRPC Create with meta nested 3,332 levels was stored, and poisoned
// every later listing of its user.) 32 levels are accepted.
func TestDeepStructRefused(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-deep"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	callers := []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.connectCaller(bearer(secret)), s.grpcWebCaller(bearer(secret))}
	for _, c := range callers {
		for _, n := range []int{33, 40, 3332} {
			what := func(call string) string { return fmt.Sprintf("%s %s %d levels deep", c, call, n) }
			wantBadField(t, what("create meta"), second(c.create(t, &tokenv1.CreateRequest{UserId: "deep", Meta: deepStruct(n)})), "meta")
			wantBadField(t, what("create config"), second(c.create(t, &tokenv1.CreateRequest{UserId: "deep", Config: deepStruct(n)})), "config")
			wantBadField(t, what("update meta"), second(c.update(t, &tokenv1.UpdateRequest{UserId: "deep", TokenId: "t", Meta: deepStruct(n)})), "meta")
			wantBadField(t, what("update config"), second(c.update(t, &tokenv1.UpdateRequest{UserId: "deep", TokenId: "t", Config: deepStruct(n)})), "config")
		}
	}
	if n := up.Count(); n != 0 {
		t.Fatalf("%d upstream requests for refused calls, want none", n)
	}
	for _, c := range callers {
		if _, st := c.create(t, &tokenv1.CreateRequest{UserId: "deep", Meta: deepStruct(32), Config: deepStruct(32)}); st != nil {
			t.Errorf("%s: create with meta and config 32 levels deep: %v", c, st.Err())
		}
	}
}

// storeInEmulator creates a token straight in the emulator behind base,
// from a raw create body, as ChatBotKit may already hold it.
func storeInEmulator(t *testing.T, base, secret, user, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost,
		base+"/v1/partner/user/"+url.PathEscape(user)+"/token/create", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer(secret))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("storing a token in the emulator: HTTP %d %s", resp.StatusCode, b)
	}
}

// TestListDeepStoredMeta: tokens ChatBotKit already holds with meta nested
// 3,332 and 9,000 levels deep are listed with meta left out and meta_omitted set, in
// both orders, over gRPC, NDJSON, SSE and Connect; the listing completes
// OK, its call lines say OK, each omission is counted and logged at warn.
// (The issue: every List of that user stopped at that token with INTERNAL
// "exceeded maximum recursion depth", while the call lines said OK.)
func TestListDeepStoredMeta(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-deep-list"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	user := unique("deep-list")
	storeInEmulator(t, up.URL, secret, user, `{"name":"before","meta":{"team":"blue"}}`)
	storeInEmulator(t, up.URL, secret, user, `{"name":"deep","meta":`+deepJSON(3332)+`}`)
	storeInEmulator(t, up.URL, secret, user, `{"name":"limit","meta":`+deepJSON(32)+`}`)
	// Deep enough that no protobuf decoder takes it (their limit is 10,000
	// messages), within the emulator's size cap and encoding/json's depth.
	storeInEmulator(t, up.URL, secret, user, `{"name":"deeper","meta":`+deepJSON(9000)+`}`)

	lists := 0
	for _, c := range []caller{s.grpcCaller(bearer(secret)), s.httpCaller(bearer(secret)), s.sseCaller(bearer(secret)), s.connectCaller(bearer(secret))} {
		for _, order := range []tokenv1.Order{tokenv1.Order_ORDER_ASC, tokenv1.Order_ORDER_DESC} {
			what := fmt.Sprintf("%s %v", c, order)
			got, st := c.list(t, &tokenv1.ListRequest{UserId: user, Order: order})
			lists++
			if st != nil {
				t.Errorf("%s: the listing ended %v after %d tokens", what, st.Err(), len(got))
				continue
			}
			if len(got) != 4 {
				t.Errorf("%s: %d tokens, want 4", what, len(got))
				continue
			}
			for _, r := range got {
				tok := r.GetToken()
				switch tok.GetName() {
				case "deep", "deeper":
					if !tok.GetMetaOmitted() || tok.GetMeta() != nil {
						t.Errorf("%s: token %q has meta_omitted %v and meta %v, want true and none", what, tok.GetName(), tok.GetMetaOmitted(), tok.GetMeta() != nil)
					}
				case "before":
					if tok.GetMetaOmitted() || tok.GetMeta().GetFields()["team"].GetStringValue() != "blue" {
						t.Errorf("%s: token %q: meta_omitted %v, meta %v", what, tok.GetName(), tok.GetMetaOmitted(), tok.GetMeta())
					}
				case "limit":
					if tok.GetMetaOmitted() || tok.GetMeta() == nil {
						t.Errorf("%s: the token with meta 32 levels deep: meta_omitted %v, meta %v", what, tok.GetMetaOmitted(), tok.GetMeta() != nil)
					}
				}
			}
		}
	}
	for _, l := range callLines(t, s) {
		if l["method"] == "/cbkgate.token.v1.TokenService/List" && l["code"] != "OK" {
			t.Errorf("List call line %v, want code OK", l)
		}
	}
	warned := 0
	for _, l := range s.Logs().JSON(t) {
		if l["level"] == "WARN" && strings.Contains(fmt.Sprint(l["msg"]), "without its meta") {
			warned++
		}
	}
	if warned != 2*lists {
		t.Errorf("%d warn lines about an omitted meta, want %d", warned, 2*lists)
	}
	compareSamples(t, "meta omitted", nonZero(scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics"), "cbkgate_list_meta_omitted_total"),
		map[string]float64{"cbkgate_list_meta_omitted_total{}": float64(2 * lists)})
}
