package service

// Fuzz targets for request validation, the first thing hostile input meets.
// The seed corpus runs as an ordinary test; fuzz one target at a time, e.g.
//
//	go test -run='^$' -fuzz='^FuzzCheckID$' -fuzztime=60s -parallel=1 ./internal/service

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// validIDOracle is the contract's rule for user_id and token_id, written
// out independently of checkID: required, at most 256 bytes, not "." or
// "..", valid UTF-8 (a proto string is), no control characters (C0, DEL,
// C1).
func validIDOracle(id string) bool {
	if id == "" || len(id) > 256 || id == "." || id == ".." || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return false
		}
	}
	return true
}

var idFuzzSeeds = []string{
	"u1", "", ".", "..", "...", "./", "a/b", "../x", "%2e%2e", "\x00", "a\tb", "a\nb", "\x7f",
	"\u0085", "\u009f", "\u00a0", "é", "\u202e", "\xff", "\xc0\x80", "?#", strings.Repeat("a", 256),
	strings.Repeat("a", 257), strings.Repeat("é", 128), strings.Repeat("é", 129),
}

// FuzzCheckID: checkID accepts exactly the ids the contract allows, and
// refuses every other with INVALID_ARGUMENT naming the field, never echoing
// the id (which may hold anything, control characters included).
func FuzzCheckID(f *testing.F) {
	for _, s := range idFuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := checkID("token_id", id)
		if want := validIDOracle(id); want != (err == nil) {
			t.Fatalf("checkID(%q) = %v; the contract says valid=%v", id, err, want)
		}
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.InvalidArgument {
			t.Fatalf("checkID(%q) = %v, want INVALID_ARGUMENT", id, err)
		}
		if !strings.Contains(st.Message(), "token_id") {
			t.Fatalf("checkID(%q): message %q does not name the field", id, st.Message())
		}
		if len(id) >= 3 && strings.Contains(st.Message(), id) && !strings.Contains("token_id", id) {
			t.Fatalf("checkID(%q): message %q echoes the id", id, st.Message())
		}
	})
}

// FuzzValidateRequests: the List, Update and Delete checks accept exactly
// the requests the contract allows (both ids valid; page_size and limit not
// negative; order a defined value) and refuse the rest with
// INVALID_ARGUMENT.
func FuzzValidateRequests(f *testing.F) {
	for i, s := range idFuzzSeeds {
		f.Add(s, "t1", int32(i%4)-1, int32(i)-3, int32(3-i))
		f.Add("u1", s, int32(2), int32(0), int32(0))
	}
	f.Fuzz(func(t *testing.T, userID, tokenID string, order, pageSize, limit int32) {
		req := &tokenv1.ListRequest{UserId: userID, Order: tokenv1.Order(order), PageSize: pageSize, Limit: limit}
		_, defined := tokenv1.Order_name[order]
		wantList := validIDOracle(userID) && pageSize >= 0 && limit >= 0 && defined
		err := validateList(req)
		if wantList != (err == nil) {
			t.Fatalf("validateList(%v) = %v; the contract says valid=%v", req, err, wantList)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("validateList(%v) = %v, want INVALID_ARGUMENT", req, err)
		}

		wantRef := validIDOracle(userID) && validIDOracle(tokenID)
		err = validateTokenRef(userID, tokenID)
		if wantRef != (err == nil) {
			t.Fatalf("validateTokenRef(%q, %q) = %v; the contract says valid=%v", userID, tokenID, err, wantRef)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("validateTokenRef(%q, %q) = %v, want INVALID_ARGUMENT", userID, tokenID, err)
		}
	})
}
