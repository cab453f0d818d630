package auth_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
	"github.com/cbkgate/cbkgate/internal/testlog"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// reloads records what OnReload was told.
type reloads struct {
	mu  sync.Mutex
	got []string
	ch  chan string
}

func newReloads() *reloads { return &reloads{ch: make(chan string, 16)} }

// The outcomes as record writes them down.
const (
	reloadSuccess = "success"
	reloadFailure = "failure"
)

func (r *reloads) record(err error) {
	result := reloadSuccess
	if err != nil {
		result = reloadFailure
	}
	r.mu.Lock()
	r.got = append(r.got, result)
	r.mu.Unlock()
	r.ch <- result
}

// next waits for the next reload outcome, bounded.
func (r *reloads) next(t *testing.T) string {
	t.Helper()
	select {
	case res := <-r.ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s of the change")
		return ""
	}
}

// version is one generation of the mounted credentials.
type version struct {
	keys, secret string
	cert         *testpki.Cert
}

func (v version) files(t *testing.T) map[string]string {
	return map[string]string{
		"keys.txt":   v.keys,
		"cbk-secret": v.secret,
		"tls.crt":    string(v.cert.CertPEM()),
		"tls.key":    string(v.cert.KeyPEM(t)),
	}
}

// TestReloadKubernetesSwap: the keys file, the secret file and the TLS key
// pair mounted as a Kubernetes Secret are swapped underneath (the "..data"
// symlink); within the watch interval new calls and handshakes use the new
// values. A version that fails to load changes nothing, is logged at error
// and reported; the next good version is taken.
func TestReloadKubernetesSwap(t *testing.T) {
	ca := testpki.NewCA(t, "reload CA")
	v1 := version{keys: "old old-key-0001\nstable stable-key-0002\n", secret: "secret-v1\n", cert: ca.Issue(t, "cert-v1", x509.ExtKeyUsageServerAuth)}
	v2 := version{keys: "stable stable-key-0002\nnew new-key-0003\n", secret: "secret-v2\n", cert: ca.Issue(t, "cert-v2", x509.ExtKeyUsageServerAuth)}
	dir := k8ssecret.New(t, v1.files(t))

	logs := &testlog.Buffer{}
	rl := newReloads()
	a, err := auth.Load(auth.Config{
		SecretFile:  dir.Path("cbk-secret"),
		KeysFile:    dir.Path("keys.txt"),
		TLSCertFile: dir.Path("tls.crt"), TLSKeyFile: dir.Path("tls.key"),
		Log:      slog.New(slog.NewJSONHandler(logs, nil)),
		OnReload: rl.record,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { a.Watch(ctx, 20*time.Millisecond); close(watchDone) }()
	defer func() { cancel(); <-watchDone }()

	addr, ts := startGRPC(t, a, nil)
	c := dial(t, addr, nil)
	// expect checks, for each key, whether a Create is let in, as whom and
	// with which secret, and which certificate a new handshake gets.
	expect := func(t *testing.T, v version, admitted map[string]string, refused ...string) {
		t.Helper()
		for key, caller := range admitted {
			before := len(ts.seen())
			_, err := c.tokens().Create(callCtx(t, "Bearer "+key), &tokenv1.CreateRequest{UserId: "u"})
			if err != nil {
				t.Fatalf("key %s: %v, want admitted", key, err)
			}
			got := ts.seen()[before]
			if got.caller != caller || got.secret.Reveal()+"\n" != v.secret {
				t.Errorf("key %s: caller %q secret %q, want %q %q", key, got.caller, got.secret.Reveal(), caller, strings.TrimSpace(v.secret))
			}
		}
		for _, key := range refused {
			_, err := c.tokens().Create(callCtx(t, "Bearer "+key), &tokenv1.CreateRequest{UserId: "u"})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("key %s: %v, want UNAUTHENTICATED", key, err)
			}
		}
		leaf, err := serverHandshake(t, a.ServerTLS(), ca.Pool(), nil)
		if err != nil || leaf == nil || leaf.Subject.CommonName != v.cert.X509.Subject.CommonName {
			t.Errorf("handshake: %v, certificate %v; want %s", err, leaf.Subject, v.cert.X509.Subject.CommonName)
		}
	}

	expect(t, v1, map[string]string{"old-key-0001": "key:old", "stable-key-0002": "key:stable"}, "new-key-0003")

	dir.Update(t, v2.files(t))
	if res := rl.next(t); res != reloadSuccess {
		t.Fatalf("reload after the swap: %s; log:\n%s", res, logs.String())
	}
	expect(t, v2, map[string]string{"new-key-0003": "key:new", "stable-key-0002": "key:stable"}, "old-key-0001")

	// A broken version: a bad keys line next to a good new secret. Nothing
	// of it is taken, not even the secret.
	broken := v2
	broken.keys = "stable stable-key-0002\nthree words here\n"
	broken.secret = "secret-v3\n"
	dir.Update(t, broken.files(t))
	if res := rl.next(t); res != reloadFailure {
		t.Fatalf("reload of a broken keys file: %s", res)
	}
	expect(t, v2, map[string]string{"new-key-0003": "key:new", "stable-key-0002": "key:stable"}, "old-key-0001")
	// SIGHUP's path reports the same failure.
	if err := a.Reload("SIGHUP"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Reload of the broken version: %v, want the line at fault", err)
	}
	if res := rl.next(t); res != reloadFailure {
		t.Fatalf("SIGHUP reload of a broken keys file: %s", res)
	}
	// The watcher does not retry a failed version on every look.
	select {
	case res := <-rl.ch:
		t.Fatalf("reload %s without a change", res)
	case <-time.After(200 * time.Millisecond):
	}

	// A keys file emptied of keys is a failure too, never "no keys".
	empty := v2
	empty.keys = "# nothing here\n"
	dir.Update(t, empty.files(t))
	if res := rl.next(t); res != reloadFailure {
		t.Fatalf("reload of an empty keys file: %s", res)
	}
	expect(t, v2, map[string]string{"stable-key-0002": "key:stable"}, "old-key-0001")

	v3 := version{keys: "stable stable-key-0002\n", secret: "secret-v3\n", cert: ca.Issue(t, "cert-v3", x509.ExtKeyUsageServerAuth)}
	dir.Update(t, v3.files(t))
	if res := rl.next(t); res != reloadSuccess {
		t.Fatalf("reload of a good version after bad ones: %s; log:\n%s", res, logs.String())
	}
	expect(t, v3, map[string]string{"stable-key-0002": "key:stable"}, "new-key-0003", "old-key-0001")

	out := logs.String()
	if n := strings.Count(out, `"level":"ERROR","msg":"credentials reload failed; the previous credentials stay in force"`); n != 3 {
		t.Errorf("%d error lines for 3 failed reloads:\n%s", n, out)
	}
	if n := strings.Count(out, `"msg":"credentials reloaded"`); n != 2 {
		t.Errorf("%d reload lines for 2 good reloads:\n%s", n, out)
	}
	for _, s := range []string{"old-key-0001", "stable-key-0002", "new-key-0003", "secret-v", "three words"} {
		if strings.Contains(out, s) {
			t.Errorf("the log carries %q:\n%s", s, out)
		}
	}
}

// TestReloadKeepsCallsInFlight: a call that started before a reload ends
// with the secret and identity it started with; the next call gets the new
// ones.
func TestReloadKeepsCallsInFlight(t *testing.T) {
	dir := k8ssecret.New(t, map[string]string{"keys.txt": "alice alice-key-1\n", "cbk-secret": "secret-before"})
	a, err := auth.Load(auth.Config{SecretFile: dir.Path("cbk-secret"), KeysFile: dir.Path("keys.txt")})
	if err != nil {
		t.Fatal(err)
	}
	intercept := a.UnaryInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/cbkgate.token.v1.TokenService/Create"}
	call := func(key string, handler grpc.UnaryHandler) error {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key))
		_, err := intercept(ctx, nil, info, handler)
		return err
	}

	started, release := make(chan struct{}), make(chan struct{})
	type seen struct{ secret, caller string }
	inFlight := make(chan seen, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- call("alice-key-1", func(ctx context.Context, _ any) (any, error) {
			close(started)
			<-release
			inFlight <- seen{auth.UpstreamSecret(ctx).Reveal(), auth.Caller(ctx)}
			return nil, nil
		})
	}()
	<-started
	dir.Update(t, map[string]string{"keys.txt": "alice2 alice-key-1\n", "cbk-secret": "secret-after"})
	if err := a.Reload("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	var next seen
	if err := call("alice-key-1", func(ctx context.Context, _ any) (any, error) {
		next = seen{auth.UpstreamSecret(ctx).Reveal(), auth.Caller(ctx)}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := <-inFlight; got != (seen{"secret-before", "key:alice"}) {
		t.Errorf("call in flight ended with %+v, want what it started with", got)
	}
	if next != (seen{"secret-after", "key:alice2"}) {
		t.Errorf("call after the reload got %+v, want the new secret and name", next)
	}
	if err := call("wrong", func(context.Context, any) (any, error) { return nil, errors.New("reached") }); status.Code(err) != codes.Unauthenticated {
		t.Errorf("wrong key after reload: %v", err)
	}
}
