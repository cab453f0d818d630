package httpapi

import (
	"bytes"
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
	"github.com/cbkgate/cbkgate/internal/jsonbody"
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
		if st := jsonbody.Unmarshal(data, msg); st != nil {
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
	fd := jsonbody.FieldByName(takes.Descriptor(), name)
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
		return violation(string(fd.Name()), jsonbody.Expected(fd))
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
