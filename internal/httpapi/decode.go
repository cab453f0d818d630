package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// What the gateway cannot decode is answered 400 INVALID_ARGUMENT with a
// message in words and a google.rpc.BadRequest naming each bad field by its
// proto name. grpc-gateway's own answers fall short of that: they carry the
// decoder's Go error text ("proto: (line 1:9): invalid value...",
// "strconv.ParseInt: ...") without details, and a query parameter that names
// no field is silently ignored. So the body is decoded here (the
// marshaler's Decoder), and the query is checked before the gateway sees it
// (checkQuery). Nothing of this runs for a request that decodes: the
// diagnosis is made only after protojson has refused the body.

// requestBody is the request body limitBody read: the gateway's decoder
// reads it without a copy, and leaves on it the answer for a body it could
// not decode, for errorHandler (the generated code keeps only the error's
// text).
type requestBody struct {
	*bytes.Reader
	data    []byte
	failure *status.Status
}

func newRequestBody(data []byte) *requestBody {
	return &requestBody{Reader: bytes.NewReader(data), data: data}
}

func (*requestBody) Close() error { return nil }

// decodeFailure returns the answer the decoder left for r's body, if any.
func decodeFailure(r *http.Request) *status.Status {
	if rb, ok := r.Body.(*requestBody); ok {
		return rb.failure
	}
	return nil
}

// NewDecoder decodes a request body into its message with the marshaler's
// options. Unlike runtime.JSONPb's, it refuses anything after the JSON
// value, and on failure it says in words which fields are wrong.
func (m *marshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return m.JSONPb.NewDecoder(r).Decode(v)
		}
		var data []byte
		rb, fromLimitBody := r.(*requestBody)
		if fromLimitBody {
			data = rb.data
		} else {
			var err error
			if data, err = io.ReadAll(r); err != nil {
				return err
			}
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return io.EOF // no body: the generated code takes the empty message
		}
		if err := m.UnmarshalOptions.Unmarshal(data, msg); err != nil {
			st := diagnoseBody(data, msg, m)
			if fromLimitBody {
				rb.failure = st
			}
			return plainError(st.Message())
		}
		return nil
	})
}

// plainError is an error whose text is exactly its words.
type plainError string

func (e plainError) Error() string { return string(e) }

// diagnoseBody names what is wrong with a body protojson refused: a body
// that is no JSON object at all, or each field that is unknown or whose
// value does not decode on its own.
func diagnoseBody(data []byte, msg proto.Message, m *marshaler) *status.Status {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return invalidArgument("the request body is not a JSON object", nil)
	}
	desc := msg.ProtoReflect().Descriptor()
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var violations []*errdetails.BadRequest_FieldViolation
	for _, k := range keys {
		fd := fieldByName(desc, k)
		if fd == nil {
			violations = append(violations, violation(k, "is not a field of this request"))
			continue
		}
		one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
		probe := msg.ProtoReflect().New().Interface()
		if err := m.UnmarshalOptions.Unmarshal(one, probe); err != nil {
			violations = append(violations, violation(string(fd.Name()), expected(fd, err.Error())))
		}
	}
	if len(violations) == 0 {
		// Each field decodes on its own; together they do not (a field
		// given twice, say).
		return invalidArgument("the request body could not be decoded: is a field given twice?", nil)
	}
	return invalidArgument("invalid request body: "+describe(violations), violations)
}

// fieldByName finds a field by its proto name or its JSON name, the two
// names protojson and the gateway's query parser accept.
func fieldByName(desc protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := desc.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return fd
	}
	return desc.Fields().ByJSONName(name)
}

// expected says in words what a field's value must be. protojsonErr (a
// library message, never shown) only tells a bad encoding or a too deep
// nesting from a value of the wrong type.
func expected(fd protoreflect.FieldDescriptor, protojsonErr string) string {
	switch {
	case strings.Contains(protojsonErr, "UTF-8"):
		return "is not valid UTF-8"
	case strings.Contains(protojsonErr, "recursion"), strings.Contains(protojsonErr, "depth"):
		return "is nested too deeply"
	}
	what := kindInWords(fd)
	if fd.IsList() {
		return "must be an array of " + what
	}
	return "must be " + what
}

