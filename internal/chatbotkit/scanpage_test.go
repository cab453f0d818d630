package chatbotkit

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// scanPageSeeds are pages of the usual shape and pages that must fall back
// to encoding/json.
var scanPageSeeds = []string{
	`{"items":[],"cursor":""}`,
	`{"items":[{"id":"t1","createdAt":1700000000123,"updatedAt":1700000000123}],"cursor":"AAAAAAAAAAE"}`,
	`{"cursor":"c","items":[` + richItem + `,{"id":"t2","meta":null,"createdAt":1e3,"updatedAt":0},{"id":"t3","name":null,"createdAt":-1000,"updatedAt":null,"extra":true}]}`,
	" \n{ \"items\" : [ { \"id\" : \"a\" , \"meta\" : { \"k\" : [1, \"x\\\"]\", {}] } , \"createdAt\" : 1.5 } ] , \"cursor\" : \"c\" } \t",
	`{"items":[{"id":"a","unknown":{"nested":["]","}",{"\"":"\\"}]},"more":"x\"y","n":-1.5e-3,"t":true,"f":false,"z":null}],"other":[{"a":1}],"cursor":"c"}`,
	`{"items":[{"id":"a\u00e9"}],"cursor":"c"}`,
	`{"items":[{"id":"é 日本 😀","name":"quote\"d"}]}`,
	`{"items":[{"ID":"a"}],"cursor":"c"}`,
	`{"Items":[{"id":"a"}],"cursor":"c"}`,
	`{"items":[{"id":"a"}],"Cursor":"c"}`,
	`{"items":[{"id":"a","id":"b"}],"items":[{"id":"c"}],"cursor":"1","cursor":"2"}`,
	`{"items":[{"id":"a"}],"items":null}`,
	`{"items":null,"cursor":"c"}`,
	`{"cursor":"c"}`,
	`{"items":{},"cursor":"c"}`,
	`{"items":[1],"cursor":"c"}`,
	`{"items":[null],"cursor":"c"}`,
	`{"items":[{"id":5}],"cursor":"c"}`,
	`{"items":[{"id":"a","createdAt":"123"}]}`,
	`{"items":[{"id":"a","createdAt":true}]}`,
	`{"items":[{"id":"a","createdAt":1e400}]}`,
	`{"items":[{"id":"a","updatedAt":{}}]}`,
	`{"items":[{"id":""}]}`,
	`{"items":[{}]}`,
	`{"items":[{"id":"a","meta":"x"}],"cursor":5}`,
	`{"items":[{"id":"a","name":"\xff"}]}`,
	`{"items":[{"id":"a"}]} x`,
	`{"items":[{"id":"a"}]`,
	`[{"items":[]}]`,
	`null`,
	``,
	`"items"`,
}

// decodePage (fast or not) must answer exactly as encoding/json alone does.
func checkScanPage(t *testing.T, body string) {
	t.Helper()
	got, gotErr := decodePage([]byte(body), 0)
	if json.Valid([]byte(body)) && countItems([]byte(body), MaxTake) > MaxTake {
		// Past the bound encoding/json knows nothing of.
		if !errors.Is(gotErr, errTooManyItems) {
			t.Fatalf("%.80q...: %v, want errTooManyItems", body, gotErr)
		}
		return
	}
	var want *Page
	items, cursor, wantErr := unmarshalPage([]byte(body), make([]wireToken, 0, 100))
	if wantErr == nil {
		want, wantErr = newPage(items, cursor)
	}
	if (gotErr != nil) != (wantErr != nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("%q: error %v, encoding/json's %v", body, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", body, got, want)
	}
}

func TestScanPageMatchesEncodingJSON(t *testing.T) {
	for _, body := range scanPageSeeds {
		checkScanPage(t, body)
	}
	// And the pages the benchmark decodes.
	checkScanPage(t, string(benchPage(100, false)))
	checkScanPage(t, string(benchPage(100, true)))
}

// The usual pages do take the fast path.
func TestScanPageTakesUsualPages(t *testing.T) {
	for _, body := range []string{string(benchPage(100, false)), string(benchPage(100, true)), scanPageSeeds[1], scanPageSeeds[3], scanPageSeeds[4]} {
		if _, _, ok, _ := scanPage([]byte(body), nil, MaxTake); !ok {
			t.Errorf("fell back on %.80s...", body)
		}
	}
	if _, _, ok, _ := scanPage([]byte(strings.Replace(scanPageSeeds[1], `"t1"`, `"t\u0031"`, 1)), nil, MaxTake); ok {
		t.Error("took a string with an escape")
	}
}

func FuzzScanPage(f *testing.F) {
	for _, s := range scanPageSeeds {
		f.Add(s)
	}
	f.Fuzz(checkScanPage)
}
