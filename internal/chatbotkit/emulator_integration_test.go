package chatbotkit_test

// The client against the real emulator over loopback HTTP, through the
// exported API only. The emulator shares no code with the client, so these
// tests check the two against each other and the wire format.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/chatbotkit"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/secret"
)

const emuSecret = "emulator-secret-for-tests"

func startEmulator(t *testing.T) (*emulator.Emulator, *chatbotkit.Client, string) {
	t.Helper()
	emu := emulator.New(emulator.Options{Secret: emuSecret})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	c, err := chatbotkit.New(chatbotkit.Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return emu, c, srv.URL
}

func ptr(s string) *string { return &s }

// walk lists every token page by page until an empty page.
func walk(t *testing.T, c *chatbotkit.Client, userID string, opts chatbotkit.ListOptions) []chatbotkit.Token {
	t.Helper()
	var all []chatbotkit.Token
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		p, err := c.ListPage(context.Background(), emuSecret, userID, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) == 0 {
			return all
		}
		if p.Cursor == "" || p.Cursor == opts.Cursor {
			t.Fatalf("a non-empty page with cursor %q after %q", p.Cursor, opts.Cursor)
		}
		all = append(all, p.Items...)
		opts.Cursor = p.Cursor
	}
}

func ids(toks []chatbotkit.Token) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.ID
	}
	return out
}

func wantAPIError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var ae *chatbotkit.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.Message == "" {
		t.Errorf("%s: %v, want %d %s", what, err, status, code)
	}
}

func TestEmulatorRoundTrip(t *testing.T) {
	_, c, _ := startEmulator(t)
	ctx := context.Background()
	const meta = `{"big":12345678901234567890,"f":1.10,"nested":{"a":[1,2.50,"x"]}}`
	before := time.Now().Add(-time.Second)

	cr, err := c.Create(ctx, emuSecret, "u1", chatbotkit.TokenInput{
		Name: ptr("first"), Description: ptr("d1"),
		Config: json.RawMessage(`{"k": "v"}`), Meta: json.RawMessage(meta),
	})
	if err != nil {
		t.Fatal(err)
	}
	if cr.ID == "" || cr.Token.IsZero() || cr.CreatedAt.Before(before) || cr.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("created %+v (token set: %v)", cr, !cr.Token.IsZero())
	}
	bare, err := c.Create(ctx, emuSecret, "u1", chatbotkit.TokenInput{})
	if err != nil {
		t.Fatal(err)
	}

	page, err := c.ListPage(ctx, emuSecret, "u1", chatbotkit.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Newest first by default.
	if got := ids(page.Items); !slices.Equal(got, []string{bare.ID, cr.ID}) {
		t.Fatalf("listed %v", got)
	}
	tok := page.Items[1]
	if tok.Name != "first" || tok.Description != "d1" || string(tok.Meta) != meta || !tok.CreatedAt.Equal(cr.CreatedAt) || tok.UpdatedAt.Before(tok.CreatedAt) {
		t.Errorf("listed %+v, meta %s", tok, tok.Meta)
	}
	if b := page.Items[0]; b.Name != "" || b.Meta != nil {
		t.Errorf("bare token listed as %+v", b)
	}

	// Update the name only: the rest stays.
	id, err := c.Update(ctx, emuSecret, "u1", cr.ID, chatbotkit.TokenInput{Name: ptr("renamed")})
	if err != nil || id != cr.ID {
		t.Fatalf("update: %q %v", id, err)
	}
	streamed := walk(t, c, "u1", chatbotkit.ListOptions{Order: chatbotkit.OrderAsc})
	if len(streamed) != 2 || streamed[0].ID != cr.ID {
		t.Fatalf("streamed %v", ids(streamed))
	}
	if u := streamed[0]; u.Name != "renamed" || u.Description != "d1" || string(u.Meta) != meta || u.UpdatedAt.Before(u.CreatedAt) {
		t.Errorf("after update: %+v", u)
	}

	if id, err := c.Delete(ctx, emuSecret, "u1", cr.ID); err != nil || id != cr.ID {
		t.Fatalf("delete: %q %v", id, err)
	}
	if got := ids(walk(t, c, "u1", chatbotkit.ListOptions{})); !slices.Equal(got, []string{bare.ID}) {
		t.Errorf("after delete: %v", got)
	}
	_, err = c.Delete(ctx, emuSecret, "u1", cr.ID)
	wantAPIError(t, "delete again", err, 404, "NOT_FOUND")
	_, err = c.Update(ctx, emuSecret, "u1", cr.ID, chatbotkit.TokenInput{Name: ptr("x")})
	wantAPIError(t, "update deleted", err, 404, "NOT_FOUND")
	// Another user's token is not found.
	_, err = c.Delete(ctx, emuSecret, "u2", bare.ID)
	wantAPIError(t, "delete as another user", err, 404, "NOT_FOUND")
	_, err = c.Update(ctx, emuSecret, "u1", "no-such-token", chatbotkit.TokenInput{})
	wantAPIError(t, "update unknown", err, 404, "NOT_FOUND")
}

