package emulator_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/emulator"
)

const secret = "test-secret"

var prefixes = []string{"/v1", "/api/v1"}

// client talks to the emulator with raw net/http over loopback.
type client struct {
	t      testing.TB
	base   string // server URL plus "/v1" or "/api/v1"
	secret string
}

func start(t testing.TB, opts emulator.Options) (*emulator.Emulator, string) {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = secret
	}
	e := emulator.New(opts)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv.URL
}

func newClient(t testing.TB, serverURL, prefix string) client {
	return client{t: t, base: serverURL + prefix, secret: secret}
}

// do sends a request to base+path (path already escaped). POST bodies get
// Content-Type application/json unless hdr (name, value pairs) says otherwise.
func (c client) do(method, path, body string, hdr ...string) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// ok sends a request, requires 200 with a JSON body and decodes it into v.
func (c client) ok(method, path, body string, v any) {
	c.t.Helper()
	status, h, b := c.do(method, path, body)
	if status != http.StatusOK {
		c.t.Fatalf("%s %s: status %d, body %s", method, path, status, b)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		c.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
	}
}

type token struct {
	ID          string          `json:"id"`
	Name        *string         `json:"name"`
	Description *string         `json:"description"`
	Meta        json.RawMessage `json:"meta"`
	Config      json.RawMessage `json:"config"`
	CreatedAt   int64           `json:"createdAt"`
	UpdatedAt   int64           `json:"updatedAt"`
}

type page struct {
	Items  []token `json:"items"`
	Cursor *string `json:"cursor"`
}

type created struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	CreatedAt int64  `json:"createdAt"`
}

func userPath(user string) string { return "/partner/user/" + url.PathEscape(user) + "/token" }

func (c client) create(user, body string) created {
	c.t.Helper()
	var r created
	c.ok("POST", userPath(user)+"/create", body, &r)
	return r
}

func (c client) list(user, query string) page {
	c.t.Helper()
	var p page
	c.ok("GET", userPath(user)+"/list?"+query, "", &p)
	if p.Items == nil || p.Cursor == nil {
		c.t.Fatalf("list %s?%s: items or cursor missing", user, query)
	}
	return p
}

// all pages through a user's tokens with the given order and take.
func (c client) all(user, order string, take int) []token {
	c.t.Helper()
	var out []token
	cursor := ""
	for {
		p := c.list(user, fmt.Sprintf("order=%s&take=%d&cursor=%s", order, take, url.QueryEscape(cursor)))
		if len(p.Items) == 0 {
			if *p.Cursor != cursor {
				c.t.Fatalf("empty page changed the cursor from %q to %q", cursor, *p.Cursor)
			}
			return out
		}
		if len(p.Items) > take {
			c.t.Fatalf("page of %d items for take %d", len(p.Items), take)
		}
		out = append(out, p.Items...)
		cursor = *p.Cursor
	}
}

// stream reads a JSONL listing.
func (c client) stream(user, query string, accept string) []token {
	c.t.Helper()
	status, h, b := c.do("GET", userPath(user)+"/list?"+query, "", "Accept", accept)
	if status != http.StatusOK {
		c.t.Fatalf("stream: status %d, body %s", status, b)
	}
	if ct := h.Get("Content-Type"); ct != "application/jsonl" {
		c.t.Fatalf("stream: Content-Type %q", ct)
	}
	return parseJSONL(c.t, b)
}

