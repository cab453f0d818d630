// Package jsonbody decodes a request message from JSON the one way every
// HTTP surface of cbkgate does (the JSON gateway, Connect and gRPC-Web),
// and says in words what is wrong with a body that does not decode.
//
// protojson's own errors name Go packages and byte offsets ("proto: (line
// 1:9): invalid value for string field name: 5"), which a caller must never
// see; so on failure the body is taken apart field by field, and the answer
// is INVALID_ARGUMENT with ErrorInfo and a google.rpc.BadRequest naming
// each field at fault by its proto name. A body that decodes costs one
// protojson decode and nothing more: the diagnosis runs only after a
// refusal.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// MaxDepth bounds the nesting of a JSON request message, in messages (a
// google.protobuf.Struct level is two: Struct and Value). protojson's
// default (10,000) admits messages that the gRPC side cannot decode again;
// the service refuses a meta or config deeper than 32 levels anyway, so
// 100 leaves room for that refusal to name the field.
const MaxDepth = 100

// jsonMaxDepth is the nesting encoding/json's decoder refuses to read
// past (its maxNestingDepth), outer object included.
const jsonMaxDepth = 10000

// Options are the protojson options a request message is decoded with:
// unknown fields are refused (a client's typo is its mistake, never
// silently dropped), and nesting is bounded by MaxDepth.
var Options = protojson.UnmarshalOptions{RecursionLimit: MaxDepth}

// Unmarshal decodes data into msg, and returns nil, or the
// INVALID_ARGUMENT status that says what is wrong with data.
func Unmarshal(data []byte, msg proto.Message) *status.Status {
	if Options.Unmarshal(data, msg) == nil {
		return nil
	}
	v, msgText := explain(msg.ProtoReflect().Type(), data)
	if len(v) == 0 {
		return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msgText)
	}
	descs := make([]string, len(v))
	for i, fv := range v {
		descs[i] = fv.GetDescription()
	}
	return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, strings.Join(descs, "; "),
		&errdetails.BadRequest{FieldViolations: v})
}

// FieldByName finds a field by its JSON name or its proto name, the two
// names protojson and the gateway's query parser accept.
func FieldByName(desc protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := desc.Fields().ByJSONName(name); fd != nil {
		return fd
	}
	return desc.Fields().ByTextName(name)
}

// explain finds what made data fail to decode: a violation for each bad
// field, or, when no field is to blame, a message about the whole.
func explain(mt protoreflect.MessageType, data []byte) ([]*errdetails.BadRequest_FieldViolation, string) {
	var v []*errdetails.BadRequest_FieldViolation
	add := func(field, format string, args ...any) {
		v = append(v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	switch tok, err := dec.Token(); {
	case err != nil:
		return nil, "the request body is not valid JSON"
	case tok != json.Delim('{'):
		return nil, "the request body is not a JSON object"
	}
	seen := map[protoreflect.FieldNumber]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey {
			return v, "the request body is not valid JSON"
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			if depth(data) >= jsonMaxDepth {
				// encoding/json refuses a value this deep before reading
				// it through; it is not cut short, it is too deep.
				add(key, "%s is nested too deeply", key)
				return v, "the request body is nested too deeply"
			}
			add(key, "%s: the value is cut short or is not valid JSON", key)
			return v, "the request body is not valid JSON"
		}
		fd := FieldByName(mt.Descriptor(), key)
		switch {
		case fd == nil:
			add(key, "unknown field %q", key)
		case seen[fd.Number()]:
			add(string(fd.Name()), "%s is given more than once", fd.Name())
		default:
			seen[fd.Number()] = true
			one := append(append([]byte(`{`+strconv.Quote(key)+`:`), value...), '}')
			if Options.Unmarshal(one, mt.New().Interface()) != nil {
				want := Expected(fd)
				if depth(value) > MaxDepth/2 {
					// Deep enough that protojson's RecursionLimit
					// (counted in messages, not JSON levels) may be
					// what refused it.
					want = "is nested too deeply"
				}
				add(string(fd.Name()), "%s %s", fd.Name(), want)
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return v, "the request body is not valid JSON"
	}
	if _, err := dec.Token(); err != io.EOF { // anything after the object
		return v, "the request body is not valid JSON"
	}
	return v, fmt.Sprintf("the request body is not a valid %s", mt.Descriptor().Name())
}

// Expected says in words what kind of value fd takes.
func Expected(fd protoreflect.FieldDescriptor) string {
	if fd.IsList() {
		return "must be a JSON array"
	}
	if fd.IsMap() {
		return "must be a JSON object"
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "must be a string of valid UTF-8"
	case protoreflect.BytesKind:
		return "must be a base64 string"
	case protoreflect.BoolKind:
		return "must be true or false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "must be a whole number from -2147483648 to 2147483647"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "must be a whole number from 0 to 4294967295"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "must be a whole number"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "must be a number"
	case protoreflect.EnumKind:
		return "must be one of " + enumNames(fd.Enum())
	}
	switch fd.Message().FullName() {
	case "google.protobuf.Struct":
		return "must be a JSON object"
	case "google.protobuf.Value":
		return "must be a JSON value"
	case "google.protobuf.Timestamp":
		return "must be an RFC 3339 time"
	}
	return fmt.Sprintf("must be a JSON object of the fields of %s", fd.Message().Name())
}

func enumNames(e protoreflect.EnumDescriptor) string {
	names := make([]string, 0, e.Values().Len())
	for i := range e.Values().Len() {
		names = append(names, string(e.Values().Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

// depth is how deeply value's objects and arrays nest.
func depth(value json.RawMessage) int {
	d, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range value {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