// TestEmulatorPagination walks long lists in both orders, by pages of
// several sizes (one above the emulator's clamp) and by stream.
func TestEmulatorPagination(t *testing.T) {
	emu, c, _ := startEmulator(t)
	const n = 357
	emu.Seed("many", n)
	emu.Seed("other", 5)

	desc := walk(t, c, "many", chatbotkit.ListOptions{})
	if len(desc) != n {
		t.Fatalf("stream gave %d tokens, want %d", len(desc), n)
	}
	seen := map[string]bool{}
	for _, tok := range desc {
		if seen[tok.ID] {
			t.Fatalf("duplicate %s", tok.ID)
		}
		seen[tok.ID] = true
		if tok.CreatedAt.IsZero() || tok.UpdatedAt.IsZero() {
			t.Fatalf("timestamps missing: %+v", tok)
		}
	}
	asc := slices.Clone(desc)
	slices.Reverse(asc)

	for _, take := range []int{0, 1, 7, 100, 1000} {
		for _, tc := range []struct {
			order chatbotkit.Order
			want  []chatbotkit.Token
		}{{chatbotkit.OrderDefault, desc}, {chatbotkit.OrderDesc, desc}, {chatbotkit.OrderAsc, asc}} {
			got := walk(t, c, "many", chatbotkit.ListOptions{Order: tc.order, Take: take})
			if !slices.Equal(ids(got), ids(tc.want)) {
				t.Errorf("order %q, take %d: %d tokens, not the stream's %d in order", tc.order, take, len(got), len(tc.want))
			}
		}
	}
	if got := walk(t, c, "many", chatbotkit.ListOptions{Order: chatbotkit.OrderAsc}); !slices.Equal(ids(got), ids(asc)) {
		t.Error("ascending stream differs from the reversed descending one")
	}

	// Resume from the cursor of the second page.
	for _, tc := range []struct {
		order chatbotkit.Order
		want  []chatbotkit.Token
	}{{chatbotkit.OrderAsc, asc}, {chatbotkit.OrderDesc, desc}} {
		p1, err := c.ListPage(context.Background(), emuSecret, "many", chatbotkit.ListOptions{Order: tc.order, Take: 10})
		if err != nil {
			t.Fatal(err)
		}
		p2, err := c.ListPage(context.Background(), emuSecret, "many", chatbotkit.ListOptions{Order: tc.order, Take: 10, Cursor: p1.Cursor})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(append(p1.Items, p2.Items...)), ids(tc.want[:20])) {
			t.Fatalf("%s: first two pages wrong", tc.order)
		}
		rest := walk(t, c, "many", chatbotkit.ListOptions{Order: tc.order, Take: 50, Cursor: p2.Cursor})
		if !slices.Equal(ids(rest), ids(tc.want[20:])) {
			t.Errorf("%s: paged resume after 20 gave %d tokens", tc.order, len(rest))
		}
	}

	_, err := c.ListPage(context.Background(), emuSecret, "many", chatbotkit.ListOptions{Cursor: "not a cursor"})
	wantAPIError(t, "bad cursor", err, 400, "BAD_REQUEST")
	if got := walk(t, c, "nobody", chatbotkit.ListOptions{}); len(got) != 0 {
		t.Errorf("unknown user listed %d tokens", len(got))
	}
}

