package chatbotkit

// Fuzz targets for what hostile input can reach in the REST client: ids and
// cursors that become the upstream URL, and upstream bodies (JSON pages,
// JSON answers to writes, Retry-After). The seed corpus runs as
// an ordinary test; fuzz one target at a time with, e.g.,
//
//	go test -run='^$' -fuzz='^FuzzRequestPath$' -fuzztime=60s -parallel=1 ./internal/chatbotkit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzBase has a path prefix, so joining under a prefix is fuzzed too.
const fuzzBase = "http://127.0.0.1:9/api"

// idSeeds are ids that have broken path building somewhere: separators,
// dot-segments plain and encoded, query and fragment markers, percent signs,
// userinfo and host markers, controls, non-ASCII, long ids.
var idSeeds = []string{
	"u1", "tok_1", "user 1/x", "../admin", "..", ".", "", "a/b/c", "/", "//",
	"?", "#", "a?b#c", "%", "%zz", "%2e%2e", "%2F", ".%2e", "%2e", "...",
	";x=1", "@evil.com", "\\..\\", "\x00", "\r\nHost: x", "é", "\u202e",
	"\xff\xfe", "a b+c", "~user", strings.Repeat("a", 300),
}

// FuzzRequestPath: for every user id, token id and cursor the client accepts,
// the request URL has the base's scheme and host, no fragment, exactly the
// expected path segments, each id in exactly one segment that unescapes to
// the id and is no dot-segment, and the cursor only in the query. The
// client refuses exactly "", "." and "..".
func FuzzRequestPath(f *testing.F) {
	for _, u := range idSeeds {
		f.Add(u, "t1", "")
		f.Add("u1", u, u)
	}
	c, err := New(Options{BaseURL: fuzzBase})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, userID, tokenID, cursor string) {
		check := func(action string, r *request, err error, want ...string) {
			t.Helper()
			for _, id := range want {
				if id == "" || id == "." || id == ".." {
					if !errors.Is(err, ErrInvalidID) {
						t.Fatalf("%s: id %q: error %v, want ErrInvalidID", action, id, err)
					}
					return
				}
			}
			if err != nil {
				t.Fatalf("%s %q: %v", action, want, err)
			}
			// The URL as net/http sends it: parsed, then its escaped path
			// on the request line.
			req, err := http.NewRequest(r.method, r.url, nil)
			if err != nil {
				t.Fatalf("%s %q: the built URL %q does not parse: %v", action, want, r.url, err)
			}
			u := req.URL
			if u.Scheme != "http" || u.Host != "127.0.0.1:9" || u.User != nil || u.Fragment != "" || u.RawFragment != "" {
				t.Fatalf("%s %q: URL %q leaves the upstream: %+v", action, want, r.url, u)
			}
			segs := strings.Split(u.EscapedPath(), "/")
			wantSegs := []string{"", "api", "v1", "partner", "user", "{user}", "token"}
			if len(want) == 2 {
				wantSegs = append(wantSegs, "{token}")
			}
			wantSegs = append(wantSegs, action)
			if len(segs) != len(wantSegs) {
				t.Fatalf("%s %q: path %q has %d segments, want %d", action, want, u.EscapedPath(), len(segs), len(wantSegs))
			}
			ids := want
			for i, w := range wantSegs {
				switch w {
				case "{user}", "{token}":
					got, err := url.PathUnescape(segs[i])
					if err != nil || got != ids[0] {
						t.Fatalf("%s: segment %q unescapes to %q (%v), want the id %q", action, segs[i], got, err, ids[0])
					}
					if isDotSegment(segs[i]) {
						t.Fatalf("%s: id segment %q is a dot-segment", action, segs[i])
					}
					ids = ids[1:]
				default:
					if segs[i] != w {
						t.Fatalf("%s %q: segment %d is %q, want %q (path %q)", action, want, i, segs[i], w, u.EscapedPath())
					}
				}
			}
		}

		r, err := c.listRequest("list", heldSecret, userID, ListOptions{Cursor: cursor, Order: OrderAsc, Take: 7})
		check("list", r, err, userID)
		if err == nil {
			q, qerr := url.ParseQuery(strings.SplitN(r.url, "?", 2)[1])
			if qerr != nil || len(q) > 3 || q.Get("order") != "asc" || q.Get("take") != "7" || q.Get("cursor") != cursor {
				t.Fatalf("cursor %q: query %q parses to %v (%v)", cursor, r.url, q, qerr)
			}
		}
		r, err = c.newRequest("create", http.MethodPost, heldSecret, "create", userID)
		check("create", r, err, userID)
		r, err = c.newRequest("update", http.MethodPost, heldSecret, "update", userID, tokenID)
		check("update", r, err, userID, tokenID)
		r, err = c.newRequest("delete", http.MethodPost, heldSecret, "delete", userID, tokenID)
		check("delete", r, err, userID, tokenID)
	})
}

