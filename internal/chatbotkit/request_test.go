package chatbotkit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cbkgate/cbkgate/internal/secret"
)

func TestNewValidatesOptions(t *testing.T) {
	bad := []Options{
		{BaseURL: ""},
		{BaseURL: "api.chatbotkit.com"},
		{BaseURL: "/v1"},
		{BaseURL: "ftp://api.chatbotkit.com"},
		{BaseURL: "http://"},
		{BaseURL: "https:api.chatbotkit.com"},
		{BaseURL: "https://user:pass@api.chatbotkit.com"},
		{BaseURL: "https://api.chatbotkit.com?x=1"},
		{BaseURL: "https://api.chatbotkit.com#frag"},
		{BaseURL: "https://api.chatbotkit.com", UserAgent: "a\r\nX-Evil: 1"},
	}
	for _, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	c, err := New(Options{BaseURL: "https://api.chatbotkit.com"})
	if err != nil {
		t.Fatal(err)
	}
	if c.maxAttempts != 4 || c.maxBackoff != defaultMaxBackoff || c.maxBody != 16<<20 || c.userAgent != "cbkgate/dev" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestNewTransport(t *testing.T) {
	tr := NewTransport()
	if !tr.ForceAttemptHTTP2 || tr.MaxIdleConnsPerHost < 256 || tr.IdleConnTimeout == 0 || tr.TLSHandshakeTimeout == 0 || tr.DisableKeepAlives || tr.DialContext == nil {
		t.Errorf("transport not tuned: %+v", tr)
	}
}

// TestRequestShape checks method, raw path, query, headers and body of every
// endpoint, under a BaseURL with a path prefix and a trailing slash.
func TestRequestShape(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/list"):
			writeJSON(w, 200, `{"items":[],"cursor":""}`)
		case strings.HasSuffix(r.URL.Path, "/create"):
			writeJSON(w, 200, `{"id":"t1","token":"tok-secret","createdAt":1700000000000}`)
		default:
			writeJSON(w, 200, `{"id":"t1"}`)
		}
	})
	c, _ := newTestClient(t, srv.URL+"/api/", func(o *Options) { o.UserAgent = "cbkgate-test/1" })
	ctx := context.Background()
	name, desc := "n <&>", ""

	cases := []struct {
		name        string
		call        func() error
		method      string
		path        string
		query       string
		accept      string
		body        string // "" means no body and no Content-Type
		contentType bool
	}{
		{
			name: "list page",
			call: func() error {
				_, err := c.ListPage(ctx, heldSecret, "u1", ListOptions{Cursor: "c/1 +", Order: OrderAsc, Take: 25})
				return err
			},
			method: "GET", path: "/api/v1/partner/user/u1/token/list",
			query: "cursor=c%2F1+%2B&order=asc&take=25", accept: "application/json",
		},
		{
			name: "list page, zero options",
			call: func() error {
				_, err := c.ListPage(ctx, heldSecret, "u1", ListOptions{})
				return err
			},
			method: "GET", path: "/api/v1/partner/user/u1/token/list", accept: "application/json",
		},
		{
			name: "list page, descending",
			call: func() error {
				_, err := c.ListPage(ctx, heldSecret, "u1", ListOptions{Order: OrderDesc})
				return err
			},
			method: "GET", path: "/api/v1/partner/user/u1/token/list", query: "order=desc", accept: "application/json",
		},
		{
			name: "create, every field",
			call: func() error {
				_, err := c.Create(ctx, heldSecret, "u1", TokenInput{
					Name: &name, Description: &desc,
					Config: json.RawMessage(`{"a": 1}`),
					Meta:   json.RawMessage(`{"big":12345678901234567890,"f":1.10,"s":"<x>"}`),
				})
				return err
			},
			method: "POST", path: "/api/v1/partner/user/u1/token/create", accept: "application/json",
			body: `{"name":"n <&>","description":"","config":{"a":1},"meta":{"big":12345678901234567890,"f":1.10,"s":"<x>"}}`, contentType: true,
		},
		{
			name: "create, nothing set",
			call: func() error {
				_, err := c.Create(ctx, heldSecret, "u1", TokenInput{})
				return err
			},
			method: "POST", path: "/api/v1/partner/user/u1/token/create", accept: "application/json", body: `{}`, contentType: true,
		},
		{
			name: "update, name only",
			call: func() error {
				_, err := c.Update(ctx, heldSecret, "u1", "t1", TokenInput{Name: &name})
				return err
			},
			method: "POST", path: "/api/v1/partner/user/u1/token/t1/update", accept: "application/json", body: `{"name":"n <&>"}`, contentType: true,
		},
		{
			name: "delete",
			call: func() error {
				_, err := c.Delete(ctx, heldSecret, "u1", "t1")
				return err
			},
			method: "POST", path: "/api/v1/partner/user/u1/token/t1/delete", accept: "application/json", body: `{}`, contentType: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			got := rc.last(t)
			if got.Method != tc.method || got.EscapedPath != tc.path || got.Query != tc.query {
				t.Errorf("got %s %s ?%s, want %s %s ?%s", got.Method, got.EscapedPath, got.Query, tc.method, tc.path, tc.query)
			}
			h := got.Header
			if h.Get("Authorization") != "Bearer "+heldSecret.Reveal() {
				t.Errorf("Authorization = %q", h.Get("Authorization"))
			}
			if h.Get("User-Agent") != "cbkgate-test/1" || h.Get("Accept") != tc.accept {
				t.Errorf("User-Agent %q, Accept %q", h.Get("User-Agent"), h.Get("Accept"))
			}
			if ct := h.Get("Content-Type"); (ct == "application/json") != tc.contentType || (!tc.contentType && ct != "") {
				t.Errorf("Content-Type = %q", ct)
			}
			if got.Body != tc.body {
				t.Errorf("body = %s, want %s", got.Body, tc.body)
			}
		})
	}
}