func TestEmulatorAuthentication(t *testing.T) {
	ctx := context.Background()
	_, c, _ := startEmulator(t)
	const wrong = secret.Value("not-the-secret")
	errs := map[string]error{}
	_, errs["list"] = c.ListPage(ctx, wrong, "u", chatbotkit.ListOptions{})
	_, errs["create"] = c.Create(ctx, wrong, "u", chatbotkit.TokenInput{})
	_, errs["update"] = c.Update(ctx, wrong, "u", "t", chatbotkit.TokenInput{})
	_, errs["delete"] = c.Delete(ctx, wrong, "u", "t")
	for name, err := range errs {
		wantAPIError(t, name, err, 401, "NOT_AUTHENTICATED")
		if strings.Contains(err.Error(), wrong.Reveal()) {
			t.Errorf("%s: the secret is in %q", name, err)
		}
	}
	if _, err := c.Create(ctx, emuSecret, "u", chatbotkit.TokenInput{}); err != nil {
		t.Errorf("create with the emulator's secret: %v", err)
	}
	if _, err := c.ListPage(ctx, "", "u", chatbotkit.ListOptions{}); !errors.Is(err, chatbotkit.ErrNoCredential) {
		t.Errorf("without a credential: %v", err)
	}
}

// TestEmulatorHostileIDs: ids that would be several segments, or another
// path, unescaped travel as one and reach the right user and route.
func TestEmulatorHostileIDs(t *testing.T) {
	_, c, _ := startEmulator(t)
	ctx := context.Background()
	hostile := []string{"a/b", "../x", "a?b=c", "a#b", "%2F", "a b", "ünï 💥", "a;b", "...", "/", "a\\b", "token", "list", "a%", "x/token/list"}
	created := map[string]string{}
	for _, u := range hostile {
		cr, err := c.Create(ctx, emuSecret, u, chatbotkit.TokenInput{Name: ptr("for " + u)})
		if err != nil {
			t.Fatalf("create for %q: %v", u, err)
		}
		created[u] = cr.ID
	}
	for _, u := range hostile {
		got := walk(t, c, u, chatbotkit.ListOptions{})
		if len(got) != 1 || got[0].ID != created[u] || got[0].Name != "for "+u {
			t.Errorf("user %q lists %+v", u, got)
		}
		if s := walk(t, c, u, chatbotkit.ListOptions{}); len(s) != 1 || s[0].ID != created[u] {
			t.Errorf("user %q streams %v", u, ids(s))
		}
		if id, err := c.Update(ctx, emuSecret, u, created[u], chatbotkit.TokenInput{Description: ptr("d")}); err != nil || id != created[u] {
			t.Errorf("update for %q: %q %v", u, id, err)
		}
		// A hostile token id is one unknown id, not another route.
		_, err := c.Update(ctx, emuSecret, u, u, chatbotkit.TokenInput{})
		wantAPIError(t, "update token "+u, err, 404, "NOT_FOUND")
		_, err = c.Delete(ctx, emuSecret, u, u)
		wantAPIError(t, "delete token "+u, err, 404, "NOT_FOUND")
	}
	// "a/b" did not land on "a", nor "../x" on "x".
	for _, u := range []string{"a", "b", "x"} {
		if got := walk(t, c, u, chatbotkit.ListOptions{}); len(got) != 0 {
			t.Errorf("user %q got tokens %v", u, ids(got))
		}
	}
	if _, err := c.ListPage(ctx, emuSecret, "..", chatbotkit.ListOptions{}); !errors.Is(err, chatbotkit.ErrInvalidID) {
		t.Errorf(`user "..": %v, want ErrInvalidID`, err)
	}
	for _, u := range hostile {
		if id, err := c.Delete(ctx, emuSecret, u, created[u]); err != nil || id != created[u] {
			t.Errorf("delete for %q: %q %v", u, id, err)
		}
	}
}
