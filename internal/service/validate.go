package service

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/apierr"
)

// maxIDBytes bounds user and token ids. ChatBotKit's ids are far shorter;
// the bound keeps hostile input from growing upstream URLs and log lines.
const maxIDBytes = 256

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

func validateTokenRef(userID, tokenID string) error {
	var v violations
	v.checkID("user_id", userID)
	v.checkID("token_id", tokenID)
	return v.err()
}
