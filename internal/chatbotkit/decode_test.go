package chatbotkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const richItem = `{"id":"t1","name":"n","description":"d","meta":{"big": 12345678901234567890, "f":1.10,"nested":{"a":[1,2.50,"x"]}},"createdAt":1700000000123.5,"updatedAt":1700000001000}`

func checkRichToken(t *testing.T, tok Token) {
	t.Helper()
	if tok.ID != "t1" || tok.Name != "n" || tok.Description != "d" {
		t.Errorf("token %+v", tok)
	}
	if want := `{"big": 12345678901234567890, "f":1.10,"nested":{"a":[1,2.50,"x"]}}`; string(tok.Meta) != want {
		t.Errorf("meta = %s, want byte-exact %s", tok.Meta, want)
	}
	wantCreated := time.Date(2023, 11, 14, 22, 13, 20, 123500000, time.UTC)
	if !tok.CreatedAt.Equal(wantCreated) || tok.CreatedAt.Location() != time.UTC {
		t.Errorf("createdAt = %v, want %v", tok.CreatedAt, wantCreated)
	}
	if want := time.UnixMilli(1700000001000).UTC(); !tok.UpdatedAt.Equal(want) || tok.UpdatedAt.Location() != time.UTC {
		t.Errorf("updatedAt = %v", tok.UpdatedAt)
	}
}

