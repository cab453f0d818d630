package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// callLines returns the "grpc call" log lines of TokenService methods.
func callLines(t *testing.T, s *server) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range s.Logs().JSON(t) {
		if m, _ := l["method"].(string); l["msg"] == "grpc call" && len(m) > 26 && m[:26] == "/cbkgate.token.v1.TokenSer" {
			out = append(out, l)
		}
	}
	return out
}

// TestCallerIdentity: the caller's identity is in the call log line over
// both transports (across the gateway's in-process hop for HTTP), and no
// client can claim another identity through the metadata the gateway uses
// to hand it over: not over HTTP (a Grpc-Metadata- header), not over gRPC.
func TestCallerIdentity(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-identity"
	_, up := newEmulator(t, secret)
	keys := writeKeys(t, "alice key-alice-0123456789", "bob sha256:"+hexSHA("key-bob-0123456789"))
	s := startServer(t, up.URL, gatetest.Held(secret), gatetest.Args("--api-keys-file="+keys))

	wantCallers := func(what string, from int, want string) {
		t.Helper()
		lines := callLines(t, s)[from:]
		if len(lines) < 4 {
			t.Fatalf("%s: %d call lines, want one per call", what, len(lines))
		}
		for _, l := range lines {
			if l["caller"] != want {
				t.Errorf("%s: call line %v: caller %v, want %s", what, l, l["caller"], want)
			}
		}
	}
	wantAll(t, "alice over gRPC", everyRPC(t, s.grpcCaller(bearer("key-alice-0123456789"))), codes.OK, "")
	wantCallers("alice over gRPC", 0, "key:alice")
	before := len(callLines(t, s))
	wantAll(t, "bob over HTTP", everyRPC(t, s.httpCaller(bearer("key-bob-0123456789"))), codes.OK, "")
	wantCallers("bob over HTTP", before, "key:bob")
	// Connect and gRPC-Web reach gRPC through the same in-process hop.
	for _, c := range []caller{s.connectCaller(bearer("key-alice-0123456789")), s.grpcWebCaller(bearer("key-bob-0123456789"))} {
		before = len(callLines(t, s))
		wantAll(t, c.String(), everyRPC(t, c), codes.OK, "")
		wantCallers(c.String(), before, map[string]string{"connect": "key:alice", "grpcweb": "key:bob"}[c.String()])
	}

	// Spoofing: alice's key plus a claim to be someone else.
	before = len(callLines(t, s))
	spoofHTTP := s.httpCaller(bearer("key-alice-0123456789"))
	spoofHTTP.header = http.Header{"Grpc-Metadata-Cbkgate-Internal-Caller": {"key:admin"}}
	wantAll(t, "alice over HTTP claiming key:admin", everyRPC(t, spoofHTTP), codes.OK, "")
	spoofGRPC := s.grpcCaller(bearer("key-alice-0123456789"))
	spoofCtx := func(t *testing.T) context.Context {
		return metadata.AppendToOutgoingContext(spoofGRPC.ctx(t), auth.GatewayCallerKey, "key:admin")
	}
	if _, err := spoofGRPC.c.Create(spoofCtx(t), &tokenv1.CreateRequest{UserId: "u", Name: "n"}); err != nil {
		t.Errorf("alice over gRPC claiming key:admin: %v", err)
	}
	// And over Connect, in the header the in-process hop carries it in.
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, s.URL()+"/cbkgate.token.v1.TokenService/Create",
		bytes.NewReader([]byte(`{"user_id":"u","name":"n"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Authorization", bearer("key-alice-0123456789"))
	req.Header.Set(auth.GatewayCallerKey, "key:admin")
	req.Header.Set("Grpc-Metadata-"+auth.GatewayCallerKey, "key:admin")
	resp, err := s.HTTPClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("alice over Connect claiming key:admin: HTTP %d", resp.StatusCode)
	}
	spoofed := callLines(t, s)[before:]
	if len(spoofed) < 6 {
		t.Errorf("%d call lines for the spoofing calls, want 6", len(spoofed))
	}
	for _, l := range spoofed {
		if l["caller"] != "key:alice" {
			t.Errorf("spoofed call logged as %v, want key:alice: %v", l["caller"], l)
		}
	}

	// A claim with no key at all gets nowhere, on either transport.
	upBefore := up.Count()
	noKey := s.grpcCaller("")
	if _, err := noKey.c.Create(metadata.AppendToOutgoingContext(noKey.ctx(t), auth.GatewayCallerKey, "key:admin"),
		&tokenv1.CreateRequest{UserId: "u"}); codeOf(err) != codes.Unauthenticated {
		t.Errorf("gRPC with only a claimed identity: %v, want UNAUTHENTICATED", err)
	}
	claimOnly := s.httpCaller("")
	claimOnly.header = http.Header{"Grpc-Metadata-Cbkgate-Internal-Caller": {"key:admin"}}
	wantAll(t, "HTTP with only a claimed identity", everyRPC(t, claimOnly), codes.Unauthenticated, "")
	if n := up.Count() - upBefore; n != 0 {
		t.Errorf("%d upstream requests for calls with only a claimed identity", n)
	}
}

// TestCallerIdentityPassThrough: a pass-through caller is named by its
// bearer's fingerprint, never the bearer, over both transports.
func TestCallerIdentityPassThrough(t *testing.T) {
	t.Parallel()
	const secret = "emu-secret-identity"
	_, up := newEmulator(t, secret)
	s := startServer(t, up.URL)
	wantAll(t, "grpc", everyRPC(t, s.grpcCaller(bearer(secret))), codes.OK, "")
	wantAll(t, "http", everyRPC(t, s.httpCaller(bearer(secret))), codes.OK, "")
	want := "bearer:" + hexSHA(secret)[:16]
	lines := callLines(t, s)
	if len(lines) < 8 {
		t.Fatalf("%d call lines, want 8", len(lines))
	}
	for _, l := range lines {
		if l["caller"] != want {
			t.Errorf("call line %v: caller %v, want %s", l, l["caller"], want)
		}
	}
	if bytes.Contains([]byte(s.Logs().String()), []byte(secret)) {
		t.Error("the log carries the bearer")
	}
}

// TestCallerIdentityBearersSharingHEX8: two pass-through bearers whose
// SHA-256 share their first 8 hex digits (found by trying ~58,000 values)
// are two callers: two identities in the call lines, and two rate buckets,
// so the first using up its burst leaves the second's calls alone.
func TestCallerIdentityBearersSharingHEX8(t *testing.T) {
	t.Parallel()
	const one, two = "cbk-secret-39124", "cbk-secret-57699"
	if hexSHA(one)[:8] != hexSHA(two)[:8] {
		t.Fatal("the two bearers no longer share their first 8 hex digits")
	}
	up := fu.Start(t) // answers every create, whatever the bearer
	s := startServer(t, up.URL, gatetest.Args("--caller-rate=1"))
	a, b := s.grpcCaller(bearer(one)), s.grpcCaller(bearer(two))
	// --caller-rate=1 allows a burst of 2: the third create of one is over it.
	for i := range 3 {
		_, st := a.create(t, &tokenv1.CreateRequest{UserId: "u", Name: "n"})
		if want := map[bool]codes.Code{true: codes.ResourceExhausted, false: codes.OK}[i == 2]; st.Code() != want {
			t.Fatalf("create %d of the first bearer: %v, want %v", i+1, st.Code(), want)
		}
	}
	if _, st := b.create(t, &tokenv1.CreateRequest{UserId: "u", Name: "n"}); st.Code() != codes.OK {
		t.Errorf("the second bearer's first create: %v (%s), want OK: it shares the first's rate bucket", st.Code(), st.Message())
	}
	callers := map[any]int{}
	for _, l := range callLines(t, s) {
		callers[l["caller"]]++
	}
	wantCallers := map[any]int{"bearer:" + hexSHA(one)[:16]: 3, "bearer:" + hexSHA(two)[:16]: 1}
	if len(callers) != 2 || callers["bearer:"+hexSHA(one)[:16]] != 3 || callers["bearer:"+hexSHA(two)[:16]] != 1 {
		t.Errorf("call lines by caller: %v, want %v", callers, wantCallers)
	}
}

// TestCallerIdentityLongCertNames: two client certificates whose CNs share
// their first 64 bytes are two callers, each named by its first 47 bytes,
// '~' and the digest of the whole name.
func TestCallerIdentityLongCertNames(t *testing.T) {
	t.Parallel()
	const held = "held-secret-long-cn"
	_, up := newEmulator(t, held)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "long CN CA")
	srv := ca.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	s := startServer(t, up.URL, gatetest.Held(held), gatetest.Args(
		"--tls-cert="+testpki.WriteFile(t, dir, "s.pem", srv.CertPEM()),
		"--tls-key="+testpki.WriteFile(t, dir, "s-key.pem", srv.KeyPEM(t)),
		"--tls-client-ca="+testpki.WriteFile(t, dir, "ca.pem", ca.CertPEM())),
		gatetest.ClientTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}))
	shared := strings.Repeat("billing-service.team-payments.", 3) // 90 bytes
	want := map[any]bool{}
	for _, cn := range []string{shared + "one", shared + "two"} {
		cert := ca.Issue(t, cn, x509.ExtKeyUsageClientAuth).TLS()
		c := tokenv1.NewTokenServiceClient(s.Dial(&cert))
		if _, err := c.Create(callCtx(t), &tokenv1.CreateRequest{UserId: "long-cn"}); err != nil {
			t.Fatalf("create as %q: %v", cn, err)
		}
		want["cert:"+cn[:47]+"~"+hexSHA(cn)[:16]] = true
	}
	got := map[any]bool{}
	for _, l := range callLines(t, s) {
		got[l["caller"]] = true
	}
	if len(got) != 2 || !maps.Equal(got, want) {
		t.Errorf("callers in the call lines: %v, want %v", got, want)
	}
}

// TestKeysRotateUnderLoad: while gRPC and HTTP callers keep calling with a
// key that is in every version of the keys file, the file (mounted as a
// Kubernetes Secret) is swapped several times, picked up by the file watch
// and by SIGHUP's reload: not one of their calls is refused, a removed key
// stops working and an added one starts.
func TestKeysRotateUnderLoad(t *testing.T) {
	t.Parallel()
	const secret = "held-secret-rotate"
	_, up := newEmulator(t, secret)
	versions := []string{
		"stable key-stable-0123456789\nold key-old-0123456789\n",
		"stable key-stable-0123456789\nnew key-new-0123456789\n",
		"# the stable key as a digest now\nstable sha256:" + hexSHA("key-stable-0123456789") + "\n",
		"renamed key-stable-0123456789\nnew key-new-0123456789\n",
	}
	dir := k8ssecret.New(t, map[string]string{"keys.txt": versions[0], "cbk-secret": secret + "\n"})
	s := startServer(t, up.URL,
		gatetest.Args("--api-keys-file="+dir.Path("keys.txt")),
		gatetest.Env("CHATBOTKIT_API_SECRET_FILE", dir.Path("cbk-secret")),
	)

	// The load: started before the first swap and kept up until the last
	// rotation has taken effect (stop), bounded by the deadline. It is not
	// bounded by a count: a fast machine would finish a fixed count before
	// the rotations and prove nothing about them.
	const workers = 4
	var calls, refused atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	stopLoad := sync.OnceFunc(func() { close(stop) })
	var wg sync.WaitGroup
	// A failed wait below must not leave the load running to its deadline.
	t.Cleanup(func() { stopLoad(); wg.Wait() })
	g := s.grpcCaller(bearer("key-stable-0123456789"))
	h := s.httpCaller(bearer("key-stable-0123456789"))
	deadline := time.Now().Add(60 * time.Second)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", g.authz), callTimeout)
					_, err = g.c.Create(ctx, &tokenv1.CreateRequest{UserId: "rotate", Name: "n"})
					cancel()
				} else {
					err = httpCreate(h, "rotate")
				}
				calls.Add(1)
				if err != nil {
					refused.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}

	// waitFor polls until key's calls end with want, bounded by the 10 s
	// the contract allows a change to take.
	waitFor := func(key string, want codes.Code) {
		t.Helper()
		c := s.grpcCaller(bearer(key))
		limit := time.Now().Add(10 * time.Second)
		for {
			_, st := c.create(t, &tokenv1.CreateRequest{UserId: "probe"})
			if st.Code() == want {
				return
			}
			if time.Now().After(limit) {
				t.Fatalf("key %s: still %v 10s after the change, want %v", key, st.Code(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("key-old-0123456789", codes.OK)
	waitFor("key-new-0123456789", codes.Unauthenticated)

	dir.Update(t, map[string]string{"keys.txt": versions[1], "cbk-secret": secret + "\n"}) // the file watch
	waitFor("key-new-0123456789", codes.OK)
	waitFor("key-old-0123456789", codes.Unauthenticated)

	dir.Update(t, map[string]string{"keys.txt": versions[2], "cbk-secret": secret + "\n"})
	if err := s.App().Reload(); err != nil { // SIGHUP's path
		t.Fatal(err)
	}
	waitFor("key-new-0123456789", codes.Unauthenticated)

	dir.Update(t, map[string]string{"keys.txt": versions[3], "cbk-secret": secret + "\n"})
	waitFor("key-new-0123456789", codes.OK)
	// The load goes on until one of its calls has come in under the new
	// name (bounded): stopping the moment the rotation took effect could
	// leave none that did, on a loaded machine.
	s.Logs().Await(10*time.Second, func(kept string) bool { return strings.Contains(kept, `"caller":"key:renamed"`) })

	stopLoad()
	wg.Wait()
	if n := refused.Load(); n != 0 {
		t.Errorf("%d of %d calls with the stable key failed during rotation; first: %v", n, calls.Load(), firstErr.Load())
	}
	if calls.Load() < workers {
		t.Errorf("only %d calls ran during rotation", calls.Load())
	}
	t.Logf("%d calls with the stable key across 3 rotations, %d failed", calls.Load(), refused.Load())
	// The stable key's caller follows its name in the file.
	var renamed bool
	for _, l := range callLines(t, s) {
		renamed = renamed || l["caller"] == "key:renamed"
	}
	if !renamed {
		t.Error("no call was logged as key:renamed after the last rotation")
	}
}

// httpCreate is one Create over HTTP from a load goroutine (no t).
func httpCreate(h *httpCaller, user string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+tokensPath(user), bytes.NewReader([]byte(`{"name":"n"}`)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", h.authz)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b := new(bytes.Buffer)
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &httpError{resp.StatusCode, b.String()}
	}
	return nil
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.body }

func hexSHA(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func codeOf(err error) codes.Code { return status.Code(err) }
