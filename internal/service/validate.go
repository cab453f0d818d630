package service

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// maxIDBytes bounds user and token ids. ChatBotKit's ids are far shorter;
// the bound keeps hostile input from growing upstream URLs and log lines.
const maxIDBytes = 256

// checkID enforces the contract's rules for an id that becomes one upstream
// path segment. "." and ".." are refused because an HTTP stack anywhere on
// the way may resolve them as dot-segments, turning the id into another
// route; control characters have no place in an id and would be mangled by
// logs and proxies. Everything else is escaped by the REST client.
func checkID(field, v string) error {
	switch {
	case v == "":
		return invalid("%s is required", field)
	case len(v) > maxIDBytes:
		return invalid("%s is %d bytes long; at most %d are allowed", field, len(v), maxIDBytes)
	case v == "." || v == "..":
		return invalid("%s must not be %q", field, v)
	case !utf8.ValidString(v):
		return invalid("%s is not valid UTF-8", field)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return invalid("%s must not contain control characters", field)
		}
	}
	return nil
}

func validateList(req *tokenv1.ListRequest) error {
	if err := checkID("user_id", req.GetUserId()); err != nil {
		return err
	}
	if req.GetPageSize() < 0 {
		return invalid("page_size must not be negative")
	}
	if req.GetLimit() < 0 {
		return invalid("limit must not be negative")
	}
	if _, ok := tokenv1.Order_name[int32(req.GetOrder())]; !ok {
		return invalid("order %d is not a defined Order", req.GetOrder())
	}
	return nil
}

func validateTokenRef(userID, tokenID string) error {
	if err := checkID("user_id", userID); err != nil {
		return err
	}
	return checkID("token_id", tokenID)
}

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}
