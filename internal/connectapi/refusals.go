package connectapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/vanguard"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
	"github.com/cbkgate/cbkgate/internal/telemetry"
)

// The HTTP layer in front of these routes (authentication, cross-origin
// protection, body rules) refuses a request by writing a JSON
// google.rpc.Status with an HTTP status, as it does for the REST routes.
// A Connect or gRPC-Web client does not read that shape: it would see only
// a code guessed from the HTTP status, without the message's reason or the
// details. Guard turns such a refusal into the client's own protocol by
// running it through a second transcoder whose backend answers with the
// refusal's status, so vanguard writes it exactly as it writes any other
// error of that protocol (headers the refusal set, such as
// WWW-Authenticate, stay).

type refusalKey struct{}

// refuser answers a request with a refusal in the client's own protocol.
type refuser struct {
	// transcoder is a transcoder whose only backend answers every call
	// with the *spb.Status in the request context, as a gRPC
	// trailers-only response.
	transcoder http.Handler
}

func newRefuser() (*refuser, error) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := r.Context().Value(refusalKey{}).(*spb.Status)
		if st == nil {
			st = &spb.Status{Code: int32(codes.Internal), Message: "refused"}
		}
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(int(st.GetCode())))
		h.Set("Grpc-Message", encodeGRPCMessage(st.GetMessage()))
		if len(st.GetDetails()) > 0 {
			if bin, err := proto.Marshal(st); err == nil {
				h.Set("Grpc-Status-Details-Bin", base64.RawStdEncoding.EncodeToString(bin))
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	svc := vanguard.NewService(tokenv1.TokenService_ServiceDesc.ServiceName, backend,
		vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
		vanguard.WithTargetCodecs(vanguard.CodecProto),
	)
	t, err := vanguard.NewTranscoder([]*vanguard.Service{svc})
	if err != nil {
		return nil, err
	}
	return &refuser{transcoder: connectByDefault(t)}, nil
}

// refuse answers r with st, and notes the refusal for the request's log
// line (whose HTTP status, 200 on gRPC-Web and Connect streams, would not
// say). The body is left unread. A request whose type no protocol here
// serves is answered as Connect unary, whose error JSON is what a client
// without a protocol can read. httpStatus, when not 0, replaces the HTTP
// status of an answer that carries the error in its status line (Connect
// unary): Connect maps no code to 413 or 415.
func (f *refuser) refuse(w http.ResponseWriter, r *http.Request, st *spb.Status, httpStatus int) {
	telemetry.NoteHTTPRefusal(r.Context(), codes.Code(st.GetCode()), st.GetMessage())
	r = r.Clone(context.WithValue(r.Context(), refusalKey{}, st))
	r.Body, r.ContentLength = http.NoBody, 0
	for _, h := range encodingHeaders {
		r.Header.Del(h) // nothing to decompress, and no name vanguard may not know
	}
	// Nor a deadline vanguard may not parse: the answer is immediate.
	r.Header.Del("Connect-Timeout-Ms")
	r.Header.Del("Grpc-Timeout")
	wi, ok := classify(r)
	if !ok {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Connect-Protocol-Version", "1")
		wi = wire{json: true}
	}
	// vanguard writes an error only for a call the protocol can carry:
	// Connect unary a unary method, Connect streaming a stream. The answer
	// names no method, so it is written as if for one of the right kind
	// (gRPC-Web carries both).
	switch {
	case wi.connectStream:
		r.URL.Path = Prefix + "List"
	case !wi.enveloped:
		r.URL.Path = Prefix + "Create"
	}
	if httpStatus != 0 {
		w = &errorStatusWriter{ResponseWriter: w, status: httpStatus}
	}
	f.transcoder.ServeHTTP(w, r)
}

// errorStatusWriter writes status in place of any error status.
type errorStatusWriter struct {
	http.ResponseWriter
	status int
}

func (e *errorStatusWriter) WriteHeader(code int) {
	if code >= 400 {
		code = e.status
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorStatusWriter) Flush() { _ = http.NewResponseController(e.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the real writer.
func (e *errorStatusWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// Guard wraps next (the Connect handler) in guard (a middleware that may
// refuse requests itself) so that guard's refusals reach the client in its
// protocol. Requests guard lets through are untouched.
func Guard(guard func(http.Handler) http.Handler, next http.Handler) (http.Handler, error) {
	refuser, err := newRefuser()
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw := &guardWriter{w: w}
		guard(http.HandlerFunc(func(w2 http.ResponseWriter, r2 *http.Request) {
			gw.passed = true
			next.ServeHTTP(w2, r2)
		})).ServeHTTP(gw, r)
		if gw.passed || gw.status == 0 {
			return
		}
		st := refusalStatus(gw.status, gw.body.Bytes())
		w.Header().Del("Content-Length")
		w.Header().Del("Content-Type")
		w.Header().Del("X-Content-Type-Options")
		refuser.refuse(w, r, st, 0)
	}), nil
}

// guardWriter passes everything through once the guard has let the
// request in, and holds the guard's own answer otherwise.
type guardWriter struct {
	w      http.ResponseWriter
	passed bool
	status int
	body   bytes.Buffer
}

func (g *guardWriter) Header() http.Header { return g.w.Header() }

func (g *guardWriter) WriteHeader(code int) {
	if g.passed {
		g.w.WriteHeader(code)
		return
	}
	if g.status == 0 {
		g.status = code
	}
}

func (g *guardWriter) Write(b []byte) (int, error) {
	if g.passed {
		return g.w.Write(b)
	}
	if g.status == 0 {
		g.status = http.StatusOK
	}
	if g.body.Len() < 64<<10 { // a refusal is a short JSON object
		g.body.Write(b)
	}
	return len(b), nil
}

func (g *guardWriter) Flush() {
	if f, ok := g.w.(http.Flusher); ok && g.passed {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (g *guardWriter) Unwrap() http.ResponseWriter { return g.w }

// refusalStatus reads the refusal's google.rpc.Status, or makes one from
// the HTTP status when the body is something else (http.Error's text).
func refusalStatus(httpStatus int, body []byte) *spb.Status {
	var st spb.Status
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &st); err == nil && st.GetCode() != 0 {
		return &st
	}
	return &spb.Status{Code: int32(apierr.CodeForRefusal(httpStatus)), Message: strings.TrimSpace(string(body))}
}

// encodeGRPCMessage percent-encodes a status message as the gRPC protocol
// wants in the grpc-message header: printable ASCII except '%' as is.
func encodeGRPCMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%")
		b.WriteString(strings.ToUpper(strconv.FormatInt(int64(c)|0x100, 16)[1:]))
	}
	return b.String()
}
