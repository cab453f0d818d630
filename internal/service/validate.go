package service

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// maxIDBytes bounds user and token ids. ChatBotKit's ids are far shorter;
// the bound keeps hostile input from growing upstream URLs and log lines.
const maxIDBytes = 256

// maxStructDepth is how deeply a meta or config may nest: the object itself
// is level 1, each object or list in it one more. Real ones are a few
// levels deep. Deeper ones are refused on Create and Update, and a token
// ChatBotKit holds with a deeper meta is listed without it (meta_omitted):
// a meta nested 3,332 levels, once stored, stopped every later listing of
// its user, since no gRPC client could decode the message holding it.
const maxStructDepth = 32

// violations collects what is wrong with one request, one entry per bad
// field, so a client learns of every mistake at once and can tell which
// field each is about without parsing English.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// err is nil when nothing was added, else INVALID_ARGUMENT with
// ErrorInfo{reason INVALID_ARGUMENT} and a BadRequest holding every
// violation; the message joins their descriptions.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	msgs := make([]string, len(v))
	for i, fv := range v {
		msgs[i] = fv.GetDescription()
	}
	return apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, strings.Join(msgs, "; "),
		&errdetails.BadRequest{FieldViolations: v})
}

// invalidField is the error of a request with exactly one bad field.
func invalidField(field, format string, args ...any) error {
	var v violations
	v.add(field, format, args...)
	return v.err()
}

// checkID is the error of one id alone: nil when it is valid.
func checkID(field, id string) error {
	var v violations
	v.checkID(field, id)
	return v.err()
}

// checkID enforces the contract's rules for an id that becomes one upstream
// path segment. "." and ".." are refused because an HTTP stack anywhere on
// the way may resolve them as dot-segments, turning the id into another
// route; control characters have no place in an id and would be mangled by
// logs and proxies. Everything else is escaped by the REST client.
func (v *violations) checkID(field, id string) {
	switch {
	case id == "":
		v.add(field, "%s is required", field)
		return
	case len(id) > maxIDBytes:
		v.add(field, "%s is %d bytes long; at most %d are allowed", field, len(id), maxIDBytes)
		return
	case id == "." || id == "..":
		v.add(field, "%s must not be %q", field, id)
		return
	case !utf8.ValidString(id):
		v.add(field, "%s is not valid UTF-8", field)
		return
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			v.add(field, "%s must not contain control characters", field)
			return
		}
	}
}

func validateList(req *tokenv1.ListRequest) error {
	var v violations
	v.checkID("user_id", req.GetUserId())
	if req.GetPageSize() < 0 {
		v.add("page_size", "page_size must not be negative")
	}
	if req.GetLimit() < 0 {
		v.add("limit", "limit must not be negative")
	}
	if _, ok := tokenv1.Order_name[int32(req.GetOrder())]; !ok {
		v.add("order", "order %d is not a defined Order", req.GetOrder())
	}
	return v.err()
}

// requestIDPattern is the form of a request_id: the characters and length
// of an x-request-id.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

func validateCreate(req *tokenv1.CreateRequest) error {
	var v violations
	v.checkID("user_id", req.GetUserId())
	if id := req.GetRequestId(); id != "" && !requestIDPattern.MatchString(id) {
		v.add("request_id", "request_id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'")
	}
	return v.err()
}

// checkMetaKeys refuses meta keys in cbkgate's own namespace: cbkgate
// marks the tokens it creates for a request_id with them, and a caller
// that could set or overwrite them could forge or erase those marks.
func (v *violations) checkMetaKeys(meta *structpb.Struct) {
	for k := range meta.GetFields() {
		if strings.HasPrefix(k, metaPrefix) {
			v.add("meta", "meta keys starting with %q are reserved for cbkgate", metaPrefix)
			return
		}
	}
}

func validateTokenRef(userID, tokenID string) error {
	var v violations
	v.checkID("user_id", userID)
	v.checkID("token_id", tokenID)
	return v.err()
}

// checkDepth refuses a meta or config nested deeper than maxStructDepth.
func (v *violations) checkDepth(field string, s *structpb.Struct) {
	if s != nil && structDeeper(s, maxStructDepth) {
		v.add(field, "%s is nested more than %d levels deep", field, maxStructDepth)
	}
}

// structDeeper reports whether s nests deeper than limit levels (s itself
// is one). It looks no further down than limit+1 levels, so its own
// recursion stays shallow whatever the message holds.
func structDeeper(s *structpb.Struct, limit int) bool {
	if limit < 1 {
		return true
	}
	for _, v := range s.GetFields() {
		if valueDeeper(v, limit-1) {
			return true
		}
	}
	return false
}

// valueDeeper reports whether v, with limit levels left, nests deeper: a
// scalar takes none, an object or list one and what it holds.
func valueDeeper(v *structpb.Value, limit int) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		return structDeeper(k.StructValue, limit)
	case *structpb.Value_ListValue:
		if limit < 1 {
			return true
		}
		for _, e := range k.ListValue.GetValues() {
			if valueDeeper(e, limit-1) {
				return true
			}
		}
	}
	return false
}
