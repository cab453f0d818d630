//go:build browser

package browsertest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/browsertest"
	"github.com/cbkgate/cbkgate/internal/emulator"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// The users the flows work on, and what they hold before.
const (
	manyUser  = "many" // 1,200 seeded tokens and four named ones
	manyTotal = 1204
	slowUser  = "slow" // 1,000 seeded tokens, listed slowly
	slowTotal = 1000
	crudUser  = "crud" // "first" and "second"
	shotUser  = "acme-support"
	hostile   = `<img src=x onerror=alert(1)>`
	opsKey    = "ops-key-0123456789"
	viewerKey = "viewer-key-0123456789" // granted only list
)

// TestBrowserConsole drives the token console in headless Chromium by its
// accessible names, against a real cbkgate (--console, API keys, grants) in front
// of the emulator: 1,204 tokens streamed in with a live en-US count and
// searched by name, Stop cancelling the listing upstream, create with the
// secret shown once (gone after a reload), edit, revoke behind a modal
// confirmation, listing with the keyboard alone, and a key granted only
// list refused a create with PERMISSION_DENIED and the call's request id
// shown (the one cbkgate logged it under). Every flow also
// checks: no request to another origin, no console error, no CSP
// violation, nothing stored. The screenshot flow writes the README's
// picture to $CONSOLE_SCREENSHOT_OUT when set (docs/console.png).
func TestBrowserConsole(t *testing.T) {
	const secret = "console-browser-secret"
	emu := emulator.New(emulator.Options{Secret: secret})
	up := fu.Start(t)
	up.SetDefaultAll(fu.Forward(emu))
	dir := t.TempDir()
	keys, grants := filepath.Join(dir, "keys"), filepath.Join(dir, "grants")
	if err := os.WriteFile(keys, []byte("ops "+opsKey+"\nviewer "+viewerKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grants, []byte("key:ops * *\nkey:viewer list *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatetest.Start(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys, "--grants-file="+grants, "--console"))

	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+opsKey)
	api := g.Client()
	create := func(user, name, description string, meta map[string]any) {
		t.Helper()
		m, err := structpb.NewStruct(meta)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := api.Create(ctx, &tokenv1.CreateRequest{UserId: user, Name: name, Description: description, Meta: m}); err != nil {
			t.Fatalf("create %s/%s: %v", user, name, err)
		}
	}
	emu.Seed(manyUser, 1200)
	create(manyUser, "alpha one", "", nil)
	create(manyUser, "alpha two", "", nil)
	create(manyUser, hostile, "<b>desc</b>", map[string]any{"k": "<b>bold</b>"})
	// Meta nested deeper than cbkgate passes on, stored by another client.
	deep := `{"name":"deep meta","meta":` + strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40) + "}"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, up.URL+"/v1/partner/user/"+manyUser+"/token/create", strings.NewReader(deep))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the emulator refused deep meta: %s", resp.Status)
	}
	emu.Seed(slowUser, slowTotal)
	create(crudUser, "first", "", nil)
	create(crudUser, "second", "", nil)
	for _, n := range []string{"billing sync", "mobile app", "nightly export", "partner webhook"} {
		create(shotUser, n, "", map[string]any{"env": "prod"})
	}

	run := func(t *testing.T, flow, key, user string, total int, extra ...string) []byte {
		t.Helper()
		env := append([]string{
			"CONSOLE_URL=" + g.URL() + "/console/", "CONSOLE_KEY=" + key, "CONSOLE_USER=" + user,
			"CONSOLE_TOTAL=" + strconv.Itoa(total),
		}, extra...)
		return browsertest.Script(t, "console "+flow, 2*time.Minute, env, "console.mjs", flow, "console "+flow)
	}

	t.Run("list", func(t *testing.T) {
		// A paced listing (a token every 2ms upstream), so the count is
		// seen moving.
		up.SetDefault(fu.List, fu.PaceLines(2*time.Millisecond, fu.Forward(emu)))
		defer up.SetDefault(fu.List, fu.Forward(emu))
		run(t, "list", opsKey, manyUser, manyTotal, "CONSOLE_HOSTILE="+hostile)
	})

	t.Run("stop", func(t *testing.T) {
		// A token every 20ms: the listing would take 20s upstream.
		up.SetDefault(fu.List, fu.PaceLines(20*time.Millisecond, fu.Forward(emu)))
		defer up.SetDefault(fu.List, fu.Forward(emu))
		// The flow asks, with the page still open after Stop, whether the
		// upstream listing ended: only cancelling it ends it that soon.
		probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			lists := slowLists(up.Requests())
			fmt.Fprintf(w, `{"requests":%d,"ended":%t}`, len(lists), len(lists) > 0 && lists[len(lists)-1].Done)
		}))
		defer probe.Close()
		run(t, "stop", opsKey, slowUser, slowTotal, "CONSOLE_PROBE="+probe.URL)
		time.Sleep(time.Second) // bounded: nothing may arrive in it
		if n := len(slowLists(up.Requests())); n != 1 {
			t.Errorf("%d upstream list requests of %s, want the one Stop cancelled", n, slowUser)
		}
	})

	t.Run("crud", func(t *testing.T) {
		run(t, "crud", opsKey, crudUser, 2)
		stream, err := api.List(ctx, &tokenv1.ListRequest{UserId: crudUser, Order: tokenv1.Order_ORDER_ASC})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			r, err := stream.Recv()
			if err != nil {
				break
			}
			tok := r.GetToken()
			meta, _ := json.Marshal(tok.GetMeta().AsMap())
			got = append(got, tok.GetName()+"|"+tok.GetDescription()+"|"+string(meta))
		}
		want := []string{"first||{}", "second||{}", `deploy bot v2|CI deploys to prod|{"env":"prod","team":"infra"}`}
		if !slices.Equal(got, want) {
			t.Errorf("upstream holds %q, want %q (temp revoked, deploy bot renamed)", got, want)
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		run(t, "keyboard", opsKey, manyUser, manyTotal, "CONSOLE_NAMED=alpha one")
	})

	t.Run("denied", func(t *testing.T) {
		creates := func() int { return len(requests(up.Requests(), fu.Create, manyUser)) }
		before := creates()
		out := run(t, "denied", viewerKey, manyUser, manyTotal)
		m := regexp.MustCompile(`(?m)^denied request id: (\S+)$`).FindSubmatch(out)
		if m == nil {
			t.Fatal("the flow printed no request id")
		}
		// The id the page showed is the one cbkgate logged the refusal under.
		var found bool
		for _, line := range strings.Split(g.Logs().String(), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "grpc call" && l["request_id"] == string(m[1]) &&
				l["code"] == "PermissionDenied" && l["caller"] == "key:viewer" {
				found = true
			}
		}
		if !found {
			t.Errorf("no PermissionDenied call line of key:viewer with request id %s", m[1])
		}
		if n := creates() - before; n != 0 {
			t.Errorf("the denied create reached upstream %d times", n)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		out := os.Getenv("CONSOLE_SCREENSHOT_OUT")
		if out == "" {
			out = filepath.Join(t.TempDir(), "console.png")
		}
		run(t, "screenshot", opsKey, shotUser, 4, "CONSOLE_SCREENSHOT="+out)
		if b, err := os.ReadFile(out); err != nil || !strings.HasPrefix(string(b), "\x89PNG") {
			t.Errorf("no PNG at %s: %v", out, err)
		}
	})
}

// slowLists are the upstream list requests of slowUser.
func slowLists(reqs []fu.Request) []fu.Request { return requests(reqs, fu.List, slowUser) }

// requests are the upstream requests of route for user.
func requests(reqs []fu.Request, route fu.Route, user string) []fu.Request {
	var out []fu.Request
	for _, r := range reqs {
		if r.Route == route && r.UserID == user {
			out = append(out, r)
		}
	}
	return out
}
