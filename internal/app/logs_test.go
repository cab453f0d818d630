package app_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// callLog tallies the "grpc call" lines a test expects, by method and code.
type callLog map[string]int

func (c callLog) add(method string, st *status.Status) {
	c[fmt.Sprintf("/%s/%s %s", tokenService, method, st.Code())]++
}

// secretsRun runs every RPC over c, expecting each to succeed (wantOK) or
// fail, tallies the call lines they should log into want, and returns the
// Create token values.
func secretsRun(t *testing.T, c caller, want callLog, wantOK bool) []string {
	t.Helper()
	var minted []string
	user := "logs-" + c.String()
	var st *status.Status
	check := func(method string) {
		t.Helper()
		if (st == nil) != wantOK {
			t.Fatalf("%v %s: %v, want OK=%v", c, method, st.Err(), wantOK)
		}
		want.add(method, st)
	}

	created, st := c.create(t, &tokenv1.CreateRequest{UserId: user, Name: "n", Meta: mustStruct(t, map[string]any{"k": "v"})})
	check("Create")
	id := "tok_missing"
	if created != nil {
		minted = append(minted, created.GetToken())
		id = created.GetId()
	}
	second, st := c.create(t, &tokenv1.CreateRequest{UserId: user})
	check("Create")
	if second != nil {
		minted = append(minted, second.GetToken())
	}
	_, st = c.list(t, &tokenv1.ListRequest{UserId: user, PageSize: 1})
	check("List")
	_, st = c.update(t, &tokenv1.UpdateRequest{UserId: user, TokenId: id, Name: ptr("m")})
	check("Update")
	_, st = c.delete(t, &tokenv1.DeleteRequest{UserId: user, TokenId: id})
	check("Delete")
	return minted
}

// checkLogs asserts that no forbidden value appears anywhere in the log,
// and that it has exactly the expected "grpc call" lines for TokenService.
func checkLogs(t *testing.T, s *server, forbidden map[string]string, want callLog) {
	t.Helper()
	all := s.Logs().String()
	for what, v := range forbidden {
		if v == "" {
			t.Fatalf("empty forbidden value for %s", what)
		}
		if strings.Contains(all, v) {
			t.Errorf("the log contains the %s", what)
		}
	}
	got := callLog{}
	for _, line := range s.Logs().JSON(t) {
		if line["msg"] != "grpc call" {
			continue
		}
		method, _ := line["method"].(string)
		code, _ := line["code"].(string)
		if method == "" || code == "" {
			t.Errorf("call line without method or code: %v", line)
			continue
		}
		for _, k := range []string{"duration_ms", "transport", "caller", "request_id"} {
			if _, ok := line[k]; !ok {
				t.Errorf("call line without %s: %v", k, line)
			}
		}
		if strings.HasPrefix(method, "/"+tokenService+"/") {
			got[method+" "+code]++
		}
	}
	if !maps.Equal(got, want) {
		union := map[string]bool{}
		for k := range got {
			union[k] = true
		}
		for k := range want {
			union[k] = true
		}
		keys := slices.Sorted(maps.Keys(union))
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "\n  %-60s got %d want %d", k, got[k], want[k])
		}
		t.Errorf("call lines differ from the calls made:%s", b.String())
	}
}

// TestNoSecretsInLogs: at debug level, after calls of every kind over both
// transports, in pass-through and in API-key mode, including refused ones,
// the log holds none of the upstream secret, the callers' Bearer values,
// the API keys, or the minted token values; and one call line per call.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()

	t.Run("pass-through", func(t *testing.T) {
		t.Parallel()
		upSecret := unique("cbk-passthrough-SECRET")
		wrongBearer := unique("cbk-wrong-bearer-SECRET")
		_, up := newEmulator(t, upSecret)
		s := startServer(t, up.URL)

		want := callLog{}
		var minted []string
		for _, c := range []caller{s.grpcCaller(bearer(upSecret)), s.httpCaller(bearer(upSecret))} {
			minted = append(minted, secretsRun(t, c, want, true)...)
		}
		// Refused upstream (401), over both transports: both reach gRPC.
		for _, c := range []caller{s.grpcCaller(bearer(wrongBearer)), s.httpCaller(bearer(wrongBearer))} {
			secretsRun(t, c, want, false)
		}
		if len(minted) != 4 {
			t.Fatalf("%d tokens minted, want 4", len(minted))
		}
		forbidden := map[string]string{
			"upstream secret (the callers' Bearer value)": upSecret,
			"wrong caller Bearer value":                   wrongBearer,
		}
		for i, tok := range minted {
			forbidden[fmt.Sprintf("minted token %d", i)] = tok
		}
		checkLogs(t, s, forbidden, want)
	})

	t.Run("api-keys", func(t *testing.T) {
		t.Parallel()
		held := unique("cbk-held-SECRET")
		apiKey := unique("cbkgate-apikey-SECRET")
		wrongKey := unique("cbkgate-wrongkey-SECRET")
		_, up := newEmulator(t, held)
		s := startServer(t, up.URL, gatetest.Held(held), gatetest.Args("--api-keys-file="+writeKeys(t, apiKey)))

		want := callLog{}
		var minted []string
		for _, c := range []caller{s.grpcCaller(bearer(apiKey)), s.httpCaller(bearer(apiKey))} {
			minted = append(minted, secretsRun(t, c, want, true)...)
		}
		// A wrong key over gRPC is refused by cbkgate and logged as such.
		secretsRun(t, s.grpcCaller(bearer(wrongKey)), want, false)
		// Over HTTP the auth middleware refuses it before any gRPC call, so
		// there is no call line to expect.
		secretsRun(t, s.httpCaller(bearer(wrongKey)), callLog{}, false)
		if len(minted) != 4 {
			t.Fatalf("%d tokens minted, want 4", len(minted))
		}
		forbidden := map[string]string{
			"held upstream secret": held,
			"API key":              apiKey,
			"wrong API key":        wrongKey,
		}
		for i, tok := range minted {
			forbidden[fmt.Sprintf("minted token %d", i)] = tok
		}
		checkLogs(t, s, forbidden, want)
	})
}