// TestHostileIDsAreOneSegment checks the raw path the server received for
// ids that would change the path if sent unescaped.
func TestHostileIDsAreOneSegment(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/list") {
			writeJSON(w, 200, `{"items":[]}`)
			return
		}
		writeJSON(w, 200, `{"id":"x"}`)
	})
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	ids := map[string]string{
		"a/b":     "a%2Fb",
		"../x":    "..%2Fx",
		"a?b=c":   "a%3Fb=c",
		"a#b":     "a%23b",
		"%2F":     "%252F",
		"a b":     "a%20b",
		"ünï 💥":   "%C3%BCn%C3%AF%20%F0%9F%92%A5",
		"a;b":     "a%3Bb",
		"...":     "...",
		"/":       "%2F",
		"a\\b":    "a%5Cb",
		"a\x00b":  "a%00b",
		"a\nb":    "a%0Ab",
		"+&=$:@,": "+&=$:@%2C",
	}
	for id, want := range ids {
		if _, err := c.ListPage(ctx, heldSecret, id, ListOptions{}); err != nil {
			t.Fatalf("list %q: %v", id, err)
		}
		wantPath := "/v1/partner/user/" + want + "/token/list"
		if got := rc.last(t); got.EscapedPath != wantPath || got.RequestURI != wantPath {
			t.Errorf("list %q: server saw path %q, request URI %q; want %q", id, got.EscapedPath, got.RequestURI, wantPath)
		}
		if _, err := c.Update(ctx, heldSecret, id, id, TokenInput{}); err != nil {
			t.Fatalf("update %q: %v", id, err)
		}
		wantPath = "/v1/partner/user/" + want + "/token/" + want + "/update"
		if got := rc.last(t); got.RequestURI != wantPath {
			t.Errorf("update %q: server saw %q, want %q", id, got.RequestURI, wantPath)
		}
		if _, err := c.Delete(ctx, heldSecret, "u", id); err != nil {
			t.Fatalf("delete %q: %v", id, err)
		}
		wantPath = "/v1/partner/user/u/token/" + want + "/delete"
		got := rc.last(t)
		if got.RequestURI != wantPath {
			t.Errorf("delete %q: server saw %q, want %q", id, got.RequestURI, wantPath)
		}
		// The segment decodes back to the id, whole.
		segs := strings.Split(got.RequestURI, "/")
		if len(segs) != 8 {
			t.Errorf("delete %q: %d segments in %q", id, len(segs), got.RequestURI)
		} else if dec, err := url.PathUnescape(segs[6]); err != nil || dec != id {
			t.Errorf("delete %q: segment decodes to %q (%v)", id, dec, err)
		}
	}
}

