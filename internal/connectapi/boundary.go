package connectapi

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// The boundary is where a Connect, gRPC-Web or gRPC request body on the
// HTTP port is held to the rules every surface keeps, before vanguard sees
// it:
//   - a request message is at most MaxMessageBytes after decompression;
//   - its body is of a type the path serves (else 415);
//   - JSON is decoded as strictly as the JSON gateway decodes it: an
//     unknown field, a value of the wrong type or JSON that does not parse
//     is 400 INVALID_ARGUMENT naming the field.
//
// Why here and not in vanguard's own hooks (vanguard.WithCompression with a
// bounded decompressor, vanguard.WithCodec with a strict JSON codec):
// vanguard decodes a request message only when the backend reads the body,
// which is after the call has gone to the gRPC server. A message refused
// then reaches the client as vanguard's error, but the gRPC call it had
// started ends with no request message at all: grpc-go refuses a unary
// call before its interceptors run, so no log line names it, and a List
// was logged with a code the client never saw. vanguard's decompressor
// also reads into an unbounded buffer (bytes.Buffer.ReadFrom), and when
// the client and the gRPC server share codec and compression it hands the
// compressed bytes on untouched. Every TokenService method takes exactly
// one request message, so reading it here first costs nothing a call
// would not spend anyway, and every refusal is made, answered and logged
// with the request in hand, before anything is forwarded.
//
// The normal binary path (protobuf, uncompressed, with a Content-Length)
// is passed on untouched: no copy, no decoding.

// envelopeBytes is the frame header of the enveloped protocols (Connect
// streaming, gRPC-Web, gRPC): a flags byte and a 4-byte length.
const envelopeBytes = 5

// flagCompressed marks an enveloped message as compressed.
const flagCompressed = 0x01

// wire is what the boundary needs to know of a request's protocol.
type wire struct {
	enveloped bool
	// connectStream: the Connect streaming protocol (application/connect+*).
	connectStream bool
	json          bool
	// encodingHeader names the request's compression: Content-Encoding
	// (Connect unary), Connect-Content-Encoding (Connect streaming),
	// Grpc-Encoding (gRPC-Web and gRPC).
	encodingHeader string
}

// encodingHeaders are every header that names a request's compression.
var encodingHeaders = []string{"Content-Encoding", "Connect-Content-Encoding", "Grpc-Encoding"}

// classify reads the request's protocol from its Content-Type, as vanguard
// does; ok is false for a type no protocol here serves. A Connect unary
// JSON type with a charset parameter is rewritten to the bare type, which
// is the only spelling vanguard matches.
func classify(r *http.Request) (w wire, ok bool) {
	values := r.Header.Values("Content-Type")
	if len(values) != 1 {
		return wire{}, false
	}
	ct := values[0]
	for _, p := range []struct{ bare, prefix, header string }{
		{"", "application/connect+", "Connect-Content-Encoding"},
		{"application/grpc-web", "application/grpc-web+", "Grpc-Encoding"},
		{"application/grpc", "application/grpc+", "Grpc-Encoding"},
	} {
		codec, found := strings.CutPrefix(ct, p.prefix)
		if p.bare != "" && ct == p.bare {
			codec, found = "proto", true // the bare type is protobuf
		}
		if found {
			return wire{enveloped: true, connectStream: p.prefix == "application/connect+", json: codec == "json", encodingHeader: p.header}, codec == "json" || codec == "proto"
		}
	}
	if r.Header.Get("Connect-Protocol-Version") != "1" {
		return wire{}, false
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (len(params) > 0 && !(len(params) == 1 && strings.EqualFold(params["charset"], "utf-8"))) {
		return wire{}, false
	}
	switch mt {
	case "application/json":
		r.Header.Set("Content-Type", mt)
		return wire{json: true, encodingHeader: "Content-Encoding"}, true
	case "application/proto":
		return wire{encodingHeader: "Content-Encoding"}, len(params) == 0
	}
	return wire{}, false
}

// boundary holds request bodies to the rules above and passes the rest on
// to next (vanguard).
type boundary struct {
	next     http.Handler
	refuser  *refuser
	maxBytes int
	// requests maps each method's path to its request message type.
	requests map[string]protoreflect.MessageType
	// streams holds the paths of the server-streaming methods (List).
	streams map[string]bool
}

func newBoundary(next http.Handler, maxBytes int) (*boundary, error) {
	refuser, err := newRefuser()
	if err != nil {
		return nil, err
	}
	b := &boundary{next: next, refuser: refuser, maxBytes: maxBytes, requests: map[string]protoreflect.MessageType{}, streams: map[string]bool{}}
	methods := tokenv1.File_cbkgate_token_v1_token_service_proto.Services().ByName("TokenService").Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if err != nil {
			return nil, fmt.Errorf("connectapi: request type of %s: %w", m.Name(), err)
		}
		b.requests[Prefix+string(m.Name())] = mt
		b.streams[Prefix+string(m.Name())] = m.IsStreamingServer()
	}
	return b, nil
}