func parseJSONL(t testing.TB, b []byte) []token {
	t.Helper()
	var out []token
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("stream does not end with a newline")
	}
	for line := range bytes.Lines(b) {
		var ev struct {
			Type string `json:"type"`
			Data token  `json:"data"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("bad JSONL line %q: %v", line, err)
		}
		if ev.Type != "item" || ev.Data.ID == "" {
			t.Fatalf("bad JSONL event %q", line)
		}
		out = append(out, ev.Data)
	}
	return out
}

func ids(ts []token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func requireUnique(t testing.TB, ids []string) {
	t.Helper()
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestNewPanicsWithoutSecret(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with an empty secret did not panic")
		}
	}()
	emulator.New(emulator.Options{})
}

func TestAuth(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	for _, prefix := range prefixes {
		for _, tc := range []struct {
			name   string
			header string // "" sends none
			want   int
		}{
			{"missing", "", 401},
			{"wrong secret", "Bearer nope", 401},
			{"secret prefix", "Bearer " + secret[:4], 401},
			{"secret plus more", "Bearer " + secret + "x", 401},
			{"no scheme", secret, 401},
			{"basic scheme", "Basic " + secret, 401},
			{"empty bearer", "Bearer ", 401},
			{"right", "Bearer " + secret, 200},
			{"scheme is case-insensitive", "bearer " + secret, 200},
		} {
			t.Run(prefix+"/"+tc.name, func(t *testing.T) {
				c := newClient(t, srv, prefix)
				c.secret = ""
				status, _, b := c.do("GET", userPath("u")+"/list", "", "Authorization", tc.header)
				if status != tc.want {
					t.Fatalf("status %d, want %d (body %s)", status, tc.want, b)
				}
				if tc.want == 401 {
					requireError(t, b, "NOT_AUTHENTICATED")
				}
			})
		}
	}
}

func requireError(t testing.TB, b []byte, code string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("error body %q is not JSON: %v", b, err)
	}
	msg, _ := m["message"].(string)
	if len(m) != 2 || msg == "" || m["code"] != code {
		t.Fatalf("error body %s, want {message, code: %q}", b, code)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, prefix := range prefixes {
		t.Run(prefix, func(t *testing.T) {
			_, srv := start(t, emulator.Options{})
			c := newClient(t, srv, prefix)
			before := time.Now().UnixMilli()
			cr := c.create("u1", `{"name":"ci","description":"for CI","config":{"x":1},"meta":{"team":"a","n":[1,2,{"k":null}]}}`)
			after := time.Now().UnixMilli()
			if cr.ID == "" || len(cr.Token) < 20 || cr.CreatedAt < before || cr.CreatedAt > after {
				t.Fatalf("create response %+v", cr)
			}

			p := c.list("u1", "")
			if len(p.Items) != 1 {
				t.Fatalf("list: %d items", len(p.Items))
			}
			got := p.Items[0]
			if got.ID != cr.ID || *got.Name != "ci" || *got.Description != "for CI" ||
				string(got.Meta) != `{"team":"a","n":[1,2,{"k":null}]}` ||
				got.CreatedAt != cr.CreatedAt || got.UpdatedAt != cr.CreatedAt {
				t.Fatalf("listed %+v (meta %s)", got, got.Meta)
			}
			if got.Config != nil {
				t.Fatalf("config is listed: %s", got.Config)
			}
			if *p.Cursor == "" {
				t.Fatal("a non-empty page has an empty cursor")
			}

			var up struct{ ID string }
			c.ok("POST", userPath("u1")+"/"+url.PathEscape(cr.ID)+"/update", `{"name":"renamed"}`, &up)
			if up.ID != cr.ID {
				t.Fatalf("update returned id %q", up.ID)
			}
			got = c.list("u1", "").Items[0]
			if *got.Name != "renamed" || *got.Description != "for CI" || got.UpdatedAt < got.CreatedAt {
				t.Fatalf("after update %+v", got)
			}

			var del struct{ ID string }
			c.ok("POST", userPath("u1")+"/"+url.PathEscape(cr.ID)+"/delete", `{}`, &del)
			if del.ID != cr.ID {
				t.Fatalf("delete returned id %q", del.ID)
			}
			if n := len(c.list("u1", "").Items); n != 0 {
				t.Fatalf("%d tokens after delete", n)
			}
			for _, action := range []string{"update", "delete"} {
				status, _, b := c.do("POST", userPath("u1")+"/"+url.PathEscape(cr.ID)+"/"+action, `{}`)
				if status != 404 {
					t.Fatalf("%s after delete: status %d", action, status)
				}
				requireError(t, b, "NOT_FOUND")
			}
		})
	}
}

func TestCreateWithoutFieldsAndSecrets(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	a, b := c.create("u", `{}`), c.create("u", `{"unknown":"ignored"}`)
	if a.ID == b.ID || a.Token == b.Token {
		t.Fatalf("ids or secrets repeat: %+v %+v", a, b)
	}
	status, _, raw := c.do("GET", userPath("u")+"/list", "")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	if bytes.Contains(raw, []byte(a.Token)) || bytes.Contains(raw, []byte(b.Token)) {
		t.Fatal("a token secret appears in the list")
	}
	var p struct{ Items []map[string]any }
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range it {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, []string{"createdAt", "id", "updatedAt"}) {
			t.Fatalf("token without fields lists keys %v", keys)
		}
	}
}

func TestPagination(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/api/v1")
	e.Seed("u", 103)
	c.create("u", `{"name":"newest"}`)

	asc := c.all("u", "asc", 10)
	desc := c.all("u", "desc", 7)
	if len(asc) != 104 || len(desc) != 104 {
		t.Fatalf("asc %d, desc %d tokens, want 104", len(asc), len(desc))
	}
	requireUnique(t, ids(asc))
	if !slices.Equal(ids(asc), reversed(ids(desc))) {
		t.Fatal("desc is not the reverse of asc")
	}
	if *desc[0].Name != "newest" {
		t.Fatalf("desc does not start with the newest token: %+v", desc[0])
	}
	// Default order is desc.
	if p := c.list("u", "take=3"); !slices.Equal(ids(p.Items), ids(desc[:3])) {
		t.Fatalf("default order: %v, want %v", ids(p.Items), ids(desc[:3]))
	}
	// A cursor resumes right after its item, every time it is used.
	p1 := c.list("u", "order=asc&take=5")
	for range 2 {
		p2 := c.list("u", "order=asc&take=5&cursor="+url.QueryEscape(*p1.Cursor))
		if !slices.Equal(ids(p2.Items), ids(asc[5:10])) {
			t.Fatalf("resume: %v, want %v", ids(p2.Items), ids(asc[5:10]))
		}
	}
	// take over the maximum is clamped, not rejected.
	last := c.list("u", "order=desc&take=200")
	if len(last.Items) != 100 {
		t.Fatalf("take=200 returned %d items, want the max of 100", len(last.Items))
	}
	// An empty listing for a user with no tokens has cursor "".
	if p := c.list("nobody", ""); len(p.Items) != 0 || *p.Cursor != "" {
		t.Fatalf("empty user: %+v", p)
	}
}

func TestTakeDefaults(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 25},
		{"take=100", 100},
		{"take=101", 100},
		{"take=99999999999999999999999", 100},
		{"take=", 25},
	} {
		t.Run(tc.query, func(t *testing.T) {
			e, srv := start(t, emulator.Options{})
			e.Seed("u", 300)
			c := newClient(t, srv, "/v1")
			if n := len(c.list("u", tc.query).Items); n != tc.want {
				t.Fatalf("%d items, want %d", n, tc.want)
			}
			// Streaming ignores take.
			if n := len(c.stream("u", tc.query, "application/jsonl")); n != 300 {
				t.Fatalf("stream: %d items, want 300", n)
			}
		})
	}
}

func TestCursorStableAcrossChanges(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	var made []string
	for i := range 10 {
		made = append(made, c.create("u", fmt.Sprintf(`{"name":"t%d"}`, i)).ID)
	}
	del := func(id string) {
		t.Helper()
		var r struct{ ID string }
		c.ok("POST", userPath("u")+"/"+url.PathEscape(id)+"/delete", "", &r)
	}

	// asc: the cursor is at t2; delete t2 (the cursor's own item) and t3,
	// add a token: the next page is t4... and ends with the new token.
	p := c.list("u", "order=asc&take=3")
	if !slices.Equal(ids(p.Items), made[:3]) {
		t.Fatalf("first page %v", ids(p.Items))
	}
	del(made[2])
	del(made[3])
	newest := c.create("u", `{}`).ID
	p = c.list("u", "order=asc&take=100&cursor="+url.QueryEscape(*p.Cursor))
	if want := append(slices.Clone(made[4:]), newest); !slices.Equal(ids(p.Items), want) {
		t.Fatalf("after changes: %v, want %v", ids(p.Items), want)
	}

	// desc: the cursor is at t7 (newest, t9, t8, t7); delete t7 and t6, add
	// a token: the next page is t5, t4, t1, t0, without the new token.
	p = c.list("u", "order=desc&take=4")
	if want := []string{newest, made[9], made[8], made[7]}; !slices.Equal(ids(p.Items), want) {
		t.Fatalf("desc first page %v, want %v", ids(p.Items), want)
	}
	del(made[7])
	del(made[6])
	c.create("u", `{}`)
	p = c.list("u", "order=desc&cursor="+url.QueryEscape(*p.Cursor))
	if want := []string{made[5], made[4], made[1], made[0]}; !slices.Equal(ids(p.Items), want) {
		t.Fatalf("desc after changes: %v, want %v", ids(p.Items), want)
	}
}

// TestCursorUnderConcurrentWrites pages through a list while other
// goroutines insert and delete tokens: every token present throughout is
// seen exactly once and in order.
func TestCursorUnderConcurrentWrites(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	e.Seed("u", 500)
	stable := ids(c.all("u", "asc", 100))

	for _, order := range []string{"asc", "desc"} {
		t.Run(order, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					w := newClient(t, srv, "/v1")
					for {
						select {
						case <-stop:
							return
						default:
						}
						id := w.create("u", `{"name":"churn"}`).ID
						var r struct{ ID string }
						w.ok("POST", userPath("u")+"/"+url.PathEscape(id)+"/delete", `{}`, &r)
					}
				})
			}
			got := c.all("u", order, 7)
			close(stop)
			wg.Wait()

			all := ids(got)
			requireUnique(t, all)
			var seen []string
			for _, tk := range got {
				if tk.Name == nil { // seeded: present throughout
					seen = append(seen, tk.ID)
				}
			}
			want := stable
			if order == "desc" {
				want = reversed(stable)
			}
			if !slices.Equal(seen, want) {
				t.Fatalf("saw %d of %d stable tokens, or out of order", len(seen), len(want))
			}
		})
	}
}

func TestStream(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	e.Seed("u", 1000) // several batches
	c := newClient(t, srv, "/v1")
	c.create("u", `{"name":"last","meta":{"k":"v"}}`)
	asc := ids(c.all("u", "asc", 100))

	got := c.stream("u", "order=asc", "application/jsonl")
	if !slices.Equal(ids(got), asc) {
		t.Fatalf("asc stream: %d items, differs from paged list of %d", len(got), len(asc))
	}
	if l := got[len(got)-1]; *l.Name != "last" || string(l.Meta) != `{"k":"v"}` || l.CreatedAt == 0 || l.UpdatedAt == 0 {
		t.Fatalf("last streamed token %+v", l)
	}
	if got := c.stream("u", "", "application/json, application/jsonl;q=0.9"); !slices.Equal(ids(got), reversed(asc)) {
		t.Fatalf("default (desc) stream differs, %d items", len(got))
	}

	// From a cursor, in both orders.
	p := c.list("u", "order=asc&take=100")
	if got := c.stream("u", "order=asc&cursor="+url.QueryEscape(*p.Cursor), "application/jsonl"); !slices.Equal(ids(got), asc[100:]) {
		t.Fatalf("asc stream from cursor: %d items, want %d", len(got), len(asc)-100)
	}
	p = c.list("u", "order=desc&take=100")
	if got := c.stream("u", "order=desc&cursor="+url.QueryEscape(*p.Cursor), "APPLICATION/JSONL"); !slices.Equal(ids(got), reversed(asc[:len(asc)-100])) {
		t.Fatalf("desc stream from cursor: %d items", len(got))
	}

	if got := c.stream("nobody", "", "application/jsonl"); len(got) != 0 {
		t.Fatalf("stream for a user without tokens: %d items", len(got))
	}
	// Errors are still JSON, with their status.
	status, _, b := c.do("GET", userPath("u")+"/list?order=up", "", "Accept", "application/jsonl")
	if status != 400 {
		t.Fatalf("bad order in stream mode: status %d", status)
	}
	requireError(t, b, "BAD_REQUEST")
}

// TestStreamEndsAtStart checks that tokens created after an ascending stream
// started are not part of it, so a stream ends under constant inserts.
func TestStreamEndsAtStart(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	e.Seed("u", 20000)
	c := newClient(t, srv, "/v1")
	req, _ := http.NewRequest("GET", srv+"/v1"+userPath("u")+"/list?order=asc", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Accept", "application/jsonl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadBytes('\n') // the stream has started
	if err != nil {
		t.Fatal(err)
	}
	late := c.create("u", `{}`).ID
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	got := parseJSONL(t, append(first, rest...))
	if len(got) != 20000 || slices.Contains(ids(got), late) {
		t.Fatalf("stream: %d items (want 20000), contains late token: %v", len(got), slices.Contains(ids(got), late))
	}
	requireUnique(t, ids(got))
}

func TestUserIsolation(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	a := c.create("alice", `{"name":"a"}`).ID
	b := c.create("bob", `{"name":"b"}`).ID
	if got := ids(c.list("alice", "").Items); !slices.Equal(got, []string{a}) {
		t.Fatalf("alice lists %v", got)
	}
	if got := ids(c.stream("bob", "", "application/jsonl")); !slices.Equal(got, []string{b}) {
		t.Fatalf("bob streams %v", got)
	}
	for _, action := range []string{"update", "delete"} {
		status, _, body := c.do("POST", userPath("bob")+"/"+url.PathEscape(a)+"/"+action, `{"name":"stolen"}`)
		if status != 404 {
			t.Fatalf("%s of alice's token as bob: status %d", action, status)
		}
		requireError(t, body, "NOT_FOUND")
	}
	if got := c.list("alice", "").Items; len(got) != 1 || *got[0].Name != "a" {
		t.Fatalf("alice's token changed: %+v", got)
	}
}

func TestPartialUpdate(t *testing.T) {
	for _, tc := range []struct {
		name, body        string
		wantName, wantDes string
		wantMeta          string
	}{
		{"name only", `{"name":"n2"}`, "n2", "d", `{"a":1,"b":2}`},
		{"description only", `{"description":"d2"}`, "n", "d2", `{"a":1,"b":2}`},
		{"meta replaced, not merged", `{"meta":{"c":3}}`, "n", "d", `{"c":3}`},
		{"meta emptied", `{"meta":{}}`, "n", "d", `{}`},
		{"config only", `{"config":{"z":true}}`, "n", "d", `{"a":1,"b":2}`},
		{"empty strings are values", `{"name":"","description":""}`, "", "", `{"a":1,"b":2}`},
		{"nothing", `{}`, "n", "d", `{"a":1,"b":2}`},
		{"everything", `{"name":"x","description":"y","config":{},"meta":{"m":[true]}}`, "x", "y", `{"m":[true]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := start(t, emulator.Options{})
			c := newClient(t, srv, "/v1")
			id := c.create("u", `{"name":"n","description":"d","config":{"q":1},"meta":{"a":1,"b":2}}`).ID
			before := c.list("u", "").Items[0]
			var r struct{ ID string }
			c.ok("POST", userPath("u")+"/"+url.PathEscape(id)+"/update", tc.body, &r)
			got := c.list("u", "").Items[0]
			if *got.Name != tc.wantName || *got.Description != tc.wantDes || string(got.Meta) != tc.wantMeta {
				t.Fatalf("after %s: name %q description %q meta %s", tc.body, *got.Name, *got.Description, got.Meta)
			}
			if got.CreatedAt != before.CreatedAt || got.UpdatedAt < before.UpdatedAt {
				t.Fatalf("timestamps went from %+v to %+v", before, got)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	e.Seed("u", 1)
	c := newClient(t, srv, "/v1")
	tokenPath := userPath("u") + "/" + url.PathEscape(c.list("u", "").Items[0].ID)
	big := `{"name":"` + strings.Repeat("a", 1<<20) + `"}`

	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		hdr          []string
		status       int
		code         string
		allow        string
	}{
		// 400: body
		{"malformed JSON", "POST", userPath("u") + "/create", `{"name":`, nil, 400, "BAD_REQUEST", ""},
		{"trailing data", "POST", userPath("u") + "/create", `{}{}`, nil, 400, "BAD_REQUEST", ""},
		{"array body", "POST", userPath("u") + "/create", `[]`, nil, 400, "BAD_REQUEST", ""},
		{"null body", "POST", userPath("u") + "/create", `null`, nil, 400, "BAD_REQUEST", ""},
		{"empty create body", "POST", userPath("u") + "/create", ``, nil, 400, "BAD_REQUEST", ""},
		{"empty update body", "POST", tokenPath + "/update", ``, nil, 400, "BAD_REQUEST", ""},
		{"name not a string", "POST", userPath("u") + "/create", `{"name":1}`, nil, 400, "BAD_REQUEST", ""},
		{"name null", "POST", userPath("u") + "/create", `{"name":null}`, nil, 400, "BAD_REQUEST", ""},
		{"description not a string", "POST", tokenPath + "/update", `{"description":false}`, nil, 400, "BAD_REQUEST", ""},
		{"meta an array", "POST", userPath("u") + "/create", `{"meta":[]}`, nil, 400, "BAD_REQUEST", ""},
		{"meta a string", "POST", tokenPath + "/update", `{"meta":"{}"}`, nil, 400, "BAD_REQUEST", ""},
		{"meta null", "POST", userPath("u") + "/create", `{"meta":null}`, nil, 400, "BAD_REQUEST", ""},
		{"config a number", "POST", userPath("u") + "/create", `{"config":1}`, nil, 400, "BAD_REQUEST", ""},
		{"not JSON content type", "POST", userPath("u") + "/create", `{}`, []string{"Content-Type", "text/plain"}, 400, "BAD_REQUEST", ""},
		{"no content type", "POST", userPath("u") + "/create", `{}`, []string{"Content-Type", ""}, 400, "BAD_REQUEST", ""},
		{"delete body not an object", "POST", tokenPath + "/delete", `"x"`, nil, 400, "BAD_REQUEST", ""},
		// 400: query
		{"bad order", "GET", userPath("u") + "/list?order=newest", "", nil, 400, "BAD_REQUEST", ""},
		{"take zero", "GET", userPath("u") + "/list?take=0", "", nil, 400, "BAD_REQUEST", ""},
		{"take negative", "GET", userPath("u") + "/list?take=-1", "", nil, 400, "BAD_REQUEST", ""},
		{"take huge negative", "GET", userPath("u") + "/list?take=-99999999999999999999", "", nil, 400, "BAD_REQUEST", ""},
		{"take not a number", "GET", userPath("u") + "/list?take=ten", "", nil, 400, "BAD_REQUEST", ""},
		{"take fractional", "GET", userPath("u") + "/list?take=1.5", "", nil, 400, "BAD_REQUEST", ""},
		{"cursor not base64", "GET", userPath("u") + "/list?cursor=%21%21", "", nil, 400, "BAD_REQUEST", ""},
		{"cursor wrong length", "GET", userPath("u") + "/list?cursor=AAAA", "", nil, 400, "BAD_REQUEST", ""},
		{"cursor padded", "GET", userPath("u") + "/list?cursor=AAAAAAAAAAA%3D", "", nil, 400, "BAD_REQUEST", ""},
		{"malformed query", "GET", userPath("u") + "/list?take=%zz", "", nil, 400, "BAD_REQUEST", ""},
		// 404
		{"unknown token update", "POST", userPath("u") + "/nope/update", `{}`, nil, 404, "NOT_FOUND", ""},
		{"unknown token delete", "POST", userPath("u") + "/nope/delete", `{}`, nil, 404, "NOT_FOUND", ""},
		{"token id named list", "POST", userPath("u") + "/list/delete", `{}`, nil, 404, "NOT_FOUND", ""},
		{"unknown route", "GET", "/partner/user/u/tokens/list", "", nil, 404, "NOT_FOUND", ""},
		{"unknown action", "POST", tokenPath + "/fetch", `{}`, nil, 404, "NOT_FOUND", ""},
		{"empty user segment", "GET", "/partner/user//token/list", "", nil, 404, "NOT_FOUND", ""},
		{"empty token segment", "POST", "/partner/user/u/token//delete", `{}`, nil, 404, "NOT_FOUND", ""},
		{"extra segment", "GET", "/partner/user/u/x/token/list", "", nil, 404, "NOT_FOUND", ""},
		{"trailing slash", "GET", userPath("u") + "/list/", "", nil, 404, "NOT_FOUND", ""},
		{"prefix only", "GET", "", "", nil, 404, "NOT_FOUND", ""},
		{"unknown route without auth", "GET", "/nothing", "", []string{"Authorization", ""}, 404, "NOT_FOUND", ""},
		// 405
		{"POST list", "POST", userPath("u") + "/list", `{}`, nil, 405, "METHOD_NOT_ALLOWED", "GET"},
		{"GET create", "GET", userPath("u") + "/create", "", nil, 405, "METHOD_NOT_ALLOWED", "POST"},
		{"DELETE delete", "DELETE", tokenPath + "/delete", "", nil, 405, "METHOD_NOT_ALLOWED", "POST"},
		{"PUT update", "PUT", tokenPath + "/update", `{}`, nil, 405, "METHOD_NOT_ALLOWED", "POST"},
		// 413
		{"body over 1 MiB", "POST", userPath("u") + "/create", big, nil, 413, "CONTENT_TOO_LARGE", ""},
		{"update body over 1 MiB", "POST", tokenPath + "/update", big, nil, 413, "CONTENT_TOO_LARGE", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := c.do(tc.method, tc.path, tc.body, tc.hdr...)
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %.200s)", status, tc.status, b)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			requireError(t, b, tc.code)
			if got := h.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	// The unknown route is 404 under any prefix that is not /v1 or /api/v1.
	for _, p := range []string{"/v2/partner/user/u/token/list", "/api/partner/user/u/token/list", "/"} {
		cc := newClient(t, srv, "")
		if status, _, b := cc.do("GET", p, ""); status != 404 {
			t.Fatalf("%s: status %d", p, status)
		} else {
			requireError(t, b, "NOT_FOUND")
		}
	}
}

func TestBodySizeLimitIsExact(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	wrap := len(`{"name":""}`)
	body := `{"name":"` + strings.Repeat("a", 1<<20-wrap) + `"}`
	if status, _, b := c.do("POST", userPath("u")+"/create", body); status != 200 {
		t.Fatalf("body of exactly 1 MiB: status %d %.200s", status, b)
	}
}

func TestDeleteBodies(t *testing.T) {
	for _, body := range []string{"", "{}", `{"extra":1}`} {
		t.Run(body, func(t *testing.T) {
			_, srv := start(t, emulator.Options{})
			c := newClient(t, srv, "/v1")
			id := c.create("u", `{}`).ID
			hdr := []string{}
			if body == "" {
				hdr = []string{"Content-Type", ""}
			}
			status, _, b := c.do("POST", userPath("u")+"/"+url.PathEscape(id)+"/delete", body, hdr...)
			if status != 200 {
				t.Fatalf("delete with body %q: status %d %s", body, status, b)
			}
		})
	}
}

// TestPathSegments checks that each id is exactly one escaped segment:
// %2F does not split it, and spaces, '+' and unicode survive.
func TestPathSegments(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	c := newClient(t, srv, "/v1")
	users := []string{"a/b", "a", "b", "a b", "a+b", "üsér 1/..", "..", "?x=1#y", "%41"}
	made := map[string]string{}
	for _, u := range users {
		made[u] = c.create(u, fmt.Sprintf(`{"name":%q}`, u)).ID
	}
	for _, u := range users {
		p := c.list(u, "")
		if len(p.Items) != 1 || p.Items[0].ID != made[u] || *p.Items[0].Name != u {
			t.Fatalf("user %q lists %+v", u, p.Items)
		}
	}
	// Unescaped, "a/b" is two segments: not a route.
	if status, _, _ := c.do("GET", "/partner/user/a/b/token/list", ""); status != 404 {
		t.Fatalf("a/b as two segments: status %d", status)
	}
	// Token ids are one segment too: an id with %2F is looked up as a whole.
	for _, id := range []string{made["a"] + "/x", "x/" + made["a"], "ü ñ", made["a"] + " "} {
		status, _, b := c.do("POST", userPath("a")+"/"+url.PathEscape(id)+"/update", `{}`)
		if status != 404 {
			t.Fatalf("token id %q: status %d", id, status)
		}
		requireError(t, b, "NOT_FOUND")
	}
	// A needlessly escaped id is the same id.
	var r struct{ ID string }
	c.ok("POST", userPath("a")+"/"+escapeAll(made["a"])+"/update", `{}`, &r)
	if r.ID != made["a"] {
		t.Fatalf("escaped id: update returned %q", r.ID)
	}
}

func escapeAll(s string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

func TestConcurrentUse(t *testing.T) {
	_, srv := start(t, emulator.Options{})
	const workers, each = 8, 25
	var wg sync.WaitGroup
	results := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			c := newClient(t, srv, prefixes[w%2])
			for i := range each {
				results[w] = append(results[w], c.create("shared", `{"meta":{"w":1}}`).ID)
				c.create(fmt.Sprintf("own-%d", w), `{}`)
				if i%5 == 0 {
					c.list("shared", "take=10")
					c.stream("shared", "", "application/jsonl")
				}
			}
		})
	}
	wg.Wait()
	c := newClient(t, srv, "/v1")
	all := ids(c.all("shared", "desc", 100))
	if len(all) != workers*each {
		t.Fatalf("%d tokens, want %d", len(all), workers*each)
	}
	requireUnique(t, all)
	for w := range workers {
		// Each worker's tokens appear in the order it created them.
		var mine []string
		for _, id := range reversed(all) {
			if slices.Contains(results[w], id) {
				mine = append(mine, id)
			}
		}
		if !slices.Equal(mine, results[w]) {
			t.Fatalf("worker %d: tokens out of creation order", w)
		}
		if n := len(c.all(fmt.Sprintf("own-%d", w), "asc", 100)); n != each {
			t.Fatalf("worker %d: %d own tokens", w, n)
		}
	}
}

func TestSeedMillion(t *testing.T) {
	e, srv := start(t, emulator.Options{})
	const n = 1_000_000
	// How fast seeding is belongs to a benchmark, not to a test on a shared
	// machine; here a million tokens must simply be there and behave.
	e.Seed("big", n)
	c := newClient(t, srv, "/v1")
	first := c.list("big", "order=asc&take=1").Items[0]
	last := c.list("big", "order=desc&take=1").Items[0]
	if first.ID == last.ID {
		t.Fatal("first and last token are the same")
	}
	// Seeded tokens can be updated and deleted like any other.
	var r struct{ ID string }
	c.ok("POST", userPath("big")+"/"+url.PathEscape(last.ID)+"/update", `{"name":"touched"}`, &r)
	c.ok("POST", userPath("big")+"/"+url.PathEscape(first.ID)+"/delete", `{}`, &r)
	if got := c.list("big", "order=asc&take=1").Items[0]; got.ID == first.ID {
		t.Fatal("deleted token still listed")
	}
	if got := c.list("big", "take=1").Items[0]; got.ID != last.ID || *got.Name != "touched" {
		t.Fatalf("updated token: %+v", got)
	}
}

// BenchmarkStreamMillion streams a million tokens; memory stays bounded
// because the server copies 256 tokens at a time.
func BenchmarkStreamMillion(b *testing.B) {
	e, srv := start(b, emulator.Options{})
	e.Seed("big", 1_000_000)
	for b.Loop() {
		req, _ := http.NewRequest("GET", srv+"/v1/partner/user/big/token/list", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Accept", "application/jsonl")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		lines := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines++
		}
		resp.Body.Close()
		if sc.Err() != nil || lines != 1_000_000 {
			b.Fatalf("%d lines, %v", lines, sc.Err())
		}
	}
}

// TestStoredBounds: what callers make the emulator hold is bounded. Config
// and meta past 64 KiB are 413 and stored nowhere; creates past the cap
// are 422 and change nothing; a delete makes room again; Seed is not
// counted.
func TestStoredBounds(t *testing.T) {
	e, srv := start(t, emulator.Options{MaxTokens: 3})
	e.Seed("seeded", 10)
	c := newClient(t, srv, "/v1")

	big := `{"meta":{"k":"` + strings.Repeat("m", 40<<10) + `"},"config":{"k":"` + strings.Repeat("c", 30<<10) + `"}}`
	if status, _, b := c.do("POST", userPath("u")+"/create", big); status != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "CONTENT_TOO_LARGE") {
		t.Fatalf("create with 70 KiB of config and meta: status %d %s, want 413 CONTENT_TOO_LARGE", status, b)
	}
	var ids []string
	for range 3 {
		ids = append(ids, c.create("u", `{"meta":{"k":"`+strings.Repeat("m", 60<<10)+`"}}`).ID)
	}
	status, _, b := c.do("POST", userPath("u")+"/create", `{}`)
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(b), "UNPROCESSABLE_ENTITY") {
		t.Fatalf("create past the cap: status %d %s, want 422", status, b)
	}
	if status, _, b := c.do("POST", userPath("u")+"/"+url.PathEscape(ids[0])+"/update", big); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("update with 70 KiB of config and meta: status %d %s, want 413", status, b)
	}
	var p page
	c.ok("GET", userPath("u")+"/list?take=100", "", &p)
	if len(p.Items) != 3 {
		t.Fatalf("user holds %d tokens after refused creates, want 3", len(p.Items))
	}
	for _, it := range p.Items {
		if len(it.Meta) < 60<<10 {
			t.Fatalf("token %s meta %d bytes: a refused update changed it", it.ID, len(it.Meta))
		}
	}
	c.ok("POST", userPath("u")+"/"+url.PathEscape(ids[0])+"/delete", "{}", &struct{}{})
	c.create("u", `{}`) // room again
}
