//go:build browser

package browsertest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
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
	manyUser  = "many" // 1,200 seeded tokens and three named ones
	manyTotal = 1203
	slowUser  = "slow" // 1,000 seeded tokens, listed slowly
	slowTotal = 1000
	crudUser  = "crud" // "first" and "second"
	shotUser  = "acme-support"
	hostile   = `<img src=x onerror=alert(1)>`
	opsKey    = "ops-key-0123456789"
)

// TestBrowserConsole drives the token console in headless Chromium by its
// accessible names, against a real cbkgate (--console, API keys) in front
// of the emulator: 1,203 tokens streamed in with a live en-US count and
// searched by name, Stop cancelling the listing upstream, create with the
// secret shown once (gone after a reload), edit, revoke behind a modal
// confirmation, and listing with the keyboard alone. Every flow also
// checks: no request to another origin, no console error, no CSP
// violation, nothing stored. The screenshot flow writes the README's
// picture to $CONSOLE_SCREENSHOT_OUT when set (docs/console.png).
func TestBrowserConsole(t *testing.T) {
	const secret = "console-browser-secret"
	emu := emulator.New(emulator.Options{Secret: secret})
	up := fu.Start(t)
	up.SetDefaultAll(fu.Forward(emu))
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("ops "+opsKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatetest.Start(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys, "--console"))

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
	emu.Seed(slowUser, slowTotal)
	create(crudUser, "first", "", nil)
	create(crudUser, "second", "", nil)
	for _, n := range []string{"billing sync", "mobile app", "nightly export", "partner webhook"} {
		create(shotUser, n, "", map[string]any{"env": "prod"})
	}

	run := func(flow, key, user string, total int, extra ...string) []byte {
		t.Helper()
		env := append([]string{
			"CONSOLE_URL=" + g.URL() + "/console/", "CONSOLE_KEY=" + key, "CONSOLE_USER=" + user,
			"CONSOLE_TOTAL=" + strconv.Itoa(total),
		}, extra...)
		return browsertest.Script(t, "console "+flow, 2*time.Minute, env, "console.mjs", flow, "console "+flow)
	}

	t.Run("list", func(t *testing.T) {
		// Paced pages (13 of 100), so the count is seen moving.
		up.SetDefault(fu.List, fu.Slow(100*time.Millisecond, fu.Forward(emu)))
		defer up.SetDefault(fu.List, fu.Forward(emu))
		run("list", opsKey, manyUser, manyTotal, "CONSOLE_HOSTILE="+hostile)
	})

	t.Run("stop", func(t *testing.T) {
		up.SetDefault(fu.List, fu.Slow(300*time.Millisecond, fu.Forward(emu)))
		defer up.SetDefault(fu.List, fu.Forward(emu))
		run("stop", opsKey, slowUser, slowTotal)
		// The page's Stop aborted its fetch; cbkgate cancelled the page it
		// was fetching, and asked for no more.
		if !up.Wait(10*time.Second, func(reqs []fu.Request) bool { return fu.Cancelled(slowLists(reqs)) >= 1 }) {
			t.Errorf("no upstream list request of %s was cancelled after Stop", slowUser)
		}
		before := len(slowLists(up.Requests()))
		time.Sleep(time.Second) // bounded: nothing may arrive in it
		if after := len(slowLists(up.Requests())); after != before || after >= slowTotal/100 {
			t.Errorf("%d then %d upstream list requests of %s after Stop, want no more and fewer than %d", before, after, slowUser, slowTotal/100)
		}
	})

	t.Run("crud", func(t *testing.T) {
		run("crud", opsKey, crudUser, 2)
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
		run("keyboard", opsKey, manyUser, manyTotal, "CONSOLE_NAMED=alpha one")
	})

	t.Run("screenshot", func(t *testing.T) {
		out := os.Getenv("CONSOLE_SCREENSHOT_OUT")
		if out == "" {
			out = filepath.Join(t.TempDir(), "console.png")
		}
		run("screenshot", opsKey, shotUser, 4, "CONSOLE_SCREENSHOT="+out)
		if b, err := os.ReadFile(out); err != nil || !strings.HasPrefix(string(b), "\x89PNG") {
			t.Errorf("no PNG at %s: %v", out, err)
		}
	})
}

// slowLists are the upstream list requests of slowUser.
func slowLists(reqs []fu.Request) []fu.Request {
	var out []fu.Request
	for _, r := range reqs {
		if r.Route == fu.List && r.UserID == slowUser {
			out = append(out, r)
		}
	}
	return out
}