// isDotSegment reports whether an escaped segment is "." or "..", plain or
// percent-encoded, which an HTTP stack on the way may resolve.
func isDotSegment(s string) bool {
	s = strings.ReplaceAll(strings.ToLower(s), "%2e", ".")
	return s == "." || s == ".."
}

// fuzzTransport answers every request with a 200 whose body is body,
// delivered in reads of at most chunk bytes, with no Content-Length.
type fuzzTransport struct {
	body  []byte
	chunk int
}

func (ft fuzzTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(&chunkReader{b: ft.body, n: ft.chunk}),
		ContentLength: -1,
		Request:       r,
	}, nil
}

// chunkReader hands out at most n bytes per Read, so the decoders see lines
// and documents split at every possible place.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// fuzzClient is a client whose upstream answers body, with small caps so
// that the fuzzer reaches them, and retries that do not wait.
func fuzzClient(t *testing.T, body []byte, chunk uint8, maxBody int64) *Client {
	c, err := New(Options{
		BaseURL:   fuzzBase,
		Transport: fuzzTransport{body: body, chunk: int(chunk)%64 + 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.maxBody = maxBody
	c.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return c
}

// wantTyped fails unless err is nil or one of the client's sorted errors.
func wantTyped(t *testing.T, what string, err error, allowed ...error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	t.Fatalf("%s: untyped error %T: %v", what, err, err)
}

var pageSeeds = []string{
	`{"items":[],"cursor":""}`,
	`{"items":[{"id":"t1","name":"n","description":"d","meta":{"a":1},"createdAt":1700000000000,"updatedAt":1700000000000.5}],"cursor":"c1"}`,
	`{"items":[{"id":"t1","createdAt":null,"updatedAt":-1}]}`,
	`{"items":null}`, `{}`, `[]`, `null`, ``, `{"items":[{}]}`, `{"items":[{"id":""}]}`,
	`{"items":[{"id":"t1","createdAt":1e400}]}`, `{"items":[{"id":"t1","createdAt":"1"}]}`,
	`{"items":[{"id":"t1","createdAt":9007199254740993.5}]}`, `{"items":[{"id":"t1","meta":"x"}]}`,
	`{"items":[` + strings.Repeat(`{"id":"t"},`, 40) + `{"id":"t"}]}`,
	`{"id":"t1","token":"sk-secret","createdAt":1}`, `{"id":"t1"}`, `{"id":1}`,
	"\xef\xbb\xbf{}", `{"items":[{"id":"\ud800"}]}`, malformedPageSeed,
}

// malformedPageSeed is a page cut inside a string.
const malformedPageSeed = `{"items":[{"id":"t1","name":"abc`

// FuzzDecodeJSON: whatever a 200 JSON body holds, ListPage, Create and
// Update neither panic nor return an untyped error; a body over the cap is
// ErrResponseTooLarge; an accepted page has an id on every token and an
// accepted create an id and a token.
func FuzzDecodeJSON(f *testing.F) {
	for i, s := range pageSeeds {
		f.Add([]byte(s), uint8(i))
	}
	const maxBody = 512
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		c := fuzzClient(t, body, chunk, maxBody)
		ctx := context.Background()

		page, err := c.ListPage(ctx, heldSecret, "u1", ListOptions{})
		wantTyped(t, "ListPage", err, ErrMalformedResponse, ErrResponseTooLarge)
		if len(body) > maxBody && !errors.Is(err, ErrResponseTooLarge) {
			t.Fatalf("ListPage of a %d-byte body with a %d-byte cap: %v, want ErrResponseTooLarge", len(body), maxBody, err)
		}
		if err == nil {
			for i, tok := range page.Items {
				if tok.ID == "" {
					t.Fatalf("ListPage accepted item %d without an id", i)
				}
			}
		}

		created, err := c.Create(ctx, heldSecret, "u1", TokenInput{})
		wantTyped(t, "Create", err, ErrMalformedResponse, ErrResponseTooLarge)
		if err == nil && (created.ID == "" || created.Token.IsZero()) {
			t.Fatalf("Create accepted an answer without id or token: %+v", created)
		}

		id, err := c.Update(ctx, heldSecret, "u1", "t1", TokenInput{})
		wantTyped(t, "Update", err, ErrMalformedResponse, ErrResponseTooLarge)
		if err == nil && id == "" {
			t.Fatal("Update accepted an answer without id")
		}
	})
}

// FuzzParseRetryAfter: any Retry-After value is a wait of zero or more, and
// a number of seconds is clamped to a year.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "1", "1.5", "-1", "NaN", "+Inf", "1e308", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Nov 2094 08:49:37 GMT", " 3 ", "0x10", "1_000"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("Retry-After %q: negative %s", v, d)
		}
		if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && d > 365*24*time.Hour {
			t.Fatalf("Retry-After %q: %s, more than a year", v, d)
		}
	})
}
