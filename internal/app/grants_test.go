package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/config"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
)

// The keys of the grants tests, and the grants file of the README's
// example: a read-only key, a signup key limited to acme-*, an admin key.
const (
	readerKey = "reader-key-0123456789abcdef"
	signupKey = "signup-key-0123456789abcdef"
	adminKey  = "admin-key-0123456789abcdef"

	exampleGrants = `# who may do what, for which users
key:reader  list                 *
key:signup  create,list          acme-*
key:admin   *                    *
`
)

var grantsKeys = []string{"reader " + readerKey, "signup " + signupKey, "admin " + adminKey}

// writeGrants writes a grants file and returns its path.
func writeGrants(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grants")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantDenied checks that call is refused by the grants (PERMISSION_DENIED,
// ErrorInfo PERMISSION_DENIED in domain cbkgate with method and caller)
// and that it reached no upstream.
func wantDenied(t *testing.T, up *fu.Server, what, method, caller string, call func() *status.Status) {
	t.Helper()
	before := up.Count()
	st := call()
	if st.Code() != codes.PermissionDenied {
		t.Errorf("%s: %v %q, want PERMISSION_DENIED", what, st.Code(), st.Message())
		return
	}
	info := gatetest.ErrorInfo(st)
	if info.GetReason() != "PERMISSION_DENIED" || info.GetDomain() != "cbkgate" ||
		info.GetMetadata()["method"] != method || info.GetMetadata()["caller"] != caller {
		t.Errorf("%s: ErrorInfo %v, want PERMISSION_DENIED/cbkgate with method %s and caller %s", what, info, method, caller)
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("%s: %d upstream requests, want none", what, n)
	}
}

func wantOK(t *testing.T, what string, st *status.Status) {
	t.Helper()
	if st != nil && st.Code() != codes.OK {
		t.Errorf("%s: %v %q, want OK", what, st.Code(), st.Message())
	}
}

// TestGrantsEveryMethodEveryTransport: with the README's grants, each key
// may do what its line says and nothing else, for each method, over gRPC,
// the JSON gateway, Connect and gRPC-Web; a refusal reaches no upstream.
func TestGrantsEveryMethodEveryTransport(t *testing.T) {
	t.Parallel()
	const held = "held-secret-grants"
	_, up := newEmulator(t, held)
	s := startServer(t, up.URL, gatetest.Held(held),
		gatetest.Args("--api-keys-file="+writeKeys(t, grantsKeys...), "--grants-file="+writeGrants(t, exampleGrants)))

	transports := map[string]func(string) caller{
		"grpc":    func(a string) caller { return s.grpcCaller(a) },
		"http":    func(a string) caller { return s.httpCaller(a) },
		"connect": func(a string) caller { return s.connectCaller(a) },
		"grpcweb": func(a string) caller { return s.grpcWebCaller(a) },
	}
	for name, mk := range transports {
		reader, signup, admin := mk(bearer(readerKey)), mk(bearer(signupKey)), mk(bearer(adminKey))
		acme, other := "acme-"+name, "other-"+name
		created, st := admin.create(t, &tokenv1.CreateRequest{UserId: acme, Name: "by admin"})
		if st != nil {
			t.Fatalf("%s: admin create: %v", name, st.Err())
		}
		id := created.GetId()

		// The read-only key lists anyone's tokens and changes nothing.
		tokens, st := reader.list(t, &tokenv1.ListRequest{UserId: acme})
		wantOK(t, name+": reader list", st)
		if len(tokens) != 1 {
			t.Errorf("%s: reader listed %d tokens, want 1", name, len(tokens))
		}
		wantDenied(t, up, name+": reader create", "create", "key:reader", func() *status.Status {
			_, st := reader.create(t, &tokenv1.CreateRequest{UserId: acme})
			return st
		})
		wantDenied(t, up, name+": reader update", "update", "key:reader", func() *status.Status {
			_, st := reader.update(t, &tokenv1.UpdateRequest{UserId: acme, TokenId: id, Name: ptr("x")})
			return st
		})
		wantDenied(t, up, name+": reader delete", "delete", "key:reader", func() *status.Status {
			_, st := reader.delete(t, &tokenv1.DeleteRequest{UserId: acme, TokenId: id})
			return st
		})

		// The signup key creates and lists for acme-* only.
		_, st = signup.create(t, &tokenv1.CreateRequest{UserId: acme, Name: "by signup"})
		wantOK(t, name+": signup create for acme-*", st)
		_, st = signup.list(t, &tokenv1.ListRequest{UserId: acme})
		wantOK(t, name+": signup list of acme-*", st)
		wantDenied(t, up, name+": signup create for another user", "create", "key:signup", func() *status.Status {
			_, st := signup.create(t, &tokenv1.CreateRequest{UserId: other})
			return st
		})
		wantDenied(t, up, name+": signup list of another user", "list", "key:signup", func() *status.Status {
			_, st := signup.list(t, &tokenv1.ListRequest{UserId: other})
			return st
		})
		wantDenied(t, up, name+": signup update", "update", "key:signup", func() *status.Status {
			_, st := signup.update(t, &tokenv1.UpdateRequest{UserId: acme, TokenId: id, Name: ptr("x")})
			return st
		})
		wantDenied(t, up, name+": signup delete", "delete", "key:signup", func() *status.Status {
			_, st := signup.delete(t, &tokenv1.DeleteRequest{UserId: acme, TokenId: id})
			return st
		})

		// The admin key does everything, for everyone.
		_, st = admin.update(t, &tokenv1.UpdateRequest{UserId: acme, TokenId: id, Name: ptr("renamed")})
		wantOK(t, name+": admin update", st)
		_, st = admin.delete(t, &tokenv1.DeleteRequest{UserId: acme, TokenId: id})
		wantOK(t, name+": admin delete", st)
		_, st = admin.list(t, &tokenv1.ListRequest{UserId: other})
		wantOK(t, name+": admin list", st)
	}

	// Over HTTP a refusal is a 403 with the status as JSON; an unknown key
	// is still a 401, and over gRPC UNAUTHENTICATED.
	h := s.httpCaller(bearer(readerKey))
	resp, b := h.do(t, http.MethodPost, tokensPath("acme-1"), []byte(`{"name":"n"}`))
	if resp.StatusCode != http.StatusForbidden || gatetest.ErrorInfo(gatetest.Status(t, b)).GetReason() != "PERMISSION_DENIED" {
		t.Errorf("reader create over HTTP: %d %s, want 403 PERMISSION_DENIED", resp.StatusCode, b)
	}
	for _, c := range []caller{s.grpcCaller(bearer("unknown-key-0123456789")), s.httpCaller(bearer("unknown-key-0123456789"))} {
		_, st := c.create(t, &tokenv1.CreateRequest{UserId: "acme-1"})
		wantCode(t, "unknown key over "+c.String(), st, codes.Unauthenticated)
	}
}

// TestGrantsSSE: List as Server-Sent Events is held to the grants too.
func TestGrantsSSE(t *testing.T) {
	t.Parallel()
	const held = "held-secret-grants-sse"
	_, up := newEmulator(t, held)
	s := startServer(t, up.URL, gatetest.Held(held),
		gatetest.Args("--api-keys-file="+writeKeys(t, grantsKeys...), "--grants-file="+writeGrants(t, exampleGrants)))
	_, st := s.sseCaller(bearer(signupKey)).list(t, &tokenv1.ListRequest{UserId: "acme-sse"})
	wantOK(t, "signup list of acme-* as SSE", st)
	before := up.Count()
	a := s.sseCaller(bearer(signupKey)).listRaw(t, &tokenv1.ListRequest{UserId: "bob"})
	if a.httpStatus != http.StatusForbidden || a.err.Code() != codes.PermissionDenied || len(a.results) != 0 {
		t.Errorf("signup list of bob as SSE: HTTP %d, %v, %d tokens; want 403 PERMISSION_DENIED and none", a.httpStatus, a.err.Code(), len(a.results))
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("refused SSE list: %d upstream requests, want none", n)
	}
}

// TestGrantsAuditAndMetric: a refusal writes the audit line of a Create,
// Update or Delete (code PermissionDenied, the caller named) and counts in
// cbkgate_permission_denied_total by method, whatever the transport;
// ChatBotKit's own 403s do not count there.
func TestGrantsAuditAndMetric(t *testing.T) {
	t.Parallel()
	const held = "held-secret-grants-audit"
	_, up := newEmulator(t, held)
	s := startServer(t, up.URL, gatetest.Held(held),
		gatetest.Args("--api-keys-file="+writeKeys(t, grantsKeys...), "--grants-file="+writeGrants(t, exampleGrants)))
	g, h, c := s.grpcCaller(bearer(readerKey)), s.httpCaller(bearer(readerKey)), s.connectCaller(bearer(signupKey))

	_, st := g.create(t, &tokenv1.CreateRequest{UserId: "audited-1"})
	wantCode(t, "grpc create", st, codes.PermissionDenied)
	_, st = h.delete(t, &tokenv1.DeleteRequest{UserId: "audited-2", TokenId: "tok_2"})
	wantCode(t, "http delete", st, codes.PermissionDenied)
	_, st = c.update(t, &tokenv1.UpdateRequest{UserId: "acme-3", TokenId: "tok_3", Name: ptr("n")})
	wantCode(t, "connect update", st, codes.PermissionDenied)
	_, st = c.list(t, &tokenv1.ListRequest{UserId: "audited-4"})
	wantCode(t, "connect list", st, codes.PermissionDenied)
	_, st = h.list(t, &tokenv1.ListRequest{UserId: "audited-5"})
	wantOK(t, "http list", st)
	if n := up.Count(); n != 1 {
		t.Errorf("%d upstream requests, want the 1 allowed list's", n)
	}

	type audit struct{ action, user, token, caller string }
	want := []audit{
		{"token.create", "audited-1", "", "key:reader"},
		{"token.delete", "audited-2", "tok_2", "key:reader"},
		{"token.update", "acme-3", "tok_3", "key:signup"},
	}
	var got []audit
	for _, l := range s.Logs().JSON(t) {
		if l["msg"] != "audit" {
			continue
		}
		if l["code"] != codes.PermissionDenied.String() {
			t.Errorf("audit line with code %v, want PermissionDenied: %v", l["code"], l)
		}
		str := func(k string) string { v, _ := l[k].(string); return v }
		got = append(got, audit{str("action"), str("user_id"), str("token_id"), str("caller")})
	}
	if len(got) != len(want) {
		t.Fatalf("audit lines %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("audit line %d: %v, want %v", i, got[i], want[i])
		}
	}

	samples := nonZero(scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics"), "cbkgate_permission_denied_total")
	compareSamples(t, "cbkgate_permission_denied_total", samples, map[string]float64{
		`cbkgate_permission_denied_total{method="create"}`: 1,
		`cbkgate_permission_denied_total{method="delete"}`: 1,
		`cbkgate_permission_denied_total{method="update"}`: 1,
		`cbkgate_permission_denied_total{method="list"}`:   1,
	})
	all := scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics")
	for k := range all {
		if strings.Contains(k, "audited-") || strings.Contains(k, "key:") {
			t.Errorf("a metric label holds a user id or caller: %s", k)
		}
	}
}

// TestGrantsClientCertificate: a caller with a client certificate is
// granted by its CN (a space in it written %20).
func TestGrantsClientCertificate(t *testing.T) {
	t.Parallel()
	const held = "held-secret-grants-mtls"
	_, up := newEmulator(t, held)
	p := newPKI(t) // the client certificate's CN is "cbkgate test client"
	s := startServer(t, up.URL, gatetest.Held(held),
		gatetest.Args("--tls-cert="+p.certFile, "--tls-key="+p.keyFile, "--tls-client-ca="+p.caFile,
			"--grants-file="+writeGrants(t, "cert:cbkgate%20test%20client create,list tenant-*\n")),
		gatetest.ClientTLS(p.clientTLS()),
	)
	g := &grpcCaller{c: tokenv1.NewTokenServiceClient(s.Dial(&p.client))}
	h := &httpCaller{base: s.URL(), client: s.HTTPClient(&p.client)}
	for _, c := range []caller{g, h} {
		_, st := c.create(t, &tokenv1.CreateRequest{UserId: "tenant-" + c.String()})
		wantOK(t, c.String()+": create for tenant-*", st)
		wantDenied(t, up, c.String()+": create for another user", "create", "cert:cbkgate test client", func() *status.Status {
			_, st := c.create(t, &tokenv1.CreateRequest{UserId: "bob"})
			return st
		})
		wantDenied(t, up, c.String()+": delete", "delete", "cert:cbkgate test client", func() *status.Status {
			_, st := c.delete(t, &tokenv1.DeleteRequest{UserId: "tenant-1", TokenId: "t"})
			return st
		})
	}
}

// TestGrantsReload: the grants file, mounted as a Kubernetes Secret with
// the keys, is re-read on SIGHUP (App.Reload) and within 10 s of a swap on
// disk; a broken file keeps the grants in force and is logged at error; a
// List admitted before a reload finishes.
func TestGrantsReload(t *testing.T) {
	t.Parallel()
	const held = "held-secret-grants-reload"
	emu, up := newEmulator(t, held)
	keys := strings.Join(grantsKeys, "\n") + "\n"
	files := func(grants string) map[string]string { return map[string]string{"api-keys": keys, "grants": grants} }
	dir := k8ssecret.New(t, files("key:reader list *\n"))
	s := startServer(t, up.URL, gatetest.Held(held),
		gatetest.Args("--api-keys-file="+dir.Path("api-keys"), "--grants-file="+dir.Path("grants")))
	signup := s.grpcCaller(bearer(signupKey))
	create := func(user string) *status.Status {
		_, st := signup.create(t, &tokenv1.CreateRequest{UserId: user})
		return st
	}
	wantDenied(t, up, "before any reload", "create", "key:signup", func() *status.Status { return create("acme-1") })

	// SIGHUP.
	dir.Update(t, files("key:signup create acme-*\n"))
	if err := s.App().Reload(); err != nil {
		t.Fatal(err)
	}
	wantOK(t, "after SIGHUP", create("acme-1"))
	wantDenied(t, up, "after SIGHUP, another user", "create", "key:signup", func() *status.Status { return create("bob") })

	// A broken file: nothing changes, an error line says why.
	dir.Update(t, files("key:signup create *\nkey:signup creat bob\n"))
	if err := s.App().Reload(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("reload of a broken grants file: %v", err)
	}
	wantOK(t, "after a failed reload", create("acme-2"))
	wantDenied(t, up, "after a failed reload, another user", "create", "key:signup", func() *status.Status { return create("bob") })
	if !strings.Contains(s.Logs().String(), `"level":"ERROR","msg":"credentials reload failed; the previous credentials stay in force"`) {
		t.Error("no error line for the failed reload")
	}

	// A swap on disk, no signal: in force within 10 s.
	dir.Update(t, files("key:signup create bob\n"))
	deadline := time.Now().Add(10 * time.Second)
	for create("bob") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the swapped grants file is not in force 10 s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantDenied(t, up, "after the swap, the old grant", "create", "key:signup", func() *status.Status { return create("acme-3") })

	// A List admitted before a reload that takes its grant away finishes;
	// the next one is refused.
	emu.Seed("acme-long", 3000)
	dir.Update(t, files("key:signup list acme-*\n"))
	if err := s.App().Reload(); err != nil {
		t.Fatal(err)
	}
	stream, err := tokenv1.NewTokenServiceClient(s.Dial(nil)).List(signup.ctx(t), &tokenv1.ListRequest{UserId: "acme-long"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first token: %v", err)
	}
	dir.Update(t, files("key:signup create bob\n"))
	if err := s.App().Reload(); err != nil {
		t.Fatal(err)
	}
	rest, err := gatetest.Recv(stream)
	if err != nil || len(rest) != 2999 {
		t.Errorf("the List admitted before the reload: %d more tokens, %v; want 2999 and OK", len(rest), err)
	}
	wantDenied(t, up, "a List after the reload", "list", "key:signup", func() *status.Status {
		_, st := signup.list(t, &tokenv1.ListRequest{UserId: "acme-long"})
		return st
	})
}

// TestGrantsStart: a bad grants file stops the start naming the file and
// the line, and pass-through refuses --grants-file; without one, the start
// log says once that every authenticated caller may do everything.
func TestGrantsStart(t *testing.T) {
	t.Parallel()
	bad := writeGrants(t, "key:admin * *\n# fine so far\nkey:x list,craete u1\n")
	err := startError(t, []string{"--allow-unauthenticated", "--grants-file=" + bad}, map[string]string{"CHATBOTKIT_API_SECRET": "s"})
	if err == nil || !strings.Contains(err.Error(), "--grants-file: "+bad+" line 3: METHODS") || strings.Contains(err.Error(), "key:x") {
		t.Errorf("bad grants file: %v", err)
	}
	err = startError(t, []string{"--grants-file=" + writeGrants(t, "key:a * *\n")}, nil)
	if err == nil || !strings.Contains(err.Error(), "--grants-file needs a held secret") {
		t.Errorf("grants in pass-through mode: %v", err)
	}

	_, up := newEmulator(t, "held")
	s := startServer(t, up.URL, gatetest.Held("held"))
	if n := strings.Count(s.Logs().String(), "every authenticated caller may do everything"); n != 1 {
		t.Errorf("the start log says %d times that every caller may do everything, want once", n)
	}
}

// startError runs config.Load and app.New on loopback ports with args and
// env and returns New's error (nil: it would have started).
func startError(t *testing.T, args []string, env map[string]string) error {
	t.Helper()
	args = append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr="}, args...)
	cfg, err := config.Load(args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	a, err := app.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.Run(ctx) // stops at once: closes what New opened
		return nil
	}
	var ce *app.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("app.New: %v is not a configuration error", err)
	}
	return err
}
