package chatbotkit

import (
	"reflect"
	"strings"
	"testing"
)

// lineSeeds are listing lines of the usual shape and lines the fast path
// must leave to encoding/json (or refuse with it).
var lineSeeds = []string{
	`{"type":"item","data":{"id":"t1","createdAt":1700000000123,"updatedAt":1700000000123}}`,
	`{"type":"item","data":` + richItem + `}` + "\n",
	`{"data":{"id":"t1","meta":{"k":[1,"x\"]",{}]}},"type":"item","extra":[true,null,-1.5e-3]}`,
	" \t{ \"type\" : \"item\" , \"data\" : { \"id\" : \"a\" , \"meta\" : null } } \r\n",
	`{"type":"item","data":{"id":"a","meta":{"k":"v"}}}x`,
	`{"type":"item","data":{"id":"a","meta":{"k":"v"}},}`,
	`{"type":"item","data":{"id":"a","meta":{"k":"v",}}}`,
	`{"type":"item","data":{"id":"a","meta":{"k" "v"}}}`,
	`{"type":"item","data":{"id":"a" "name":"b"}}`,
	`{"type":"item","data":{"id":"a","meta":[1 2]}}`,
	`{"type":"item","data":{"id":"a","meta":01}}`,
	`{"type":"item","data":{"id":"a","createdAt":1.}}`,
	`{"type":"item","data":{"id":"a","name":"tab	here"}}`,
	`{"type":"item","data":{"id":"a","x":"\q"}}`,
	`{"type":"item" "data":{"id":"a"}}`,
	`{"type":"item","data":{"id":"a"}`,
	`{"type":"item","data":{"id":"a","meta":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}}`,
	`{"type":"item","data":{"id":"a","meta":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}}`,
	`{"type":"other","data":{"id":"a"}}`,
	`{"type":"item"}`,
	`{"type":"item","data":null}`,
	`{"Type":"item","Data":{"ID":"a"}}`,
	`[]`, `null`, ``,
}

// A line the fast path takes decodes exactly as encoding/json decodes it;
// one it leaves is decoded by encoding/json alone.
func checkLine(t *testing.T, line string) {
	t.Helper()
	var fast, slow wireToken
	if !scanLine([]byte(line), &fast) {
		return
	}
	if err := unmarshalLine([]byte(line), &slow); err != nil {
		t.Fatalf("%.100q: the fast path took a line encoding/json refuses (%v)", line, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%.100q:\n fast %+v\n slow %+v", line, fast, slow)
	}
}

func TestScanLineMatchesEncodingJSON(t *testing.T) {
	for _, l := range lineSeeds {
		checkLine(t, l)
	}
	for _, l := range lineSeeds[:4] {
		var w wireToken
		if !scanLine([]byte(l), &w) {
			t.Errorf("fell back on a usual line: %.80q", l)
		}
	}
}

func FuzzScanLine(f *testing.F) {
	for _, l := range lineSeeds {
		f.Add(l)
	}
	f.Fuzz(checkLine)
}
