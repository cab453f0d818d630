package failtest

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// rpcJSONProtocols are the three ways a JSON message reaches an RPC path
// of the HTTP port: Connect unary, Connect streaming, gRPC-Web.
// Connect streaming serves only List, a server stream.
var rpcJSONProtocols = []struct {
	name, method string
	header       map[string]string
	frame        func(string) []byte
	httpStatus   int // of a refused call
}{
	{"Connect unary", "Create", map[string]string{"Content-Type": "application/json"}, func(s string) []byte { return []byte(s) }, http.StatusBadRequest},
	{"Connect streaming", "List", map[string]string{"Content-Type": "application/connect+json"}, func(s string) []byte { return envelope(0, []byte(s)) }, http.StatusOK},
	{"gRPC-Web JSON", "Create", map[string]string{"Content-Type": "application/grpc-web+json"}, func(s string) []byte { return envelope(0, []byte(s)) }, http.StatusOK},
}

// TestHostileRPCBadJSON: JSON that does not parse, has a value of the wrong
// type or a field the message does not have, sent to Connect unary,
// Connect streaming and gRPC-Web (the issue found HTTP 500 "unknown" with
// no log line for the first two, and unknown fields accepted), is 400
// INVALID_ARGUMENT with ErrorInfo{INVALID_ARGUMENT, cbkgate}, a BadRequest
// naming the field where one is to blame and a message in words; each is
// logged, and none reaches the upstream. Compressed JSON is held to the same
// rules, and a binary message's unknown fields are ignored, as proto
// intends.
func TestHostileRPCBadJSON(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	deep := strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200)
	for i, c := range []struct {
		body  string
		field string // "" when no one field is to blame
	}{
		{`{"user_id":`, "user_id"},
		{`not json`, ""},
		{`{"user_id":5}`, "user_id"},
		{`{"user_id":"u1","nmae":"x"}`, "nmae"},
		{`{"user_id":"u1","name":["x"]}`, "name"},
		{"{\"user_id\":\"u1\",\"name\":\"\xff\"}", "name"},
		{`{"user_id":"u1","meta":` + deep + `}`, "meta"},
		{`{"user_id":"u1"} {}`, ""},
		{`[]`, ""},
	} {
		for _, p := range rpcJSONProtocols {
			for _, compressed := range []bool{false, true} {
				header, body := map[string]string{}, p.frame(c.body)
				for k, v := range p.header {
					header[k] = v
				}
				if compressed {
					switch header["Content-Type"] {
					case "application/json":
						header["Content-Encoding"], body = "gzip", gzipped([]byte(c.body))
					case "application/connect+json":
						header["Connect-Content-Encoding"], body = "gzip", envelope(1, gzipped([]byte(c.body)))
					default:
						header["Grpc-Encoding"], body = "gzip", envelope(1, gzipped([]byte(c.body)))
					}
				}
				linesBefore := g.Logs().String()
				res := g.postRPC(p.method, header, body)
				what := p.name + " " + strings.ToValidUTF8(c.body[:min(len(c.body), 40)], "?")
				if compressed {
					what += " (gzip)"
				}
				if res.status != p.httpStatus || res.st == nil || res.st.Code() != codes.InvalidArgument {
					t.Errorf("%s: HTTP %d, %v; want %d and INVALID_ARGUMENT", what, res.status, res.st, p.httpStatus)
					continue
				}
				if !compressed && p.method == "Create" && p.httpStatus != http.StatusOK {
					t.Logf("%s: %q %v", what, res.st.Message(), badRequestFields(res.st.Details()))
				}
				if !ownReason(res.st, "INVALID_ARGUMENT") {
					t.Errorf("%s: ErrorInfo %v, want INVALID_ARGUMENT in domain cbkgate", what, gatetest.ErrorInfo(res.st))
				}
				if got := badRequestFields(res.st.Details()); c.field != "" && (len(got) != 1 || got[0] != c.field) {
					t.Errorf("%s: BadRequest fields %v, want [%s]", what, got, c.field)
				}
				for _, bad := range goErrorText {
					if strings.Contains(res.st.Message(), bad) {
						t.Errorf("%s: message %q carries Go error text %q", what, res.st.Message(), bad)
					}
				}
				// Refusal lines are rate-limited (a burst of 20): the first
				// three bodies' 18 refusals each write one.
				newLines := strings.TrimPrefix(g.Logs().String(), linesBefore)
				if i < 3 && (!strings.Contains(newLines, `"http call refused"`) || !strings.Contains(newLines, `"code":"InvalidArgument"`)) {
					t.Errorf("%s: no refusal line; new lines:\n%s", what, newLines)
				}
			}
		}
	}
	wantCalls(t, up, fu.Create, 0)
	wantCalls(t, up, fu.List, 0)

	// What is right still goes through, JSON names and proto names alike,
	// and a binary message's unknown field (99) is ignored.
	up.SetDefault(fu.Create, fu.Created("t1", "secret-t1"))
	up.SetDefault(fu.List, fu.Page(""))
	for _, p := range rpcJSONProtocols {
		bodies := []string{`{"user_id":"u1","name":"n"}`, `{"userId":"u1","meta":{"a":[1,{"b":null}]}}`}
		if p.method == "List" {
			bodies = []string{`{"user_id":"u1","page_size":5}`, `{"userId":"u1","pageSize":"5"}`}
		}
		for _, body := range bodies {
			if res := g.postRPC(p.method, p.header, p.frame(body)); res.status != http.StatusOK || res.st != nil {
				t.Errorf("%s %s: HTTP %d, %v; want OK", p.name, body, res.status, res.st)
			}
		}
	}
	msg := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "u1")
	msg = protowire.AppendString(protowire.AppendTag(msg, 99, protowire.BytesType), "from a newer client")
	if res := g.postRPC("Create", map[string]string{"Content-Type": "application/grpc-web+proto"}, envelope(0, msg)); res.st != nil {
		t.Errorf("gRPC-Web protobuf with an unknown field: %v, want OK", res.st)
	}
	if res := g.postRPC("Create", map[string]string{"Content-Type": "application/proto"}, msg); res.status != http.StatusOK {
		t.Errorf("Connect protobuf with an unknown field: HTTP %d %s, want 200", res.status, res.body)
	}
	wantCalls(t, up, fu.Create, 2*2+2)
	wantCalls(t, up, fu.List, 2)
}