func (b *boundary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mt := b.requests[r.URL.Path]
	if r.Method != http.MethodPost || mt == nil {
		b.next.ServeHTTP(w, r) // vanguard's own 404 or 405
		return
	}
	wi, ok := classify(r)
	if v := r.Header.Values("Connect-Protocol-Version"); !ok && len(v) > 0 && (len(v) > 1 || v[0] != "1") {
		b.refuse(w, r, http.StatusBadRequest, invalidHeader("Connect-Protocol-Version", "Connect-Protocol-Version must be 1, the only version of the Connect protocol"))
		return
	}
	if !ok {
		b.refuse(w, r, http.StatusUnsupportedMediaType, apierr.Status(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
			fmt.Sprintf("a body of type %q is not taken here: send Connect (application/json, application/proto, application/connect+json, application/connect+proto) or gRPC-Web (application/grpc-web, application/grpc-web+json)",
				truncate(r.Header.Get("Content-Type"), 100))))
		return
	}
	if r.ProtoMajor < 2 && wi.enveloped && !wi.connectStream && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc-web") {
		// gRPC needs HTTP/2 (vanguard answers a text/plain 505). The
		// answer goes as Connect's error JSON, which an HTTP/1 client can
		// read.
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Connect-Protocol-Version", "1")
		b.refuse(w, r, http.StatusHTTPVersionNotSupported, apierr.Status(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
			"gRPC needs HTTP/2: use the gRPC port, or gRPC-Web or Connect over HTTP/1.1"))
		return
	}
	if st := badTimeout(r, wi); st != nil {
		b.refuse(w, r, http.StatusBadRequest, st)
		return
	}
	if st := b.kindMismatch(r, wi); st != nil {
		b.refuse(w, r, http.StatusUnsupportedMediaType, st)
		return
	}
	encoding := r.Header.Get(wi.encodingHeader)
	switch encoding {
	case "", "identity", "gzip":
	default:
		// vanguard would answer a compression it does not know with a
		// text/plain 415 of its own, without cbkgate's reason.
		b.refuse(w, r, http.StatusUnsupportedMediaType, apierr.Status(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
			fmt.Sprintf("a request compressed as %q is not taken here: send it uncompressed, or compressed as gzip", truncate(encoding, 40))))
		return
	}
	compressed := encoding != "" && encoding != "identity"
	if !wi.json && !compressed && r.ContentLength >= 0 && r.ContentLength <= int64(b.maxBytes+envelopeBytes) {
		// The normal binary path: vanguard bounds it. An enveloped body
		// must be one plain frame, which its first bytes and its length
		// tell.
		if wi.enveloped {
			if st := b.oneFrame(r); st != nil {
				b.refuse(w, r, http.StatusBadRequest, st)
				return
			}
		}
		b.next.ServeHTTP(w, r)
		return
	}
	body, st, httpStatus := b.readBody(r)
	if st != nil {
		b.refuse(w, r, httpStatus, st)
		return
	}
	if wi.enveloped {
		body, st, httpStatus = b.openEnvelopes(body, encoding, mt, wi.json)
	} else {
		body, st, httpStatus = b.openMessage(body, encoding, mt, wi.json)
	}
	if st != nil {
		b.refuse(w, r, httpStatus, st)
		return
	}
	if compressed && encoding == "gzip" {
		r.Header.Del(wi.encodingHeader) // the body now goes on uncompressed
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	b.next.ServeHTTP(w, r)
}

// kindMismatch is the refusal of a request whose protocol cannot carry its
// method: Connect unary (one JSON or protobuf body) to List, a server
// stream, or Connect streaming to a unary method. vanguard refuses both
// with a text/plain 415 of its own; this one says what to send instead.
// gRPC-Web carries both kinds.
func (b *boundary) kindMismatch(r *http.Request, wi wire) *status.Status {
	stream := b.streams[r.URL.Path]
	switch {
	case stream && !wi.enveloped:
		return apierr.Status(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
			"List is a server stream: send it as Connect streaming (application/connect+json or application/connect+proto, one enveloped message) or gRPC-Web; with plain JSON, use GET /v1/users/{user_id}/tokens")
	case !stream && wi.connectStream:
		return apierr.Status(codes.InvalidArgument, apierr.ReasonUnsupportedMediaType,
			"this method is unary: send it as Connect unary (application/json or application/proto) or gRPC-Web, not as a Connect stream")
	}
	return nil
}

