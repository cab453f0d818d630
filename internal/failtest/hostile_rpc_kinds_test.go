package failtest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestHostileRPCRefusalsInTheClientsProtocol: a request on an RPC path
// that its protocol cannot carry (a compression cbkgate does not take, a
// List sent as Connect unary or in a type no protocol here serves, a unary
// method sent as a Connect stream, gRPC-Web's text form) is refused in the
// client's own protocol with ErrorInfo{UNSUPPORTED_MEDIA_TYPE, cbkgate} and
// a message in words, logged as a 415, and reaches no upstream. Before:
// each was vanguard's own text/plain 415 ("\"br\" compression not
// supported", "stream type server not supported with Connect unary (POST)
// protocol"), which no Connect or gRPC-Web client decodes into details.
func TestHostileRPCRefusalsInTheClientsProtocol(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	createJSON := []byte(`{"user_id":"u1","name":"n"}`)
	listJSON := []byte(`{"user_id":"u1"}`)
	for _, c := range []struct {
		name, method string
		header       map[string]string
		body         []byte
		httpStatus   int    // 200: the protocol carries the error after the headers
		wantCT       string // prefix of the answer's Content-Type
		mentions     string // the message names what to send instead
	}{
		{"Connect unary, br", "Create", map[string]string{"Content-Type": "application/json", "Content-Encoding": "br"}, createJSON,
			http.StatusUnsupportedMediaType, "application/json", "gzip"},
		{"Connect unary, deflate", "Create", map[string]string{"Content-Type": "application/json", "Content-Encoding": "deflate"}, createJSON,
			http.StatusUnsupportedMediaType, "application/json", "gzip"},
		{"Connect streaming, br", "List", map[string]string{"Content-Type": "application/connect+json", "Connect-Content-Encoding": "br"}, envelope(0, listJSON),
			http.StatusOK, "application/connect+json", "gzip"},
		{"gRPC-Web, zstd", "List", map[string]string{"Content-Type": "application/grpc-web+json", "Grpc-Encoding": "zstd"}, envelope(0, listJSON),
			http.StatusOK, "application/grpc-web", "gzip"},
		{"List as Connect unary JSON", "List", map[string]string{"Content-Type": "application/json"}, listJSON,
			http.StatusUnsupportedMediaType, "application/json", "application/connect+json"},
		{"List as Connect unary protobuf", "List", map[string]string{"Content-Type": "application/proto"}, nil,
			http.StatusUnsupportedMediaType, "application/json", "application/connect+json"},
		{"List as text/plain", "List", map[string]string{"Content-Type": "text/plain"}, listJSON,
			http.StatusUnsupportedMediaType, "application/json", "application/connect+json"},
		{"List as gRPC-Web text", "List", map[string]string{"Content-Type": "application/grpc-web-text+json"}, envelope(0, listJSON),
			http.StatusUnsupportedMediaType, "application/json", "application/grpc-web"},
		{"Create as a Connect stream", "Create", map[string]string{"Content-Type": "application/connect+json"}, envelope(0, createJSON),
			http.StatusOK, "application/connect+json", "application/json"},
	} {
		{
			linesBefore := g.Logs().String()
			res := g.postRPC(c.method, c.header, c.body)
			if res.status != c.httpStatus || !strings.HasPrefix(res.header.Get("Content-Type"), c.wantCT) {
				t.Errorf("%s: HTTP %d %q %s, want %d %s", c.name, res.status, res.header.Get("Content-Type"), res.body, c.httpStatus, c.wantCT)
				continue
			}
			if !ownReason(res.st, "UNSUPPORTED_MEDIA_TYPE") {
				t.Errorf("%s: %v, ErrorInfo %v; want UNSUPPORTED_MEDIA_TYPE in domain cbkgate", c.name, res.st, gatetest.ErrorInfo(res.st))
				continue
			}
			if !strings.Contains(res.st.Message(), c.mentions) {
				t.Errorf("%s: message %q does not say to send %s", c.name, res.st.Message(), c.mentions)
			}
			newLines := strings.TrimPrefix(g.Logs().String(), linesBefore)
			// The line's status is the HTTP one written (200 where the
			// protocol carries the error after the headers), its code the
			// call's.
			want := fmt.Sprintf(`"status":%d,"code":"InvalidArgument"`, c.httpStatus)
			if !strings.Contains(newLines, `"http call refused"`) || !strings.Contains(newLines, want) {
				t.Errorf("%s: no refusal line with %s; new lines:\n%s", c.name, want, newLines)
			}
		}
	}
	wantCalls(t, up, fu.Create, 0)
	wantCalls(t, up, fu.List, 0)

	// What the protocols do carry still goes through: identity and gzip.
	if res := g.postRPC("Create", map[string]string{"Content-Type": "application/json", "Content-Encoding": "identity"}, createJSON); res.status != http.StatusOK {
		t.Errorf("Connect unary, identity: HTTP %d %s", res.status, res.body)
	}
	if res := g.postRPC("Create", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzipped(createJSON)); res.status != http.StatusOK {
		t.Errorf("Connect unary, gzip: HTTP %d %s", res.status, res.body)
	}
	if res := g.postRPC("List", map[string]string{"Content-Type": "application/grpc-web+json"}, envelope(0, listJSON)); res.st != nil {
		t.Errorf("gRPC-Web List: %v", res.st)
	}
	wantCalls(t, up, fu.Create, 2)
	// The REST route takes uncompressed JSON labelled identity.
	identity := refusal{method: "POST", path: "/v1/users/u1/tokens", body: `{"name":"n"}`, header: []string{"Content-Encoding", "identity"}}
	if resp, body := identity.send(g.ctx(), t, g); resp.StatusCode != http.StatusOK {
		t.Errorf("REST Create, Content-Encoding identity: HTTP %d %s", resp.StatusCode, body)
	}
}

