package httpapi

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// Server-Sent Events for List: a GET of the List route whose Accept names
// text/event-stream gets the stream as SSE instead of NDJSON, so a page can
// read it with EventSource (or fetch). Each token is one default event
// whose data is the ListResponse JSON and whose id is its cursor when it
// has one; a failure is one "event: error" whose data is the
// google.rpc.Status JSON. A reconnecting EventSource sends the last id it
// saw as Last-Event-ID, which is taken as the cursor, so the stream resumes
// right after the last token it received (every token carries a cursor).
// A complete listing ends with "event: end" (empty data), and a request
// whose cursor is already at the end of the listing gets 204 No Content:
// that is what makes an EventSource stop reconnecting, rather than list
// again from the end forever.
//
// The HTTP status follows the NDJSON stream's rule: a failure before the
// first token carries the matching status (EventSource then stops rather
// than retrying), one after it only the error event.

const sseContentType = "text/event-stream"

type sseKey struct{}

// isSSE reports whether the request (as seen by the gateway's forward
// options, through its context) asked for SSE.
func isSSE(ctx context.Context) bool {
	v, _ := ctx.Value(sseKey{}).(bool)
	return v
}

// acceptsSSE reports whether an Accept header names text/event-stream.
func acceptsSSE(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == sseContentType {
				return true
			}
		}
	}
	return false
}

// isListRoute reports whether r asks for /v1/users/{user_id}/tokens.
func isListRoute(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && restRoute(r.URL.EscapedPath()) == routeTokens
}

// withSSE prepares an SSE List request for the gateway: the Accept header
// becomes exactly text/event-stream (the gateway picks its marshaler by
// exact match), Last-Event-ID becomes the cursor, and the context says SSE
// for the forward options.
func withSSE(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isListRoute(r) || !acceptsSSE(r.Header) {
			next.ServeHTTP(w, r)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sseKey{}, true))
		r.Header.Set("Accept", sseContentType)
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			q := r.URL.Query()
			q.Set("cursor", id)
			r.URL.RawQuery = q.Encode()
		}
		w.Header().Set("Cache-Control", "no-store")
		sw := &sseWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		sw.end(r.URL.Query().Get("cursor") != "")
	})
}

// sseEnd is the event that ends a complete listing.
const sseEnd = "event: end\ndata:\n\n"

// sseWriter watches what the gateway writes of an SSE List, so that the
// end of a listing can be told from its failure: the gateway writes
// nothing at all for a listing that ends OK without a token, and an error
// (before or after tokens) as an "event: error".
type sseWriter struct {
	http.ResponseWriter
	wrote  bool // a header or body went out
	failed bool // an error event or status went out
}

func (w *sseWriter) WriteHeader(code int) {
	w.wrote = true
	if code >= 300 {
		w.failed = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *sseWriter) Write(b []byte) (int, error) {
	w.wrote = true
	if bytes.HasPrefix(b, []byte("event: error\n")) {
		w.failed = true
	}
	return w.ResponseWriter.Write(b)
}

func (w *sseWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *sseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// end finishes a listing that did not fail: 204 for a resumed one with
// nothing after its cursor, else the end event.
func (w *sseWriter) end(resumed bool) {
	if w.failed {
		return
	}
	if !w.wrote {
		h := w.Header()
		h.Del("Transfer-Encoding")
		if resumed {
			h.Del("Content-Type")
			w.ResponseWriter.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Content-Type", sseContentType)
	}
	_, _ = io.WriteString(w.ResponseWriter, sseEnd)
	w.Flush()
}

// sseMarshaler frames the gateway's stream chunks as events. Everything
// that is not a stream chunk (request bodies, unary errors) is the JSON of
// the embedded marshaler.
type sseMarshaler struct {
	*marshaler
}

func (m sseMarshaler) ContentType(v any) string {
	if isChunk(v) {
		return sseContentType
	}
	return m.marshaler.ContentType(v)
}

func (sseMarshaler) StreamContentType(any) string { return sseContentType }

// Delimiter ends an event with the blank line SSE wants; Marshal's output
// already ends with a newline.
func (sseMarshaler) Delimiter() []byte { return []byte("\n") }

func isChunk(v any) bool {
	switch c := v.(type) {
	case map[string]any:
		_, ok := c["result"]
		return ok
	case map[string]proto.Message:
		_, ok := c["error"]
		return ok
	}
	return false
}

func (m sseMarshaler) Marshal(v any) ([]byte, error) {
	switch c := v.(type) {
	case map[string]any:
		if resp, ok := c["result"].(*tokenv1.ListResponse); ok {
			data, err := m.marshaler.Marshal(resp)
			if err != nil {
				return nil, err
			}
			var b bytes.Buffer
			if id := resp.GetCursor(); id != "" && validEventID(id) {
				b.WriteString("id: ")
				b.WriteString(id)
				b.WriteByte('\n')
			}
			writeData(&b, data)
			return b.Bytes(), nil
		}
	case map[string]proto.Message:
		if st, ok := c["error"]; ok {
			data, err := m.marshaler.Marshal(st)
			if err != nil {
				return nil, err
			}
			var b bytes.Buffer
			b.WriteString("event: error\n")
			writeData(&b, data)
			return b.Bytes(), nil
		}
	}
	return m.marshaler.Marshal(v)
}

// writeData writes data as data lines. protojson writes no newlines, but a
// line break inside would otherwise end the field early.
func writeData(b *bytes.Buffer, data []byte) {
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimSuffix(line, []byte("\r")))
		b.WriteByte('\n')
	}
}

// validEventID: an SSE id cannot hold a line break or NUL (a browser would
// end or ignore it). Cursors are opaque upstream values, so one that could
// not round-trip is left out rather than sent mangled.
func validEventID(id string) bool {
	return !strings.ContainsAny(id, "\r\n\x00")
}