// grpcTimeoutMaxHours is the longest Grpc-Timeout in hours that vanguard
// and grpc-go take as a deadline; a longer one is no deadline.
const grpcTimeoutMaxHours = 8

// badTimeout is the refusal of a request whose deadline header does not
// parse: Connect-Timeout-Ms (Connect) or Grpc-Timeout (gRPC-Web), held to
// exactly what vanguard accepts. vanguard answers it with a text/plain 400
// carrying strconv's error text.
func badTimeout(r *http.Request, wi wire) *status.Status {
	if wi.encodingHeader == "Grpc-Encoding" {
		v := r.Header.Get("Grpc-Timeout")
		if v == "" {
			return nil
		}
		n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
		if strings.IndexByte("HMSmun", v[len(v)-1]) >= 0 && err == nil && n >= 0 && n <= 99999999 {
			if v[len(v)-1] == 'H' && n > grpcTimeoutMaxHours {
				// grpc-go takes a deadline this far off for none. vanguard
				// means to, but answers it with a text/plain 400 "no
				// timeout" instead.
				r.Header.Del("Grpc-Timeout")
			}
			return nil
		}
		return invalidHeader("Grpc-Timeout", "Grpc-Timeout must be at most 8 digits and a unit (H, M, S, m, u or n), such as 30S")
	}
	v := r.Header.Get("Connect-Timeout-Ms")
	if v == "" {
		return nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return nil
	}
	return invalidHeader("Connect-Timeout-Ms", "Connect-Timeout-Ms must be a whole number of milliseconds, such as 30000")
}

// invalidHeader is the INVALID_ARGUMENT refusal of a request header, with
// a BadRequest naming it.
func invalidHeader(name, msg string) *status.Status {
	return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg,
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: name, Description: msg}}})
}

// readBody reads the whole request body, at most one message and its
// frame.
func (b *boundary) readBody(r *http.Request) ([]byte, *status.Status, int) {
	limit := int64(b.maxBytes + envelopeBytes)
	if r.ContentLength > limit {
		return nil, b.tooLarge(), http.StatusRequestEntityTooLarge
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 512)))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	_ = r.Body.Close()
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(buf.Len()) > limit:
		return nil, b.tooLarge(), http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The server's body deadline passed.
		return nil, apierr.Status(codes.DeadlineExceeded, apierr.ReasonBodyTimeout, "the request body did not arrive in time"), http.StatusRequestTimeout
	case err != nil:
		// The client went away or broke off its body; what the read error
		// says (addresses) is none of the answer's business.
		return nil, apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, "the request body could not be read"), http.StatusBadRequest
	}
	return buf.Bytes(), nil, 0
}

// openMessage is the message of a Connect unary body: decompressed if it
// came compressed, checked if it is JSON.
func (b *boundary) openMessage(body []byte, encoding string, mt protoreflect.MessageType, isJSON bool) ([]byte, *status.Status, int) {
	msg := body
	switch encoding {
	case "", "identity":
	case "gzip":
		var st *status.Status
		var httpStatus int
		if msg, st, httpStatus = b.gunzip(body); st != nil {
			return nil, st, httpStatus
		}
	default:
		return body, nil, 0 // vanguard refuses a compression it does not know
	}
	if len(msg) > b.maxBytes {
		return nil, b.tooLarge(), http.StatusRequestEntityTooLarge
	}
	if isJSON && len(msg) == 0 {
		// An empty body is the empty message, as it is in protobuf;
		// vanguard would send the gRPC server no message at all, which
		// grpc-go fails INTERNAL.
		return []byte("{}"), nil, 0
	}
	if isJSON {
		if st := checkJSON(mt, msg); st != nil {
			return nil, st, http.StatusBadRequest
		}
	}
	return msg, nil, 0
}

