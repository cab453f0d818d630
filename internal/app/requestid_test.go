package app_test

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// headerRecorder reads the headers of the requests an upstream got.
type headerRecorder struct {
	up   *fu.Server
	seen int // requests already read by last
}

// last returns the headers of the last upstream request, failing if none
// arrived since the previous last.
func (h *headerRecorder) last(t *testing.T) http.Header {
	t.Helper()
	rs := h.up.Requests()
	if len(rs) == h.seen {
		t.Fatal("no upstream request")
	}
	h.seen = len(rs)
	return rs[len(rs)-1].Header
}

var hexTraceID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// linesWith returns the log lines whose request_id is id.
func linesWith(t *testing.T, s *server, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range s.Logs().JSON(t) {
		if l["request_id"] == id {
			out = append(out, l)
		}
	}
	return out
}

func msgs(lines []map[string]any) string {
	var m []string
	for _, l := range lines {
		m = append(m, l["msg"].(string))
	}
	return strings.Join(m, ",")
}

// TestRequestIDs: each call's request id is the valid one it brought or a
// new one (tracing is off here: the caller's trace id, or 32 random hex
// digits); it comes back on the response, is on every log line of the
// call, over the gateway's gRPC hop too, and goes upstream, with the
// caller's traceparent when it sent one.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	_, up := newEmulator(t, "up-secret")
	rec := &headerRecorder{up: up}
	s := startServer(t, up.URL, gatetest.Held("up-secret"))
	client := tokenv1.NewTokenServiceClient(s.Dial(nil))
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParent := "00-" + callerTrace + "-00f067aa0ba902b7-01"
	const httpTrace = "0af7651916cd43dd8448eb211c80319c"
	httpParent := "00-" + httpTrace + "-b7ad6b7169203331-01"

	grpcCases := []struct {
		name, incoming, traceparent string
		kept                        bool
	}{
		{name: "valid id kept", incoming: "req-1.A_b:c", kept: true},
		{name: "64 characters kept", incoming: strings.Repeat("x", 64), kept: true},
		{name: "65 characters replaced", incoming: strings.Repeat("x", 65)},
		{name: "space replaced", incoming: "bad id"},
		{name: "quote replaced", incoming: `a"b`},
		{name: "none sent"},
		{name: "caller's trace continues", traceparent: callerParent},
	}
	for _, tc := range grpcCases {
		t.Run("grpc/"+tc.name, func(t *testing.T) {
			ctx := callCtx(t)
			if tc.incoming != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tc.incoming)
			}
			if tc.traceparent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tc.traceparent)
			}
			var hdr metadata.MD
			if _, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "rid-user"}, grpc.Header(&hdr)); err != nil {
				t.Fatal(err)
			}
			ids := hdr.Get("x-request-id")
			if len(ids) != 1 {
				t.Fatalf("x-request-id header metadata = %q, want one value", ids)
			}
			id := ids[0]
			switch {
			case tc.kept && id != tc.incoming:
				t.Errorf("request id %q, want the incoming %q kept", id, tc.incoming)
			case !tc.kept && !hexTraceID.MatchString(id):
				t.Errorf("request id %q, want a new 32-hex-digit trace id", id)
			}
			upHdr := rec.last(t)
			if got := upHdr.Get("X-Request-Id"); got != id {
				t.Errorf("upstream X-Request-Id %q, want %q", got, id)
			}
			// Tracing off: the caller's context passes through unchanged,
			// and its trace id is the request id; a call without one sends
			// none upstream.
			if got := upHdr.Values("Traceparent"); tc.traceparent == "" && len(got) != 0 {
				t.Errorf("upstream traceparent %q for a call that brought none, tracing off", got)
			} else if tc.traceparent != "" && (len(got) != 1 || got[0] != tc.traceparent || id != callerTrace) {
				t.Errorf("upstream traceparent %q, request id %q; want %q and %q", got, id, tc.traceparent, callerTrace)
			}
			if got := msgs(linesWith(t, s, id)); got != "grpc call,audit" {
				t.Errorf("lines with request_id %s: %q, want the call and audit lines", id, got)
			}
		})
	}

	t.Run("grpc/refused call", func(t *testing.T) {
		// A call that ends with an error, before any upstream request,
		// still answers with its id.
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "x-request-id", "refused-grpc-1")
		if _, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: ".."}, grpc.Header(&hdr)); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("create with user id ..: %v, want InvalidArgument", err)
		}
		if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "refused-grpc-1" {
			t.Errorf("x-request-id header metadata of a refused call = %q", got)
		}
		if got := msgs(linesWith(t, s, "refused-grpc-1")); got != "grpc call,audit" {
			t.Errorf("lines of the refused call: %q", got)
		}
	})

	h := s.httpCaller("")
	body := bodyJSON(t, &tokenv1.CreateRequest{Name: "n"})
	httpCases := []struct {
		name, incoming, traceparent string
		kept                        bool
	}{
		{name: "valid id kept", incoming: "http-req-7", kept: true},
		{name: "invalid id replaced", incoming: "no/slashes"},
		{name: "none sent"},
		{name: "caller's trace continues", traceparent: httpParent},
	}
	for _, tc := range httpCases {
		t.Run("http/"+tc.name, func(t *testing.T) {
			h.header = http.Header{}
			if tc.incoming != "" {
				h.header.Set("X-Request-Id", tc.incoming)
			}
			if tc.traceparent != "" {
				h.header.Set("Traceparent", tc.traceparent)
			}
			resp, b := h.do(t, http.MethodPost, tokensPath("rid-user"), body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
			}
			id := resp.Header.Get("X-Request-Id")
			switch {
			case tc.kept && id != tc.incoming:
				t.Errorf("request id %q, want the incoming %q kept", id, tc.incoming)
			case !tc.kept && !hexTraceID.MatchString(id):
				t.Errorf("request id %q, want a new trace id", id)
			}
			if v := resp.Header.Values("Grpc-Metadata-X-Request-Id"); len(v) > 0 {
				t.Errorf("the id is repeated as Grpc-Metadata-X-Request-Id: %q", v)
			}
			upHdr := rec.last(t)
			if got := upHdr.Get("X-Request-Id"); got != id {
				t.Errorf("upstream X-Request-Id %q, want %q", got, id)
			}
			if got := upHdr.Values("Traceparent"); tc.traceparent == "" && len(got) != 0 {
				t.Errorf("upstream traceparent %q for a request that brought none, tracing off", got)
			} else if tc.traceparent != "" && (len(got) != 1 || got[0] != tc.traceparent || id != httpTrace) {
				t.Errorf("upstream traceparent %q, request id %q; want %q and %q", got, id, tc.traceparent, httpTrace)
			}
			// The gRPC hop kept the id: the gateway call's lines carry it.
			lines := linesWith(t, s, id)
			if got := msgs(lines); got != "grpc call,audit" || lines[0]["transport"] != "http" {
				t.Errorf("lines with request_id %s: %q (%v), want the http call line and the audit line", id, got, lines)
			} else if l := lines[0]; l["http_method"] != "POST" || l["route"] != "/v1/users/{user_id}/tokens" || l["status"] != float64(200) {
				t.Errorf("the gateway call line names http_method %v, route %v, status %v; want POST /v1/users/{user_id}/tokens 200", l["http_method"], l["route"], l["status"])
			}
		})
	}

	t.Run("connect", func(t *testing.T) {
		h.header = http.Header{"X-Request-Id": {"connect-1"}, "Connect-Protocol-Version": {"1"}}
		resp, b := h.do(t, http.MethodPost, "/cbkgate.token.v1.TokenService/Create", []byte(`{"user_id":"rid-user"}`))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Connect create: HTTP %d %s", resp.StatusCode, b)
		}
		if v := resp.Header.Values("X-Request-Id"); len(v) != 1 || v[0] != "connect-1" {
			t.Errorf("X-Request-Id %q, want exactly the incoming id", v)
		}
		if got := rec.last(t).Get("X-Request-Id"); got != "connect-1" {
			t.Errorf("upstream X-Request-Id %q", got)
		}
		lines := linesWith(t, s, "connect-1")
		if got := msgs(lines); got != "grpc call,audit" || lines[0]["transport"] != "http" || lines[0]["route"] != "/cbkgate.token.v1.TokenService/Create" {
			t.Errorf("lines of the Connect call: %v", lines)
		}
	})

	t.Run("http/refused before gRPC", func(t *testing.T) {
		h.header = http.Header{"X-Request-Id": {"refused-1"}}
		resp, _ := h.do(t, http.MethodPut, tokensPath("rid-user"), []byte("{}"))
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("X-Request-Id") != "refused-1" {
			t.Fatalf("HTTP %d, X-Request-Id %q; want 405 with the id", resp.StatusCode, resp.Header.Get("X-Request-Id"))
		}
		lines := linesWith(t, s, "refused-1")
		if len(lines) != 1 || lines[0]["msg"] != "http call refused" || lines[0]["status"] != float64(405) ||
			lines[0]["http_method"] != "PUT" || lines[0]["route"] != "/v1/users/{user_id}/tokens" {
			t.Errorf("refusal lines %v, want one http call refused line with method, route and status", lines)
		}
		if bytes.Contains([]byte(s.Logs().String()), []byte("/v1/users/rid-user")) {
			t.Errorf("a raw path is in the log")
		}
	})
}
