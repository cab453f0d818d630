package jsonbody

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
)

// TestUnmarshal: a body that decodes is decoded; every other one is
// INVALID_ARGUMENT in words, with a BadRequest naming each field at fault
// by its proto name, and never protojson's own text.
func TestUnmarshal(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200)
	for _, c := range []struct {
		body   string
		fields []string // nil: no BadRequest
	}{
		{`{"user_id":5}`, []string{"user_id"}},
		{`{"userId":"u","nmae":"x"}`, []string{"nmae"}},
		{`{"name":"a","name":"b"}`, []string{"name"}},
		{`{"name":"a","meta":[1]}`, []string{"meta"}},
		{`{"meta":` + deep + `}`, []string{"meta"}},
		{`{"name":"\xff"}`, []string{"name"}},
		{`{"user_id":`, []string{"user_id"}},
		{`not json`, nil},
		{`[1]`, nil},
		{`{"name":"a"} x`, nil},
	} {
		st := Unmarshal([]byte(c.body), &tokenv1.CreateRequest{})
		if st == nil || st.Code() != codes.InvalidArgument {
			t.Errorf("%q: %v, want INVALID_ARGUMENT", c.body, st)
			continue
		}
		for _, bad := range []string{"proto:", "json:", "invalid character", "strconv.", "unexpected EOF"} {
			if strings.Contains(st.Message(), bad) {
				t.Errorf("%q: message %q carries Go error text", c.body, st.Message())
			}
		}
		var fields []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if strings.Join(fields, ",") != strings.Join(c.fields, ",") {
			t.Errorf("%q: BadRequest fields %v, want %v (message %q)", c.body, fields, c.fields, st.Message())
		}
	}
	// Deeper than encoding/json's own limit (10,000), which refuses it
	// before any field is looked at: still "too deep", not "cut short".
	deeper := strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000)
	for _, body := range []string{`{"meta":{"a":` + deeper + `}}`, `{"config":` + deeper + `}`} {
		st := Unmarshal([]byte(body), &tokenv1.CreateRequest{})
		if st == nil || !strings.Contains(st.Message(), "nested too deeply") {
			t.Errorf("%.20q...: %v, want a message saying it is nested too deeply", body, st)
		}
	}
	var req tokenv1.CreateRequest
	if st := Unmarshal([]byte(`{"userId":"u1","name":"n","meta":{"k":"v"}}`), &req); st != nil || req.GetUserId() != "u1" || req.GetMeta().GetFields()["k"].GetStringValue() != "v" {
		t.Errorf("a good body: %v, %v", st, &req)
	}
}
