package app_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// sseCaller is httpCaller whose List asks for Server-Sent Events.
type sseCaller struct {
	*httpCaller
	lastEventID string // sent as Last-Event-ID when set
}

func (s *server) sseCaller(authz string) *sseCaller {
	return &sseCaller{httpCaller: s.httpCaller(authz)}
}

func (c *sseCaller) String() string { return "sse" }

// sseEvent is one dispatched event.
type sseEvent struct {
	event, id, data string
}

// sseAnswer is a decoded SSE List answer.
type sseAnswer struct {
	httpStatus int
	events     []sseEvent
	results    []*tokenv1.ListResponse
	err        *status.Status
	ended      bool // the stream ended with "event: end"
}

// parseSSE splits an event stream into events as the SSE spec does: lines
// up to a blank line make one event; "data" lines are joined by newlines.
func parseSSE(t *testing.T, b []byte) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	var data []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				cur.data = strings.Join(data, "\n")
				out = append(out, cur)
			}
			cur, data = sseEvent{}, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			cur.event = value
		case "id":
			cur.id = value
		case "data":
			data = append(data, value)
		default:
			t.Errorf("SSE: unexpected line %q", line)
		}
	}
	if data != nil {
		t.Errorf("SSE: stream ends inside an event: %q", data)
	}
	return out
}

func (c *sseCaller) listRaw(t *testing.T, req *tokenv1.ListRequest) sseAnswer {
	t.Helper()
	h := *c.httpCaller
	h.header = http.Header{"Accept": {"text/event-stream"}}
	if c.lastEventID != "" {
		h.header.Set("Last-Event-ID", c.lastEventID)
	}
	resp, b := h.do(t, http.MethodGet, tokensPath(req.GetUserId())+listQuery(req), nil)
	out := sseAnswer{httpStatus: resp.StatusCode}
	if resp.StatusCode == http.StatusNoContent {
		if len(b) != 0 {
			t.Errorf("SSE: 204 with a body: %q", b)
		}
		return out
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		// Refused before the gateway ran the call: a plain Status.
		out.err = gatetest.Status(t, b)
		return out
	}
	out.events = parseSSE(t, b)
	for i, ev := range out.events {
		switch ev.event {
		case "":
			if out.err != nil {
				t.Errorf("SSE: a token event after the error event")
			}
			m := &tokenv1.ListResponse{}
			if err := protojson.Unmarshal([]byte(ev.data), m); err != nil {
				t.Fatalf("SSE: token event: %v: %s", err, ev.data)
			}
			if ev.id != m.GetCursor() {
				t.Errorf("SSE: event %d has id %q, want its cursor %q", i, ev.id, m.GetCursor())
			}
			out.results = append(out.results, m)
		case "error":
			if i != len(out.events)-1 {
				t.Errorf("SSE: the error event is not the last")
			}
			out.err = gatetest.Status(t, []byte(ev.data))
		case "end":
			if i != len(out.events)-1 || ev.data != "" {
				t.Errorf("SSE: the end event is not the last, or has data %q", ev.data)
			}
			out.ended = true
		default:
			t.Errorf("SSE: unexpected event type %q", ev.event)
		}
	}
	switch {
	case out.err != nil && len(out.results) == 0:
		if want := runtime.HTTPStatusFromCode(out.err.Code()); resp.StatusCode != want {
			t.Errorf("SSE failing before the first token: HTTP %d for %v, want %d", resp.StatusCode, out.err.Code(), want)
		}
	case resp.StatusCode != http.StatusOK:
		t.Errorf("SSE: HTTP %d, want 200", resp.StatusCode)
	case out.err == nil && !out.ended:
		t.Errorf("SSE: a listing that ended without an error has no end event")
	}
	return out
}

func (c *sseCaller) list(t *testing.T, req *tokenv1.ListRequest) ([]*tokenv1.ListResponse, *status.Status) {
	r := c.listRaw(t, req)
	return r.results, r.err
}
