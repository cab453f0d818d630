package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// lastSecret returns the held secret the last upstream request spent.
func lastSecret(up *fu.Server) string {
	rs := up.Requests()
	if len(rs) == 0 {
		return ""
	}
	return strings.TrimPrefix(rs[len(rs)-1].Header.Get("Authorization"), "Bearer ")
}

// TestTLSAndSecretRotate: the server certificate and the held upstream
// secret, mounted as a Kubernetes Secret, are swapped and reloaded (as on
// SIGHUP): new handshakes on both listeners get the new certificate, new
// calls spend the new secret, and a connection made before keeps working.
func TestTLSAndSecretRotate(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "rotation CA")
	v1 := ca.Issue(t, "server-v1", x509.ExtKeyUsageServerAuth)
	v2 := ca.Issue(t, "server-v2", x509.ExtKeyUsageServerAuth)
	up := fu.Start(t) // answers every create; lastSecret reads what it spent
	files := func(cert *testpki.Cert, secret string) map[string]string {
		return map[string]string{"tls.crt": string(cert.CertPEM()), "tls.key": string(cert.KeyPEM(t)),
			"cbk-secret": secret + "\n", "keys.txt": "alice key-alice-0123456789\n"}
	}
	dir := k8ssecret.New(t, files(v1, "held-secret-one"))
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	s := startServer(t, up.URL,
		gatetest.Args("--tls-cert="+dir.Path("tls.crt"), "--tls-key="+dir.Path("tls.key"), "--api-keys-file="+dir.Path("keys.txt")),
		gatetest.Env("CHATBOTKIT_API_SECRET_FILE", dir.Path("cbk-secret")),
		gatetest.ClientTLS(clientTLS),
	)

	served := func(addr string) string {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, clientTLS)
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	httpAddr := strings.TrimPrefix(s.URL(), "https://")
	create := func(c *grpcCaller) {
		t.Helper()
		if _, st := c.create(t, &tokenv1.CreateRequest{UserId: "rot", Name: "n"}); st.Code() != codes.OK {
			t.Fatalf("Create: %v %s", st.Code(), st.Message())
		}
	}

	old := s.grpcCaller(bearer("key-alice-0123456789"))
	create(old)
	if got := lastSecret(up); got != "held-secret-one" {
		t.Fatalf("upstream saw %q, want the first secret", got)
	}
	for _, addr := range []string{s.GRPCAddr(), httpAddr} {
		if cn := served(addr); cn != "server-v1" {
			t.Fatalf("%s serves %q before the rotation, want server-v1", addr, cn)
		}
	}

	dir.Update(t, files(v2, "held-secret-two"))
	if err := s.App().Reload(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{s.GRPCAddr(), httpAddr} {
		if cn := served(addr); cn != "server-v2" {
			t.Errorf("%s serves %q after the rotation, want server-v2", addr, cn)
		}
	}
	create(s.grpcCaller(bearer("key-alice-0123456789")))
	if got := lastSecret(up); got != "held-secret-two" {
		t.Errorf("a new call spent %q upstream, want the second secret", got)
	}
	// The connection made before the rotation is still good, and its new
	// calls spend the new secret.
	create(old)
	if got := lastSecret(up); got != "held-secret-two" {
		t.Errorf("a new call on the old connection spent %q, want the second secret", got)
	}
	h := s.httpCaller(bearer("key-alice-0123456789"))
	if resp, b := h.do(t, http.MethodPost, tokensPath("rot"), []byte(`{"name":"n"}`)); resp.StatusCode != http.StatusOK || lastSecret(up) != "held-secret-two" {
		t.Errorf("HTTPS create after the rotation: %d %s, upstream saw %q", resp.StatusCode, b, lastSecret(up))
	}
	if strings.Contains(s.Logs().String(), "held-secret-") {
		t.Error("the log carries the upstream secret")
	}
}

// TestConfigReloadsCounted: a reload that succeeds and one that fails (a
// keys file with a bad line) each count once in
// cbkgate_config_reloads_total, under their result.
func TestConfigReloadsCounted(t *testing.T) {
	t.Parallel()
	up := fu.Start(t)
	keys := writeKeys(t, "key-reload-0123456789")
	s := startServer(t, up.URL, gatetest.Held("held-reload"), gatetest.Args("--api-keys-file="+keys))
	reloads := func() map[string]float64 {
		return nonZero(scrape(t, "http://"+s.App().AdminAddr().String()+"/metrics"), "cbkgate_config_reloads_total")
	}
	if got := reloads(); len(got) != 0 {
		t.Fatalf("before any reload: %v", got)
	}
	if err := s.App().Reload(); err != nil {
		t.Fatalf("reload of unchanged files: %v", err)
	}
	if err := os.WriteFile(keys, []byte("bad name! key-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.App().Reload(); err == nil {
		t.Fatal("a keys file with a bad line reloaded without error")
	}
	compareSamples(t, "after one good and one bad reload", reloads(), map[string]float64{
		`cbkgate_config_reloads_total{result="success"}`: 1,
		`cbkgate_config_reloads_total{result="failure"}`: 1,
	})
}