// TestHostileRPCBadTimeoutHeader: a deadline header that does not parse
// (Connect-Timeout-Ms on Connect unary and streaming, Grpc-Timeout on
// gRPC-Web) is 400 INVALID_ARGUMENT in the client's protocol, with
// ErrorInfo{INVALID_ARGUMENT, cbkgate}, a BadRequest naming the header and
// a message in words; it reaches no upstream. Before: vanguard's text/plain
// 400 `strconv.ParseInt: parsing "abc": invalid syntax`, without details.
// Good values still pass.
func TestHostileRPCBadTimeoutHeader(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	createJSON := []byte(`{"user_id":"u1","name":"n"}`)
	listJSON := envelope(0, []byte(`{"user_id":"u1"}`))
	unary := map[string]string{"Content-Type": "application/json"}
	stream := map[string]string{"Content-Type": "application/connect+json"}
	web := map[string]string{"Content-Type": "application/grpc-web+json"}
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for hk, hv := range h {
			out[hk] = hv
		}
		return out
	}
	for _, c := range []struct {
		name, method, header, value string
		base                        map[string]string
		body                        []byte
		httpStatus                  int
	}{
		{"Connect unary, not a number", "Create", "Connect-Timeout-Ms", "abc", unary, createJSON, http.StatusBadRequest},
		{"Connect unary, negative", "Create", "Connect-Timeout-Ms", "-5", unary, createJSON, http.StatusBadRequest},
		{"Connect streaming, a fraction", "List", "Connect-Timeout-Ms", "1.5", stream, listJSON, http.StatusOK},
		{"gRPC-Web, a word", "List", "Grpc-Timeout", "soon", web, listJSON, http.StatusOK},
		{"gRPC-Web, no unit", "Create", "Grpc-Timeout", "30", web, envelope(0, createJSON), http.StatusOK},
		{"gRPC-Web, 9 digits", "Create", "Grpc-Timeout", "123456789S", web, envelope(0, createJSON), http.StatusOK},
	} {
		res := g.postRPC(c.method, with(c.base, c.header, c.value), c.body)
		for _, s := range goErrorText {
			if strings.Contains(string(res.body), s) || (res.st != nil && strings.Contains(res.st.Message(), s)) {
				t.Errorf("%s: the answer carries Go error text %q: %s", c.name, s, res.body)
			}
		}
		if res.status != c.httpStatus || !ownReason(res.st, "INVALID_ARGUMENT") {
			t.Errorf("%s: HTTP %d %v (%s), want %d and INVALID_ARGUMENT in domain cbkgate", c.name, res.status, res.st, res.body, c.httpStatus)
			continue
		}
		if fields := badRequestFields(res.st.Details()); len(fields) != 1 || fields[0] != c.header {
			t.Errorf("%s: BadRequest fields %v, want [%s]", c.name, fields, c.header)
		}
	}
	wantCalls(t, up, fu.Create, 0)
	wantCalls(t, up, fu.List, 0)
	for _, c := range []struct {
		method string
		header map[string]string
		body   []byte
	}{
		{"Create", with(unary, "Connect-Timeout-Ms", "30000"), createJSON},
		{"List", with(stream, "Connect-Timeout-Ms", "30000"), listJSON},
		{"List", with(web, "Grpc-Timeout", "30S"), listJSON},
	} {
		if res := g.postRPC(c.method, c.header, c.body); res.status != http.StatusOK || res.st != nil {
			t.Errorf("%s %v: HTTP %d %v %s", c.method, c.header, res.status, res.st, res.body)
		}
	}
}
