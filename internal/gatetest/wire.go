package gatetest

// What cbkgate's JSON API answers, read one way for every test that drives
// it over HTTP; and the details of a google.rpc.Status.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// Status decodes a JSON google.rpc.Status (an error body, or the value of
// an {"error"} line); anything else fails the test.
func Status(t testing.TB, b []byte) *status.Status {
	t.Helper()
	var p spb.Status
	if err := protojson.Unmarshal(b, &p); err != nil {
		t.Fatalf("not a JSON google.rpc.Status: %v: %s", err, b)
	}
	return status.FromProto(&p)
}

// NDJSON splits a streamed List answer into its {"result"} lines and the
// final {"error"} line, if any. Blank lines are skipped; a line that is not
// exactly one of those two objects, or any line after the error line, fails
// the test.
func NDJSON(t testing.TB, b []byte) (results []*tokenv1.ListResponse, errLine *status.Status) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if errLine != nil {
			t.Fatalf("List over HTTP: a line after the error line: %s", line)
		}
		var frame map[string]json.RawMessage
		if err := json.Unmarshal(line, &frame); err != nil || len(frame) != 1 {
			t.Fatalf("List over HTTP: line is not one {\"result\"} or {\"error\"} object (%v): %s", err, line)
		}
		switch {
		case frame["result"] != nil:
			r := &tokenv1.ListResponse{}
			if err := protojson.Unmarshal(frame["result"], r); err != nil {
				t.Fatalf("List over HTTP: result line: %v: %s", err, line)
			}
			results = append(results, r)
		case frame["error"] != nil:
			errLine = Status(t, frame["error"])
		default:
			t.Fatalf("List over HTTP: unexpected line %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("List over HTTP: %v", err)
	}
	return results, errLine
}

// ErrorInfo returns the status's google.rpc.ErrorInfo, or nil.
func ErrorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// RetryInfo returns the status's google.rpc.RetryInfo, or nil.
func RetryInfo(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

// WantErrorInfo fails the test unless st carries the ErrorInfo of an
// upstream error answer: reason (ChatBotKit's code), domain chatbotkit.com
// and the upstream's HTTP status.
func WantErrorInfo(t testing.TB, st *status.Status, reason string, httpStatus int) {
	t.Helper()
	ei := ErrorInfo(st)
	if ei == nil {
		t.Fatalf("status %s %q has no ErrorInfo; details %v", st.Code(), st.Message(), st.Details())
	}
	if ei.GetReason() != reason || ei.GetDomain() != "chatbotkit.com" || ei.GetMetadata()["http_status"] != strconv.Itoa(httpStatus) {
		t.Fatalf("ErrorInfo reason %q domain %q http_status %q, want %q, chatbotkit.com, %d",
			ei.GetReason(), ei.GetDomain(), ei.GetMetadata()["http_status"], reason, httpStatus)
	}
}