func TestInvalidIDsAreRefusedBeforeAnyRequest(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"id":"x","items":[]}`) })
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	for _, id := range []string{"", ".", ".."} {
		calls := map[string]error{}
		_, calls["list"] = c.ListPage(ctx, heldSecret, id, ListOptions{})
		_, calls["create"] = c.Create(ctx, heldSecret, id, TokenInput{})
		_, calls["update user"] = c.Update(ctx, heldSecret, id, "t", TokenInput{})
		_, calls["update token"] = c.Update(ctx, heldSecret, "u", id, TokenInput{})
		_, calls["delete user"] = c.Delete(ctx, heldSecret, id, "t")
		_, calls["delete token"] = c.Delete(ctx, heldSecret, "u", id)
		for name, err := range calls {
			if !errors.Is(err, ErrInvalidID) {
				t.Errorf("%s with id %q: %v, want ErrInvalidID", name, id, err)
			}
		}
	}
	if n := rc.count(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestInvalidArgumentsAreRefusedBeforeAnyRequest(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"id":"x","items":[]}`) })
	c, _ := newTestClient(t, srv.URL, nil)
	ctx := context.Background()
	errs := map[string]error{}
	_, errs["order"] = c.ListPage(ctx, heldSecret, "u", ListOptions{Order: "sideways"})
	_, errs["take"] = c.ListPage(ctx, heldSecret, "u", ListOptions{Take: -1})
	_, errs["config"] = c.Create(ctx, heldSecret, "u", TokenInput{Config: json.RawMessage(`{"a":`)})
	_, errs["meta"] = c.Update(ctx, heldSecret, "u", "t", TokenInput{Meta: json.RawMessage(`nope`)})
	for name, err := range errs {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if n := rc.count(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

// TestCredentialChoice: a call spends the credential it is given, and
// without a usable one sends nothing.
func TestCredentialChoice(t *testing.T) {
	srv, rc := serve(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{"items":[]}`) })
	ctx := context.Background()

	c, _ := newTestClient(t, srv.URL, nil)
	if _, err := c.ListPage(ctx, "caller-secret", "u", ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := rc.last(t).Header.Get("Authorization"); got != "Bearer caller-secret" {
		t.Errorf("caller credential: sent %q", got)
	}

	before := rc.count()
	errs := map[string]error{}
	_, errs["list"] = c.ListPage(ctx, "", "u", ListOptions{})
	_, errs["create"] = c.Create(ctx, "", "u", TokenInput{})
	_, errs["update"] = c.Update(ctx, "", "u", "t", TokenInput{})
	_, errs["delete"] = c.Delete(ctx, "", "u", "t")
	_, errs["control characters"] = c.Delete(ctx, secret.Value("abc\r\nX-Evil: 1"), "u", "t")
	for name, err := range errs {
		if !errors.Is(err, ErrNoCredential) {
			t.Errorf("%s: %v, want ErrNoCredential", name, err)
		}
	}
	if n := rc.count() - before; n != 0 {
		t.Errorf("%d requests went out without a credential", n)
	}
}
