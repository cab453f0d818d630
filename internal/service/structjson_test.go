package service

import (
	"encoding/json"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// appendStruct must write what protojson.Marshal writes, and fail where it
// fails.
func TestAppendStructMatchesProtojson(t *testing.T) {
	str := func(fields map[string]*structpb.Value) *structpb.Struct { return &structpb.Struct{Fields: fields} }
	num := structpb.NewNumberValue
	cases := map[string]*structpb.Struct{
		"empty":   str(nil),
		"scalars": str(map[string]*structpb.Value{"s": structpb.NewStringValue("x"), "n": num(1.5), "t": structpb.NewBoolValue(true), "f": structpb.NewBoolValue(false), "z": structpb.NewNullValue()}),
		"numbers": str(map[string]*structpb.Value{
			"a": num(0), "b": num(math.Copysign(0, -1)), "c": num(1e20), "d": num(1e21), "e": num(123456789012345678901234.0), "f": num(1e-6), "g": num(1e-7),
			"h": num(-2.5e-300), "i": num(math.MaxFloat64), "j": num(math.SmallestNonzeroFloat64), "k": num(12345678901234567890), "l": num(0.1),
		}),
		"strings": str(map[string]*structpb.Value{
			"ctl": structpb.NewStringValue("a\x00b\x01\x1f\x7f\b\f\n\r\t"), "quote": structpb.NewStringValue(`"\/`),
			"html": structpb.NewStringValue("<a href='x'>&</a>"), "unicode": structpb.NewStringValue("é 日本 \u2028\u2029 😀"),
			"ke\"y\n": structpb.NewStringValue(""),
		}),
		"nested": str(map[string]*structpb.Value{
			"obj":  structpb.NewStructValue(str(map[string]*structpb.Value{"b": num(2), "a": structpb.NewListValue(&structpb.ListValue{})})),
			"list": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{num(1), structpb.NewStringValue("x"), structpb.NewNullValue(), structpb.NewStructValue(str(nil))}}),
			"nils": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{{Kind: &structpb.Value_StructValue{}}, {Kind: &structpb.Value_ListValue{}}}}),
		}),
		"nan":          str(map[string]*structpb.Value{"x": num(math.NaN())}),
		"inf":          str(map[string]*structpb.Value{"x": num(math.Inf(-1))}),
		"no kind":      str(map[string]*structpb.Value{"x": {}}),
		"nil value":    str(map[string]*structpb.Value{"x": nil}),
		"deep no kind": str(map[string]*structpb.Value{"x": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{{}}})}),
		"bad utf8":     str(map[string]*structpb.Value{"x": structpb.NewStringValue("a\xffb")}),
		"bad utf8 key": str(map[string]*structpb.Value{"a\xff": structpb.NewNullValue()}),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			want, wantErr := protojson.Marshal(s)
			got, err := appendStruct(nil, s)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, protojson's %v", err, wantErr)
			}
			if err != nil {
				return
			}
			// protojson puts a space in here and there on purpose, so
			// compare both compacted.
			w, err := json.Marshal(json.RawMessage(want))
			if err != nil {
				t.Fatal(err)
			}
			g, err := json.Marshal(json.RawMessage(got))
			if err != nil {
				t.Fatalf("not JSON: %s: %v", got, err)
			}
			if string(g) != string(w) {
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// TestDepthCounts: jsonDeeper counts a JSON document's levels as
// structDeeper counts the Struct it decodes to (objects and arrays one
// each, scalars none), and nothing inside a string.
func TestDepthCounts(t *testing.T) {
	for _, tc := range []struct {
		json  string
		depth int
	}{
		{`{}`, 1},
		{`{"a":1,"b":"x"}`, 1},
		{`{"a":{"b":1}}`, 2},
		{`{"a":[1,[2]]}`, 3},
		{`{"a":[],"b":{"c":{}}}`, 3},
		{`{"s":"{[{[{[\"{{"}`, 1},
		{`{"s":"\\","t":{}}`, 2},
	} {
		s := &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(tc.json), s); err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{tc.depth - 1, tc.depth} {
			want := tc.depth > limit
			if got := jsonDeeper([]byte(tc.json), limit); got != want {
				t.Errorf("jsonDeeper(%s, %d) = %v, want %v", tc.json, limit, got, want)
			}
			if got := structDeeper(s, limit); got != want {
				t.Errorf("structDeeper(%s, %d) = %v, want %v", tc.json, limit, got, want)
			}
		}
	}
}
