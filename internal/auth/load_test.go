package auth_test

// Load's tests go through config.Load, as the server does, so that each
// error is checked to name the flag or variable the operator actually set.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

const (
	EnvAPISecret     = auth.EnvAPISecret
	EnvAPISecretFile = auth.EnvAPISecretFile
)

// distinct is a secret no message would contain by accident, so any
// 5-character run of it showing up in an error is a leak.
const distinct = "Qz7rT-9vXw2-LmP4k"

func assertNoLeak(t *testing.T, what, s string) {
	t.Helper()
	for i := 0; i+5 <= len(distinct); i++ {
		if strings.Contains(s, distinct[i:i+5]) {
			t.Fatalf("%s leaks part of the secret (%q): %s", what, distinct[i:i+5], s)
		}
	}
}

// held is an environment with a held secret and --allow-unauthenticated,
// the smallest valid setup that is not pass-through, plus kv.
func held(kv ...string) []string {
	return append([]string{EnvAPISecret, distinct, "CBKGATE_ALLOW_UNAUTHENTICATED", "true"}, kv...)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load runs config.Load on args and the environment kv, then auth.Load on
// its authentication settings.
func load(t *testing.T, args []string, kv ...string) (*auth.Authenticator, error) {
	t.Helper()
	env := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	cfg, err := config.Load(args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load(%q): %v (the settings are meant to parse; auth.Load is under test)", args, err)
	}
	return auth.Load(cfg.Auth())
}

func mustLoad(t *testing.T, args []string, kv ...string) *auth.Authenticator {
	t.Helper()
	a, err := load(t, args, kv...)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return a
}

// TestLoadErrors: every refused setup is one line naming what is at fault,
// and never carries a secret.
func TestLoadErrors(t *testing.T) {
	p := testpki.WriteFiles(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	keys := writeFile(t, dir, "keys", "k1\n")
	split := distinct[:8] + " " + distinct[8:]
	threeWords := distinct[:5] + " " + distinct[5:10] + " " + distinct[10:]
	secretFile := writeFile(t, dir, "secret", distinct+"\n")
	pair := []string{"--tls-cert", p.CertFile, "--tls-key", p.KeyFile}
	withPair := func(a ...string) []string { return append(append([]string{}, pair...), a...) }
	withKeys := func(content string) []string {
		return []string{"--api-keys-file", writeFile(t, dir, fmt.Sprintf("keys-%x", sha256.Sum256([]byte(content))), content)}
	}
	digest := func(k string) string { d := sha256.Sum256([]byte(k)); return hex.EncodeToString(d[:]) }

	cases := []struct {
		name  string
		args  []string
		env   []string
		blame []string // each must appear in the message
		not   []string // none may appear
	}{
		// upstream secret
		{"both secret sources", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct, EnvAPISecretFile, secretFile}, []string{EnvAPISecret, EnvAPISecretFile}, nil},
		{"secret file missing", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, missing}, []string{EnvAPISecretFile}, nil},
		{"secret file is a directory", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, dir}, []string{EnvAPISecretFile}, nil},
		{"secret file empty", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "empty", "")}, []string{EnvAPISecretFile, "empty"}, nil},
		{"secret file blank", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "blank", " \n\n")}, []string{EnvAPISecretFile, "empty"}, nil},
		{"secret file two lines", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "two", distinct+"\n"+distinct+"\n")}, []string{EnvAPISecretFile}, nil},
		{"secret file with space", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "space", split+"\n")}, []string{EnvAPISecretFile}, nil},
		{"secret file non-ASCII", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "utf", distinct+"é\n")}, []string{EnvAPISecretFile}, nil},
		{"secret file too big", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "big", strings.Repeat(distinct, 5000))}, []string{EnvAPISecretFile}, nil},
		{"secret env with space", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, split}, []string{EnvAPISecret}, nil},
		{"secret env with control", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct + "\x00"}, []string{EnvAPISecret}, nil},
		{"secret env blank", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, " \t "}, []string{EnvAPISecret}, nil},

		// authentication
		{"held secret without auth", nil, []string{EnvAPISecret, distinct}, []string{EnvAPISecret, "--api-keys-file", "--tls-client-ca", "--allow-unauthenticated"}, nil},
		{"held secret file without auth", nil, []string{EnvAPISecretFile, secretFile}, []string{EnvAPISecretFile, "--api-keys-file", "--tls-client-ca", "--allow-unauthenticated"}, nil},
		{"held secret allow=false", nil, []string{EnvAPISecret, distinct, "CBKGATE_ALLOW_UNAUTHENTICATED", "false"}, []string{EnvAPISecret}, nil},
		{"keys in pass-through", []string{"--api-keys-file", keys}, nil, []string{"--api-keys-file", EnvAPISecret}, nil},
		{"keys env in pass-through", nil, []string{"CBKGATE_API_KEYS_FILE", keys}, []string{"CBKGATE_API_KEYS_FILE"}, nil},
		{"client CA in pass-through", withPair(), []string{"CBKGATE_TLS_CLIENT_CA", p.CAFile}, []string{"CBKGATE_TLS_CLIENT_CA", EnvAPISecret}, nil},
		{"allow in pass-through", []string{"--allow-unauthenticated"}, nil, []string{"--allow-unauthenticated"}, nil},
		{"allow with keys", []string{"--allow-unauthenticated", "--api-keys-file", keys}, []string{EnvAPISecret, distinct}, []string{"--allow-unauthenticated", "--api-keys-file"}, nil},
		{"allow env with client CA", withPair("--tls-client-ca", p.CAFile), held(), []string{"CBKGATE_ALLOW_UNAUTHENTICATED", "--tls-client-ca"}, nil},

		// API keys file
		{"keys file missing", []string{"--api-keys-file", missing}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", missing}, nil},
		{"keys file env missing", nil, []string{EnvAPISecret, distinct, "CBKGATE_API_KEYS_FILE", missing}, []string{"CBKGATE_API_KEYS_FILE"}, nil},
		{"keys file is a directory", []string{"--api-keys-file", dir}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file"}, nil},
		{"keys file empty", []string{"--api-keys-file", writeFile(t, dir, "nokeys", "")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "no keys"}, nil},
		{"keys file only comments", []string{"--api-keys-file", writeFile(t, dir, "comments", "# a\n\n  # b\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "no keys"}, nil},
		{"keys file key with space", []string{"--api-keys-file", writeFile(t, dir, "spaced", "ok\n"+threeWords+"\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2"}, nil},
		{"keys file inline comment", []string{"--api-keys-file", writeFile(t, dir, "inline", distinct+" # prod\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1"}, nil},
		// Two words, so it read as NAME KEY: the key a name, logged with
		// every call, and "#prod" the key a caller had to send.
		{"keys file trailing comment", []string{"--api-keys-file", writeFile(t, dir, "trailing", "ok\nsk-live-0123456789abcdef0123 #prod\n")}, []string{EnvAPISecret, distinct},
			[]string{"--api-keys-file", "line 2", "comments need a line of their own"}, []string{"sk-live-0123456789abcdef0123", "#prod"}},

		// TLS
		{"cert without key", []string{"--tls-cert", p.CertFile}, held(), []string{"--tls-cert", "--tls-key"}, nil},
		{"key env without cert", nil, held("CBKGATE_TLS_KEY", p.KeyFile), []string{"--tls-cert", "CBKGATE_TLS_KEY"}, nil},
		{"client CA without pair", []string{"--tls-client-ca", p.CAFile}, []string{EnvAPISecret, distinct}, []string{"--tls-client-ca", "--tls-cert", "--tls-key"}, nil},
		{"cert missing", []string{"--tls-cert", missing, "--tls-key", p.KeyFile}, held(), []string{"--tls-cert", missing}, nil},
		{"key missing", []string{"--tls-cert", p.CertFile, "--tls-key", missing}, held(), []string{"--tls-key", missing}, nil},
		{"cert env missing", nil, held("CBKGATE_TLS_CERT", missing, "CBKGATE_TLS_KEY", p.KeyFile), []string{"CBKGATE_TLS_CERT"}, nil},
		{"key does not match", []string{"--tls-cert", p.CertFile, "--tls-key", p.OtherKeyFile}, held(), []string{"--tls-cert", "--tls-key"}, nil},
		{"cert garbage", []string{"--tls-cert", writeFile(t, dir, "garbage.pem", distinct), "--tls-key", p.KeyFile}, held(), []string{"--tls-cert", "--tls-key"}, nil},
		{"cert given as key", []string{"--tls-cert", p.CertFile, "--tls-key", p.CertFile}, held(), []string{"--tls-cert", "--tls-key"}, nil},
		{"client CA missing", withPair("--tls-client-ca", missing), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca", missing}, nil},
		{"client CA garbage", withPair("--tls-client-ca", writeFile(t, dir, "ca-garbage.pem", distinct)), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca"}, nil},
		{"client CA is a key", withPair("--tls-client-ca", p.KeyFile), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca"}, nil},

		// dev mode and authentication
		{"emulator with secret", []string{"--emulator"}, []string{EnvAPISecret, distinct}, []string{"--emulator", EnvAPISecret}, nil},
		{"emulator with secret file", []string{"--emulator"}, []string{EnvAPISecretFile, secretFile}, []string{"--emulator", EnvAPISecretFile}, nil},
		{"emulator env with secret", nil, []string{"CBKGATE_EMULATOR", "true", EnvAPISecret, distinct}, []string{"CBKGATE_EMULATOR", EnvAPISecret}, nil},
		{"emulator with keys", []string{"--emulator", "--api-keys-file", keys}, nil, []string{"--emulator", "--api-keys-file"}, nil},
		{"emulator with client CA", withPair("--emulator", "--tls-client-ca", p.CAFile), nil, []string{"--emulator", "--tls-client-ca"}, nil},
		// the secret file named as the problem, not the missing authentication
		{"secret file missing, nothing else set", nil, []string{EnvAPISecretFile, missing}, []string{EnvAPISecretFile, missing, "does not exist"}, []string{"on behalf of anyone"}},

		// the keys file format
		{"keys file two names", withKeys("alice " + distinct + "\nalice other-key-1\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2", "alice", "unique"}, nil},
		{"keys file bare key twice", withKeys(distinct + "\n" + distinct + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2"}, nil},
		{"keys file one key two names", withKeys("alice " + distinct + "\nbob sha256:" + digest(distinct) + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2", "line 1"}, nil},
		{"keys file bad name", withKeys("al/ice " + distinct + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1", "name"}, nil},
		{"keys file long name", withKeys(strings.Repeat("n", 65) + " " + distinct + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1", "name"}, nil},
		{"keys file short digest", withKeys("alice sha256:" + digest(distinct)[:63] + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1", "64 hex"}, nil},
		{"keys file digest not hex", withKeys("alice sha256:" + strings.Repeat("zz", 32) + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1", "64 hex"}, nil},
		{"keys file digest without name", withKeys("sha256:" + digest(distinct) + "\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1", "name"}, nil},
		{"keys file non-ASCII", withKeys("ok\nalice " + distinct + "é\n"), []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2"}, nil},

		// browsers
		{"any origin and unauthenticated", []string{"--allow-unauthenticated", "--cors-origins", "*"}, []string{EnvAPISecret, distinct}, []string{"--cors-origins", "--allow-unauthenticated"}, nil},
		{"any origin env and dev mode", []string{"--emulator"}, []string{"CBKGATE_CORS_ORIGINS", "*"}, []string{"CBKGATE_CORS_ORIGINS", "--emulator"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := load(t, tc.args, tc.env...)
			if err == nil {
				t.Fatalf("Load succeeded (mode %q), want an error", a.Mode())
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, b := range tc.blame {
				if !strings.Contains(msg, b) {
					t.Errorf("error does not mention %q: %s", b, msg)
				}
			}
			for _, b := range tc.not {
				if strings.Contains(msg, b) {
					t.Errorf("error mentions %q: %s", b, msg)
				}
			}
			assertNoLeak(t, "error", msg)
		})
	}
}

// createWith serves a through startGRPC, makes one Create with authz and
// returns what the service saw (nil if refused) and the error.
func createWith(t *testing.T, a *auth.Authenticator, authz ...string) (*seenCall, error) {
	t.Helper()
	addr, ts := startGRPC(t, a, nil)
	c := dial(t, addr, nil)
	_, err := c.tokens().Create(callCtx(t, authz...), &tokenv1.CreateRequest{UserId: "u"})
	if calls := ts.seen(); len(calls) == 1 {
		return &calls[0], err
	}
	return nil, err
}

func TestLoadModes(t *testing.T) {
	p := testpki.WriteFiles(t)
	keys := writeFile(t, t.TempDir(), "keys", "k1\n")
	pair := []string{"--tls-cert", p.CertFile, "--tls-key", p.KeyFile}
	cases := []struct {
		name      string
		args, env []string
		want      string // as the startup log shows it
	}{
		{"pass-through", nil, nil, "pass-through"},
		{"pass-through over TLS", pair, nil, "pass-through"},
		{"api keys", []string{"--api-keys-file", keys}, []string{EnvAPISecret, distinct}, "api-keys"},
		{"client cert", append(pair, "--tls-client-ca", p.CAFile), []string{EnvAPISecret, distinct}, "client-cert"},
		{"both", append(pair, "--tls-client-ca", p.CAFile, "--api-keys-file", keys), []string{EnvAPISecret, distinct}, "api-keys+client-cert"},
		{"allow unauthenticated", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct}, "unauthenticated"},
		{"allow unauthenticated env", nil, []string{EnvAPISecret, distinct, "CBKGATE_ALLOW_UNAUTHENTICATED", "1"}, "unauthenticated"},
		{"dev mode", []string{"--emulator"}, nil, "unauthenticated"},
		{"dev mode, redundant allow-unauthenticated", []string{"--emulator", "--allow-unauthenticated"}, nil, "unauthenticated"},
		{"dev mode over TLS", append(pair, "--emulator"), nil, "unauthenticated"},
		{"listed origins and unauthenticated", []string{"--allow-unauthenticated", "--cors-origins", "https://a.example"}, []string{EnvAPISecret, distinct}, "unauthenticated"},
		{"any origin and api keys", []string{"--api-keys-file", keys, "--cors-origins", "*"}, []string{EnvAPISecret, distinct}, "api-keys"},
		{"any origin and pass-through", []string{"--cors-origins", "*"}, nil, "pass-through"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := mustLoad(t, tc.args, tc.env...)
			if a.Mode() != tc.want {
				t.Fatalf("Mode %q, want %q", a.Mode(), tc.want)
			}
		})
	}
}

// TestLoadSecret: the held secret, from the environment or a file, is what
// an admitted call spends upstream; dev mode spends the emulator's.
func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"env", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct}, distinct},
		{"env trimmed", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, " " + distinct + "\n"}, distinct},
		{"file with newline", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "a", distinct+"\n")}, distinct},
		{"file without newline", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "b", distinct)}, distinct},
		{"file with CRLF", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "c", distinct+"\r\n")}, distinct},
		{"file with surrounding blanks", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "d", "\n  "+distinct+" \t\n\n")}, distinct},
		{"file with BOM", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "e", "\xef\xbb\xbf"+distinct+"\n")}, distinct},
		{"dev mode", []string{"--emulator", "--emulator-secret", " dev-secret "}, nil, "dev-secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen, err := createWith(t, mustLoad(t, tc.args, tc.env...))
			if err != nil || seen == nil {
				t.Fatalf("Create: %v", err)
			}
			if seen.secret.Reveal() != tc.want || seen.caller != "anonymous" {
				t.Fatalf("upstream secret %q caller %q, want %q %q", seen.secret.Reveal(), seen.caller, tc.want, "anonymous")
			}
		})
	}
}

// TestKeysFile: every line form of the keys file admits its key under its
// name; nothing else gets in.
func TestKeysFile(t *testing.T) {
	d := sha256.Sum256([]byte("digest-only-key-123"))
	bare := sha256.Sum256([]byte("bare-key-456"))
	bob := sha256.Sum256([]byte("bob-key"))
	content := "\xef\xbb\xbf# production keys\r\n\r\n" +
		"  alice  alice-key-0123  \r\n" +
		"ci.runner_2-x sha256:" + hex.EncodeToString(d[:]) + "\n" +
		"\t# indented comment\n" +
		"bob SHA256:" + strings.ToUpper(hex.EncodeToString(bob[:])) + "\n" +
		"bare-key-456\n" +
		"hash-inside a#b\n"
	keys := writeFile(t, t.TempDir(), "keys", content)
	a := mustLoad(t, []string{"--api-keys-file", keys}, EnvAPISecret, distinct)
	cases := []struct {
		key, caller string
	}{
		{"alice-key-0123", "key:alice"},
		{"digest-only-key-123", "key:ci.runner_2-x"},
		{"bare-key-456", "key:key-" + hex.EncodeToString(bare[:4])},
		{"a#b", "key:hash-inside"},
		{"bob-key", "key:bob"},
	}
	for _, tc := range cases {
		t.Run(tc.caller, func(t *testing.T) {
			seen, err := createWith(t, a, "Bearer "+tc.key)
			if err != nil || seen == nil {
				t.Fatalf("Create with %s: %v", tc.caller, err)
			}
			if seen.caller != tc.caller || seen.secret.Reveal() != distinct {
				t.Errorf("caller %q secret %q, want %q and the held secret", seen.caller, seen.secret.Reveal(), tc.caller)
			}
		})
	}
	for _, wrong := range []string{"alice", "alice-key-012", "sha256:" + hex.EncodeToString(d[:]), hex.EncodeToString(d[:]), distinct} {
		if seen, err := createWith(t, a, "Bearer "+wrong); seen != nil || status.Code(err) != codes.Unauthenticated {
			t.Errorf("Bearer %q: %v, reached the service %v; want UNAUTHENTICATED", wrong, err, seen != nil)
		}
	}
	if a.LogValue().String() == "" || !strings.Contains(fmt.Sprint(a.LogValue()), "api_keys=5") {
		t.Errorf("summary %v does not count 5 keys", a.LogValue())
	}
}

func TestServerTLS(t *testing.T) {
	p := testpki.WriteFiles(t)
	keys := writeFile(t, t.TempDir(), "keys", "k1\n")
	pair := []string{"--tls-cert", p.CertFile, "--tls-key", p.KeyFile}

	if a := mustLoad(t, nil); a.ServerTLS() != nil {
		t.Fatal("ServerTLS without --tls-cert is not nil")
	}
	t.Run("server only", func(t *testing.T) {
		tc := mustLoad(t, pair).ServerTLS()
		if tc == nil || tc.MinVersion != tls.VersionTLS12 || tc.ClientAuth != tls.NoClientCert || tc.ClientCAs != nil {
			t.Fatalf("TLS = %+v", tc)
		}
		handshake(t, tc, p, false, true)
	})
	// With a client CA a certificate is asked for but not demanded (probes
	// and key holders have none); one that is sent must verify.
	for name, args := range map[string][]string{
		"client certs":         append(append([]string{}, pair...), "--tls-client-ca", p.CAFile),
		"client certs or keys": append(append([]string{}, pair...), "--tls-client-ca", p.CAFile, "--api-keys-file", keys),
	} {
		t.Run(name, func(t *testing.T) {
			tc := mustLoad(t, args, EnvAPISecret, distinct).ServerTLS()
			if tc.ClientAuth != tls.VerifyClientCertIfGiven || tc.ClientCAs == nil {
				t.Fatalf("ClientAuth = %v", tc.ClientAuth)
			}
			handshake(t, tc, p, true, true)
			handshake(t, tc, p, false, true)
			rogue := testpki.NewCA(t, "rogue").Issue(t, "rogue", x509.ExtKeyUsageClientAuth).TLS()
			handshakeWith(t, tc, p, &rogue, false)
		})
	}
}

// handshake runs a real TLS handshake against cfg over loopback TCP and
// checks whether the server accepts it. Judged on the server side: under TLS
// 1.3 the client finishes before the server has checked its certificate.
func handshake(t *testing.T, cfg *tls.Config, p *testpki.Files, withClientCert, wantOK bool) {
	t.Helper()
	var cert *tls.Certificate
	if withClientCert {
		cert = &p.Client
	}
	handshakeWith(t, cfg, p, cert, wantOK)
}

func handshakeWith(t *testing.T, cfg *tls.Config, p *testpki.Files, cert *tls.Certificate, wantOK bool) {
	t.Helper()
	_, err := serverHandshake(t, cfg, p.CAPool, cert)
	if (err == nil) != wantOK {
		t.Fatalf("client cert %v: server handshake error %v, want ok=%v", cert != nil, err, wantOK)
	}
}

// serverHandshake returns the leaf certificate the server presented and
// the server side's handshake error.
func serverHandshake(t *testing.T, cfg *tls.Config, roots *x509.CertPool, cert *tls.Certificate) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	result := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		result <- tls.Server(conn, cfg).Handshake()
	}()
	cc := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if cert != nil {
		// Sent even when the server's CA list does not name its issuer,
		// as a hostile client would.
		cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	var leaf *x509.Certificate
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cc)
	if err == nil {
		if pc := conn.ConnectionState().PeerCertificates; len(pc) > 0 {
			leaf = pc[0]
		}
		defer conn.Close()
	}
	return leaf, <-result
}

// TestSummaryHidesSecrets: the startup summary names the mode and counts
// the keys, and reveals neither the held secret nor a key.
func TestSummaryHidesSecrets(t *testing.T) {
	keys := writeFile(t, t.TempDir(), "keys", "prod "+distinct+"-key\n")
	a := mustLoad(t, []string{"--api-keys-file", keys}, EnvAPISecret, distinct)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("auth", "auth", a)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("auth", "auth", a)
	assertNoLeak(t, "summary", buf.String()+fmt.Sprintf("%v %+v %#v %s", a, a, a, a))
	if !strings.Contains(buf.String(), `"mode":"api-keys"`) || !strings.Contains(buf.String(), `"api_keys":1`) {
		t.Errorf("summary lacks mode or key count: %s", buf.String())
	}
}
