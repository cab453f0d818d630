package connectapi

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
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cbkgate/cbkgate/internal/apierr"
)

// maxJSONDepth bounds the nesting of a JSON request message, in messages
// (a google.protobuf.Struct level is two: Struct and Value), as the JSON
// gateway bounds it: protojson's default (10,000) admits messages the gRPC
// side cannot decode again.
const maxJSONDepth = 100

// strictJSON decodes a request message as the JSON gateway does: an
// unknown field is a client's mistake, refused rather than ignored
// (vanguard's own JSON codec discards them).
var strictJSON = protojson.UnmarshalOptions{RecursionLimit: maxJSONDepth}

// checkJSON returns nil when data is a JSON message of type mt that
// decodes strictly, and otherwise INVALID_ARGUMENT (ErrorInfo
// INVALID_ARGUMENT) saying in words what is wrong, with a
// google.rpc.BadRequest naming each field at fault where one is known.
// protojson's own error text (which names Go packages and byte offsets) is
// never shown: on failure the message is taken apart field by field to say
// which one is wrong.
func checkJSON(mt protoreflect.MessageType, data []byte) *status.Status {
	if len(data) == 0 {
		return nil // the empty message, as Connect allows
	}
	if strictJSON.Unmarshal(data, mt.New().Interface()) == nil {
		return nil
	}
	v, msg := explainJSON(mt, data)
	if len(v) == 0 {
		return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, msg)
	}
	descs := make([]string, len(v))
	for i, fv := range v {
		descs[i] = fv.GetDescription()
	}
	return apierr.Status(codes.InvalidArgument, apierr.ReasonInvalidArgument, strings.Join(descs, "; "),
		&errdetails.BadRequest{FieldViolations: v})
}

// explainJSON finds what made data fail to decode: a violation for each
// bad field, or, when no field is to blame, a message about the whole.
func explainJSON(mt protoreflect.MessageType, data []byte) ([]*errdetails.BadRequest_FieldViolation, string) {
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
	fields := mt.Descriptor().Fields()
	seen := map[protoreflect.FieldNumber]bool{}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey {
			return v, "the request body is not valid JSON"
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			add(key, "%s: the value is cut short or is not valid JSON", key)
			return v, "the request body is not valid JSON"
		}
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		switch {
		case fd == nil:
			add(key, "unknown field %q", key)
		case seen[fd.Number()]:
			add(string(fd.Name()), "%s is given more than once", fd.Name())
		default:
			seen[fd.Number()] = true
			one := append(append([]byte(`{`+strconv.Quote(key)+`:`), value...), '}')
			if strictJSON.Unmarshal(one, mt.New().Interface()) != nil {
				add(string(fd.Name()), "%s %s", fd.Name(), wantValue(fd, value))
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

// wantValue says what kind of JSON value fd takes.
func wantValue(fd protoreflect.FieldDescriptor, value json.RawMessage) string {
	if depth(value) > maxJSONDepth/2 {
		return fmt.Sprintf("is nested more than %d levels deep", maxJSONDepth/2)
	}
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
		return fmt.Sprintf("must be one of the names of %s", fd.Enum().Name())
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