// openEnvelopes checks the one message of an enveloped body as
// openMessage does, and returns the body with the message in its plain
// form if it came compressed.
func (b *boundary) openEnvelopes(body []byte, encoding string, mt protoreflect.MessageType, isJSON bool) ([]byte, *status.Status, int) {
	if st := tooShortForAFrame(int64(len(body))); st != nil {
		return nil, st, http.StatusBadRequest
	}
	flags := body[0]
	if st := oneMessage([envelopeBytes]byte(body), int64(len(body)), encoding); st != nil {
		return nil, st, http.StatusBadRequest
	}
	msg := body[envelopeBytes:]
	if flags&flagCompressed != 0 {
		var st *status.Status
		var httpStatus int
		if msg, st, httpStatus = b.gunzip(msg); st != nil {
			return nil, st, httpStatus
		}
	}
	if len(msg) > b.maxBytes {
		return nil, b.tooLarge(), http.StatusRequestEntityTooLarge
	}
	if isJSON {
		if st := checkJSON(mt, msg); st != nil {
			return nil, st, http.StatusBadRequest
		}
	}
	if flags&flagCompressed == 0 {
		return body, nil, 0
	}
	out := make([]byte, envelopeBytes, envelopeBytes+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...), nil, 0
}

// oneFrame checks an uncompressed binary enveloped body of known length
// without holding it: its first frame header must announce a plain
// message that fills the rest of the body, so that it holds exactly one.
// The header read is put back in front of the body.
func (b *boundary) oneFrame(r *http.Request) *status.Status {
	if st := tooShortForAFrame(r.ContentLength); st != nil {
		return st
	}
	var header [envelopeBytes]byte
	if _, err := io.ReadFull(r.Body, header[:]); err != nil {
		return malformed("the request body could not be read")
	}
	if st := oneMessage(header, r.ContentLength, ""); st != nil {
		return st
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(header[:]), r.Body), r.Body}
	return nil
}

// tooShortForAFrame is the refusal of an enveloped body of bodyLen bytes
// too short to hold a frame header, or nil.
func tooShortForAFrame(bodyLen int64) *status.Status {
	switch {
	case bodyLen == 0:
		return wrongMessageCount()
	case bodyLen < envelopeBytes:
		return malformed("the request body ends inside a message frame")
	}
	return nil
}

// oneMessage is the refusal of an enveloped body of bodyLen bytes whose
// opening frame header does not announce exactly one message filling the
// rest of the body, with flags a client may set; or nil.
func oneMessage(header [envelopeBytes]byte, bodyLen int64, encoding string) *status.Status {
	switch n := int64(binary.BigEndian.Uint32(header[1:])); {
	case n > bodyLen-envelopeBytes:
		return malformed("the request body ends inside a message")
	case n < bodyLen-envelopeBytes:
		return wrongMessageCount()
	}
	return frameFlags(header[0], encoding)
}

// frameFlags is the refusal of a request frame whose flags are not those
// of a message: the compressed flag is the only one a client may set, and
// only when the request names its compression. (vanguard and grpc-go
// would answer either without cbkgate's ErrorInfo, in grpc-go's words.)
func frameFlags(flags byte, encoding string) *status.Status {
	switch {
	case flags&^flagCompressed != 0:
		return malformed(fmt.Sprintf("a request message frame has flags 0x%02x: a client's message frame has 0x00, or 0x01 when compressed", flags))
	case flags&flagCompressed != 0 && encoding != "gzip":
		return malformed("a request message is marked compressed, but the request names no compression (Grpc-Encoding or Connect-Content-Encoding: gzip)")
	}
	return nil
}

// wrongMessageCount is the refusal of an enveloped body without exactly
// one message: every TokenService method takes one.
func wrongMessageCount() *status.Status {
	return malformed("the request body must hold exactly one message frame")
}

// gunzip inflates one compressed message, reading at most one byte past
// maxBytes: a message that inflates further is refused without ever being
// held.
func (b *boundary) gunzip(compressed []byte) ([]byte, *status.Status, int) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, malformed("the request message is not valid gzip"), http.StatusBadRequest
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(io.LimitReader(zr, int64(b.maxBytes)+1))
	switch {
	case buf.Len() > b.maxBytes:
		return nil, b.tooLarge(), http.StatusRequestEntityTooLarge
	case err != nil:
		return nil, malformed("the request message is not valid gzip"), http.StatusBadRequest
	}
	return buf.Bytes(), nil, 0
}

func (b *boundary) tooLarge() *status.Status {
	return apierr.Status(codes.ResourceExhausted, apierr.ReasonPayloadTooLarge,
		fmt.Sprintf("the request message is larger than %d bytes (after decompression, if it was compressed)", b.maxBytes))
}

func malformed(msg string) *status.Status {
	return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg)
}

func (b *boundary) refuse(w http.ResponseWriter, r *http.Request, httpStatus int, st *status.Status) {
	b.refuser.refuse(w, r, st.Proto(), httpStatus)
}

// truncate keeps a client's string short enough for an answer.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