// TestHostileRPCBodyTypes: a body of a type no RPC protocol takes
// (text/plain, multipart/form-data, a form, none at all) on an RPC path is
// 415 as a Connect error JSON with ErrorInfo{UNSUPPORTED_MEDIA_TYPE,
// cbkgate} (the issue found 404), logged, and reaches no upstream.
func TestHostileRPCBodyTypes(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	for _, ct := range []string{
		"text/plain",
		"text/plain; charset=utf-8",
		"multipart/form-data; boundary=x",
		"application/x-www-form-urlencoded",
		"application/xml",
		"application/connect+xml",
		"",
	} {
		linesBefore := g.Logs().String()
		header := map[string]string{}
		if ct != "" {
			header["Content-Type"] = ct
		}
		res := g.postRPC("Create", header, []byte(`{"user_id":"u1","name":"n"}`))
		if res.status != http.StatusUnsupportedMediaType || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
			t.Errorf("%q: HTTP %d %s %s, want 415 and a Connect error JSON", ct, res.status, res.header.Get("Content-Type"), res.body)
			continue
		}
		if !ownReason(res.st, "UNSUPPORTED_MEDIA_TYPE") {
			t.Errorf("%q: %v, ErrorInfo %v; want UNSUPPORTED_MEDIA_TYPE in domain cbkgate", ct, res.st, gatetest.ErrorInfo(res.st))
		}
		newLines := strings.TrimPrefix(g.Logs().String(), linesBefore)
		if !strings.Contains(newLines, `"http call refused"`) || !strings.Contains(newLines, `"status":415`) {
			t.Errorf("%q: no refusal line; new lines:\n%s", ct, newLines)
		}
	}
	wantCalls(t, up, fu.Create, 0)
}

// badRequestFields lists the fields of the details' BadRequest.
func badRequestFields(details []any) []string {
	var out []string
	for _, d := range details {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}