func kindInWords(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "a whole number between -2147483648 and 2147483647"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "a whole number between 0 and 4294967295"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a whole number"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.EnumKind:
		return "one of " + enumNames(fd.Enum())
	case protoreflect.BytesKind:
		return "base64 text"
	}
	switch fd.Message().FullName() {
	case "google.protobuf.Struct":
		return "a JSON object"
	case "google.protobuf.Timestamp":
		return "an RFC 3339 timestamp"
	}
	return "a JSON object with known fields"
}

func enumNames(e protoreflect.EnumDescriptor) string {
	names := make([]string, 0, e.Values().Len())
	for i := range e.Values().Len() {
		names = append(names, string(e.Values().Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func violation(field, description string) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: description}
}

// describe is the violations in one sentence, for the status message.
func describe(vs []*errdetails.BadRequest_FieldViolation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%q %s", v.GetField(), v.GetDescription())
	}
	return strings.Join(parts, "; ")
}

func invalidArgument(msg string, vs []*errdetails.BadRequest_FieldViolation) *status.Status {
	if len(vs) == 0 {
		return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg)
	}
	return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg, &errdetails.BadRequest{FieldViolations: vs})
}

// listRequest is what List reads from the query: every ListRequest field
// but user_id, which the path gives.
var listRequest = (&tokenv1.ListRequest{}).ProtoReflect().Type()

// noFilter lets the query parser set any field: checkQuery has already
// refused the ones the path binds.
var noFilter = utilities.NewDoubleArray(nil)

// checkQuery refuses a request to a REST route whose query the gateway
// would not read in full: a parameter that names no field (the gateway
// ignores it, so a typo like ?pagesize=5 would pass unnoticed), one that
// names a field the path gives, one given twice, and a value of the wrong
// type. Only List reads its query; Create and Update take a JSON body and
// Delete nothing else. Routes and methods the gateway does not serve pass
// through to its 404 or 405.
func checkQuery(r *http.Request) *status.Status {
	if r.URL.RawQuery == "" {
		return nil
	}
	var takes protoreflect.MessageType
	switch route := restRoute(r.URL.EscapedPath()); {
	case route == routeTokens && r.Method == http.MethodGet:
		takes = listRequest
	case route == routeTokens && r.Method == http.MethodPost,
		route == routeToken && (r.Method == http.MethodPatch || r.Method == http.MethodDelete):
	default:
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return invalidArgument("the query string is malformed", nil)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var violations []*errdetails.BadRequest_FieldViolation
	for _, k := range keys {
		if v := checkParam(takes, k, q[k]); v != nil {
			violations = append(violations, v)
		}
	}
	if len(violations) == 0 {
		return nil
	}
	return invalidArgument("invalid query: "+describe(violations), violations)
}

// checkParam checks one query parameter against the message the route
// reads from the query (nil: none).
func checkParam(takes protoreflect.MessageType, name string, values []string) *errdetails.BadRequest_FieldViolation {
	if takes == nil {
		return violation(name, "is not a query parameter of this route: send the fields in the JSON body, or the path")
	}
	fd := fieldByName(takes.Descriptor(), name)
	switch {
	case fd == nil:
		return violation(name, "names no field: this route's query parameters are "+queryParams(takes.Descriptor()))
	case fd.Name() == "user_id":
		return violation(string(fd.Name()), "is given by the path, not the query")
	case len(values) > 1 && !fd.IsList():
		return violation(string(fd.Name()), "is given more than once")
	}
	// The gateway's own parser, so that what passes here parses there.
	probe := takes.New().Interface()
	if err := (&runtime.DefaultQueryParser{}).Parse(probe, url.Values{name: values}, noFilter); err != nil {
		return violation(string(fd.Name()), expected(fd, ""))
	}
	return nil
}

func queryParams(desc protoreflect.MessageDescriptor) string {
	var names []string
	for i := range desc.Fields().Len() {
		if n := desc.Fields().Get(i).Name(); n != "user_id" {
			names = append(names, string(n))
		}
	}
	return strings.Join(names, ", ")
}
