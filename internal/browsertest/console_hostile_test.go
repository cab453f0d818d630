//go:build browser

package browsertest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/browsertest"
	"github.com/cbkgate/cbkgate/internal/emulator"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// TestBrowserConsoleHostileTokens: the console against tokens whose names
// and descriptions a careless or hostile writer chose (found by a red-team
// pass). Editing only a token's name rewrote its description without its
// line breaks; a right-to-left override in a name showed the token's id
// backwards in the revoke confirmation, so a fake id could stand in its
// place; one 100 KB name pushed every row's buttons a million pixels off
// the screen.
func TestBrowserConsoleHostileTokens(t *testing.T) {
	const secret, key = "console-hostile-secret", "ops-key-hostile-0123456789"
	emu := emulator.New(emulator.Options{Secret: secret})
	up := fu.Start(t)
	up.SetDefaultAll(fu.Forward(emu))
	dir := t.TempDir()
	keys, grants := filepath.Join(dir, "keys"), filepath.Join(dir, "grants")
	if err := os.WriteFile(keys, []byte("ops "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grants, []byte("key:ops * *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatetest.Start(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys, "--grants-file="+grants, "--console"))
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+key)
	for _, tok := range []struct{ user, name, description string }{
		{"lines", "multi\nline name", "line one\nline two\n\tindented"},
		{"bidi", "safe \u202e1_zyx_kot", "rtl spoof"},
		{"long", strings.Repeat("A", 100_000), "long"},
		{"long", "short", "y"},
	} {
		if _, err := g.Client().Create(ctx, &tokenv1.CreateRequest{UserId: tok.user, Name: tok.name, Description: tok.description}); err != nil {
			t.Fatalf("create for %s: %v", tok.user, err)
		}
	}
	for _, c := range []struct{ flow, user string }{{"edit", "lines"}, {"bidi", "bidi"}, {"long", "long"}} {
		t.Run(c.flow, func(t *testing.T) {
			env := []string{"CONSOLE_URL=" + g.URL() + "/console/", "CONSOLE_KEY=" + key, "PROBE_USER=" + c.user}
			browsertest.Script(t, "console "+c.flow, 2*time.Minute, env, "console_hostile.mjs", c.flow, "console "+c.flow)
		})
	}
}