func TestListPageDecodes(t *testing.T) {
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"items":[`+richItem+`,{"id":"t2","meta":null,"createdAt":1e3,"updatedAt":0},{"id":"t3","name":null,"createdAt":-1000,"updatedAt":null,"extra":true}],"cursor":"cur-3"}`)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	page, err := c.ListPage(context.Background(), heldSecret, "u", ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Cursor != "cur-3" || len(page.Items) != 3 {
		t.Fatalf("page %+v", page)
	}
	checkRichToken(t, page.Items[0])
	if t2 := page.Items[1]; t2.Meta != nil || !t2.CreatedAt.Equal(time.Unix(1, 0)) || !t2.UpdatedAt.Equal(time.Unix(0, 0)) {
		t.Errorf("t2 = %+v", t2)
	}
	if t3 := page.Items[2]; t3.Meta != nil || t3.Name != "" || !t3.CreatedAt.Equal(time.Unix(-1, 0)) || !t3.UpdatedAt.IsZero() {
		t.Errorf("t3 = %+v", t3)
	}
}

func TestWriteResponsesDecode(t *testing.T) {
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/create") {
			writeJSON(w, 200, `{"id":"new","token":"sk-minted","createdAt":1700000000000}`)
			return
		}
		writeJSON(w, 200, `{"id":"t9"}`)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	cr, err := c.Create(ctx, heldSecret, "u", TokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	if cr.ID != "new" || cr.Token.Reveal() != "sk-minted" || !cr.CreatedAt.Equal(time.UnixMilli(1700000000000)) {
		t.Errorf("created %+v", cr)
	}
	if s := fmt.Sprintf("%v %+v", cr, *cr); strings.Contains(s, "sk-minted") {
		t.Errorf("the minted token prints: %s", s)
	}
	if id, err := c.Update(ctx, heldSecret, "u", "t9", TokenInput{}); err != nil || id != "t9" {
		t.Errorf("update: %q, %v", id, err)
	}
	if id, err := c.Delete(ctx, heldSecret, "u", "t9"); err != nil || id != "t9" {
		t.Errorf("delete: %q, %v", id, err)
	}
}

func TestMalformedResponses(t *testing.T) {
	var mu sync.Mutex
	var body string
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		w.WriteHeader(200)
		w.Write([]byte(b))
	})
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	set := func(b string) {
		mu.Lock()
		body = b
		mu.Unlock()
	}

	pages := []string{
		``, `not json`, `<html>`, `[]`, `null`, `{}`, `{"items":null}`, `{"items":{}}`, `{"cursor":"x"}`,
		`{"items":[]} trailing`, `{"items":[{"name":"no id"}]}`, `{"items":[{"id":""}]}`,
		`{"items":[{"id":"a","createdAt":"yesterday"}]}`, `{"items":[{"id":"a","createdAt":1e400}]}`,
		`{"items":[{"id":"a","name":5}]}`, `{"items":[],"cursor":7}`, `{"items":[`,
	}
	for _, b := range pages {
		set(b)
		if _, err := c.ListPage(ctx, heldSecret, "u", ListOptions{}); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("page %q: %v, want ErrMalformedResponse", b, err)
		}
	}

	for _, b := range []string{`{}`, `{"id":"x"}`, `{"token":"sk-x"}`, `{"id":"x","token":5}`, `nope`} {
		set(b)
		_, err := c.Create(ctx, heldSecret, "u", TokenInput{})
		if !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("create %q: %v, want ErrMalformedResponse", b, err)
		}
	}
	for _, b := range []string{`{}`, `{"id":""}`, `{"id":5}`, ``} {
		set(b)
		if _, err := c.Update(ctx, heldSecret, "u", "t", TokenInput{}); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("update %q: %v, want ErrMalformedResponse", b, err)
		}
		if _, err := c.Delete(ctx, heldSecret, "u", "t"); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("delete %q: %v, want ErrMalformedResponse", b, err)
		}
	}
}

// TestPagination walks a purpose-built paginated server page by page in both
// orders and checks cursor resume.
func TestPagination(t *testing.T) {
	const n = 23
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		take, _ := strconv.Atoi(q.Get("take"))
		if take == 0 {
			take = 10
		}
		pos := 0 // index into the ordered list to start from
		order := make([]int, n)
		for i := range order {
			order[i] = i
			if q.Get("order") != "asc" {
				order[i] = n - 1 - i
			}
		}
		if cur := q.Get("cursor"); cur != "" {
			k, err := strconv.Atoi(strings.TrimPrefix(cur, "k"))
			if err != nil {
				writeJSON(w, 400, `{"message":"bad cursor","code":"BAD_REQUEST"}`)
				return
			}
			for pos < n && order[pos] != k {
				pos++
			}
			pos++
		}
		var items []string
		cursor := ""
		for i := pos; i < n && len(items) < take; i++ {
			items = append(items, fmt.Sprintf(`{"id":"t%02d","createdAt":%d,"updatedAt":%d}`, order[i], order[i], order[i]))
			cursor = fmt.Sprintf("k%d", order[i])
		}
		writeJSON(w, 200, `{"items":[`+strings.Join(items, ",")+`],"cursor":"`+cursor+`"}`)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	walk := func(order Order, take int, cursor string) []string {
		var ids []string
		for pages := 0; ; pages++ {
			if pages > n+1 {
				t.Fatal("pagination does not end")
			}
			p, err := c.ListPage(ctx, heldSecret, "u", ListOptions{Cursor: cursor, Order: order, Take: take})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				ids = append(ids, it.ID)
			}
			if len(p.Items) < take || p.Cursor == "" {
				return ids
			}
			cursor = p.Cursor
		}
	}
	asc := walk(OrderAsc, 5, "")
	desc := walk(OrderDesc, 7, "")
	if len(asc) != n || len(desc) != n {
		t.Fatalf("asc %d, desc %d items, want %d", len(asc), len(desc), n)
	}
	for i := range asc {
		if asc[i] != fmt.Sprintf("t%02d", i) || desc[i] != fmt.Sprintf("t%02d", n-1-i) {
			t.Fatalf("order broken at %d: asc %v desc %v", i, asc, desc)
		}
	}
	if resumed := walk(OrderAsc, 4, "k9"); len(resumed) != n-10 || resumed[0] != "t10" {
		t.Errorf("resume after k9: %v", resumed)
	}
}

func TestMsTime(t *testing.T) {
	cases := map[string]time.Time{
		`0`:                time.Unix(0, 0),
		`1700000000000`:    time.UnixMilli(1700000000000),
		`1700000000000.0`:  time.UnixMilli(1700000000000),
		`1700000000000.25`: time.UnixMilli(1700000000000).Add(250 * time.Microsecond),
		`1.7e12`:           time.UnixMilli(1700000000000),
		`-1.5`:             time.UnixMilli(-2).Add(500 * time.Microsecond),
		`null`:             {},
		// The ends of what a google.protobuf.Timestamp holds.
		`253402300799999`:   time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC),
		`-62135596800000`:   time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		`253402300799999.5`: time.Date(9999, 12, 31, 23, 59, 59, 999e6+5e5, time.UTC),
	}
	for in, want := range cases {
		var m msTime
		if err := m.UnmarshalJSON([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !m.t.Equal(want) || (!want.IsZero() && m.t.Location() != time.UTC) {
			t.Errorf("%s: %v, want %v", in, m.t, want)
		}
	}
	// Past the years 1 to 9999 (a time a google.protobuf.Timestamp cannot
	// hold is a malformed answer), and what is no number of milliseconds.
	for _, in := range []string{`"1"`, `true`, `{}`, `1e300`, `9007199254740993.5`,
		`253402300800000`, `-62135596800001`, `253402300800000.0`, `9007199254740993`, `-9007199254740993`} {
		var m msTime
		if err := m.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%s accepted as %v", in, m.t)
		}
	}
}
