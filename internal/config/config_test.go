package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
	"github.com/cbkgate/cbkgate/internal/testpki"
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

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
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

func mustLoad(t *testing.T, args []string, env ...string) *Config {
	t.Helper()
	c, err := Load(args, envOf(env...))
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return c
}

// pki is a throwaway CA with a server and a client certificate, written as
// PEM files into a test's temporary directory.
type pki struct {
	caFile, certFile, keyFile string
	otherKeyFile              string // a valid key that does not match certFile
	caPool                    *x509.CertPool
	client                    tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cbkgate test CA")
	srv := ca.Issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	other := ca.Issue(t, "other", x509.ExtKeyUsageServerAuth)
	return &pki{
		caFile:       writeFile(t, dir, "ca.pem", string(ca.CertPEM())),
		certFile:     writeFile(t, dir, "server.pem", string(srv.CertPEM())),
		keyFile:      writeFile(t, dir, "server-key.pem", string(srv.KeyPEM(t))),
		otherKeyFile: writeFile(t, dir, "other-key.pem", string(other.KeyPEM(t))),
		caPool:       ca.Pool(),
		client:       ca.Issue(t, "client", x509.ExtKeyUsageClientAuth).TLS(),
	}
}

func TestDefaults(t *testing.T) {
	for name, getenv := range map[string]func(string) string{"nil getenv": nil, "empty env": envOf()} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(nil, getenv)
			if err != nil {
				t.Fatal(err)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"GRPCAddr", c.GRPCAddr, ":9090"},
				{"HTTPAddr", c.HTTPAddr, ":8080"},
				{"Upstream", c.Upstream.String(), "https://api.chatbotkit.com"},
				{"UpstreamSecret", c.UpstreamSecret, secret.Value("")},
				{"APIKeys", len(c.APIKeys), 0},
				{"APIKeysFile", c.APIKeysFile, ""},
				{"TLSCertFile", c.TLSCertFile, ""},
				{"TLSKeyFile", c.TLSKeyFile, ""},
				{"TLSClientCAFile", c.TLSClientCAFile, ""},
				{"TLS", c.TLS == nil, true},
				{"AllowUnauthenticated", c.AllowUnauthenticated, false},
				{"CORSOrigins", len(c.CORSOrigins), 0},
				{"Emulator", c.Emulator, false},
				{"EmulatorAddr", c.EmulatorAddr, "127.0.0.1:8787"},
				{"EmulatorSecret", c.EmulatorSecret.Reveal(), "emulator"},
				{"LogLevel", c.LogLevel, slog.LevelInfo},
				{"LogFormat", c.LogFormat, LogJSON},
				{"ShutdownTimeout", c.ShutdownTimeout, 20 * time.Second},
				{"MaxConnectionAge", c.MaxConnectionAge, 5 * time.Minute},
				{"AuthMode", c.AuthMode(), AuthPassThrough},
				{"AcceptsAPIKeys", c.AcceptsAPIKeys(), false},
				{"AcceptsClientCerts", c.AcceptsClientCerts(), false},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
				}
			}
		})
	}
}

// TestFlagAndEnv checks each plain setting from its flag, from its
// environment variable, and that the flag wins when both are given.
func TestFlagAndEnv(t *testing.T) {
	cases := []struct {
		flag, env           string
		flagVal, envVal     string
		get                 func(*Config) string
		wantFlag, wantEnv   string
		extraArgs, extraEnv []string
	}{
		{flag: "grpc-addr", env: "CBKGATE_GRPC_ADDR", flagVal: "127.0.0.1:0", envVal: "[::1]:7000",
			get: func(c *Config) string { return c.GRPCAddr }, wantFlag: "127.0.0.1:0", wantEnv: "[::1]:7000"},
		{flag: "http-addr", env: "CBKGATE_HTTP_ADDR", flagVal: ":8081", envVal: "localhost:65535",
			get: func(c *Config) string { return c.HTTPAddr }, wantFlag: ":8081", wantEnv: "localhost:65535"},
		{flag: "upstream", env: "CHATBOTKIT_BASE_URL", flagVal: "http://127.0.0.1:9000/api/", envVal: "HTTPS://eu.chatbotkit.com",
			get: func(c *Config) string { return c.Upstream.String() }, wantFlag: "http://127.0.0.1:9000/api", wantEnv: "https://eu.chatbotkit.com"},
		{flag: "log-level", env: "CBKGATE_LOG_LEVEL", flagVal: "DEBUG", envVal: "warn",
			get: func(c *Config) string { return c.LogLevel.String() }, wantFlag: "DEBUG", wantEnv: "WARN"},
		{flag: "log-format", env: "CBKGATE_LOG_FORMAT", flagVal: "text", envVal: "JSON",
			get: func(c *Config) string { return string(c.LogFormat) }, wantFlag: "text", wantEnv: "json"},
		{flag: "shutdown-timeout", env: "CBKGATE_SHUTDOWN_TIMEOUT", flagVal: "1m30s", envVal: "250ms",
			get: func(c *Config) string { return c.ShutdownTimeout.String() }, wantFlag: "1m30s", wantEnv: "250ms"},
		{flag: "max-connection-age", env: "CBKGATE_MAX_CONNECTION_AGE", flagVal: "0", envVal: "90s",
			get: func(c *Config) string { return c.MaxConnectionAge.String() }, wantFlag: "0s", wantEnv: "1m30s"},
		{flag: "cors-origins", env: "CBKGATE_CORS_ORIGINS", flagVal: "https://a.example", envVal: "*",
			get: func(c *Config) string { return strings.Join(c.CORSOrigins, ",") }, wantFlag: "https://a.example", wantEnv: "*"},
		{flag: "emulator-addr", env: "CBKGATE_EMULATOR_ADDR", flagVal: "localhost:1234", envVal: "[::1]:4321",
			get:      func(c *Config) string { return c.EmulatorAddr + " " + c.Upstream.String() },
			wantFlag: "localhost:1234 http://localhost:1234", wantEnv: "[::1]:4321 http://[::1]:4321",
			extraArgs: []string{"--emulator"}},
		{flag: "emulator-secret", env: "CBKGATE_EMULATOR_SECRET", flagVal: "dev-flag", envVal: "dev-env",
			get:      func(c *Config) string { return c.EmulatorSecret.Reveal() + " " + c.UpstreamSecret.Reveal() },
			wantFlag: "dev-flag dev-flag", wantEnv: "dev-env dev-env",
			extraArgs: []string{"--emulator"}},
		{flag: "allow-unauthenticated", env: "CBKGATE_ALLOW_UNAUTHENTICATED", flagVal: "true", envVal: "1",
			get:      func(c *Config) string { return fmt.Sprint(c.AllowUnauthenticated, " ", c.AuthMode()) },
			wantFlag: "true unauthenticated", wantEnv: "true unauthenticated",
			extraEnv: []string{EnvAPISecret, distinct}},
		{flag: "emulator", env: "CBKGATE_EMULATOR", flagVal: "true", envVal: "TRUE",
			get:      func(c *Config) string { return fmt.Sprint(c.Emulator, " ", c.Upstream) },
			wantFlag: "true http://127.0.0.1:8787", wantEnv: "true http://127.0.0.1:8787"},
	}
	for _, tc := range cases {
		t.Run(tc.flag, func(t *testing.T) {
			flagArgs := append([]string{"--" + tc.flag + "=" + tc.flagVal}, tc.extraArgs...)
			t.Run("flag", func(t *testing.T) {
				c := mustLoad(t, flagArgs, tc.extraEnv...)
				if got := tc.get(c); got != tc.wantFlag {
					t.Errorf("got %q, want %q", got, tc.wantFlag)
				}
			})
			t.Run("env", func(t *testing.T) {
				c := mustLoad(t, tc.extraArgs, append([]string{tc.env, tc.envVal}, tc.extraEnv...)...)
				if got := tc.get(c); got != tc.wantEnv {
					t.Errorf("got %q, want %q", got, tc.wantEnv)
				}
			})
			t.Run("flag beats env", func(t *testing.T) {
				c := mustLoad(t, flagArgs, append([]string{tc.env, tc.envVal}, tc.extraEnv...)...)
				if got := tc.get(c); got != tc.wantFlag {
					t.Errorf("got %q, want %q", got, tc.wantFlag)
				}
			})
		})
	}
}

func TestFlagBeatsEnvSpecialCases(t *testing.T) {
	dir := t.TempDir()
	keys := writeFile(t, dir, "keys", "k1\n")
	other := writeFile(t, dir, "other", "k2\n")

	t.Run("false flag beats true env", func(t *testing.T) {
		c := mustLoad(t, []string{"--emulator=false"}, "CBKGATE_EMULATOR", "true")
		if c.Emulator {
			t.Fatal("Emulator = true, want the flag's false")
		}
	})
	t.Run("empty flag switches off env", func(t *testing.T) {
		c := mustLoad(t, []string{"--cors-origins=", "--api-keys-file="},
			held("CBKGATE_CORS_ORIGINS", "*", "CBKGATE_API_KEYS_FILE", keys)...)
		if len(c.CORSOrigins) != 0 || c.APIKeysFile != "" || len(c.APIKeys) != 0 {
			t.Fatalf("CORS %q, keys file %q: want both empty", c.CORSOrigins, c.APIKeysFile)
		}
	})
	t.Run("api keys file", func(t *testing.T) {
		env := []string{EnvAPISecret, distinct, "CBKGATE_API_KEYS_FILE", other}
		if c := mustLoad(t, []string{"--api-keys-file", keys}, env...); c.APIKeysFile != keys || c.APIKeys[0] != "k1" {
			t.Fatalf("flag: got %q %v", c.APIKeysFile, c.APIKeys)
		}
		if c := mustLoad(t, nil, env...); c.APIKeysFile != other || c.APIKeys[0] != "k2" {
			t.Fatalf("env: got %q %v", c.APIKeysFile, c.APIKeys)
		}
	})
	t.Run("single dash flags", func(t *testing.T) {
		c := mustLoad(t, []string{"-grpc-addr", ":1", "-emulator"})
		if c.GRPCAddr != ":1" || !c.Emulator {
			t.Fatalf("got %q %v", c.GRPCAddr, c.Emulator)
		}
	})
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"env", []string{EnvAPISecret, distinct}, distinct},
		{"env trimmed", []string{EnvAPISecret, " " + distinct + "\n"}, distinct},
		{"file with newline", []string{EnvAPISecretFile, writeFile(t, dir, "a", distinct+"\n")}, distinct},
		{"file without newline", []string{EnvAPISecretFile, writeFile(t, dir, "b", distinct)}, distinct},
		{"file with CRLF", []string{EnvAPISecretFile, writeFile(t, dir, "c", distinct+"\r\n")}, distinct},
		{"file with surrounding blanks", []string{EnvAPISecretFile, writeFile(t, dir, "d", "\n  "+distinct+" \t\n\n")}, distinct},
		{"file with BOM", []string{EnvAPISecretFile, writeFile(t, dir, "e", "\xef\xbb\xbf"+distinct+"\n")}, distinct},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, []string{"--allow-unauthenticated"}, tc.env...)
			if got := c.UpstreamSecret.Reveal(); got != tc.want {
				t.Fatalf("secret = %q, want %q", got, tc.want)
			}
			if c.AuthMode() != AuthNone {
				t.Fatalf("AuthMode = %q", c.AuthMode())
			}
		})
	}
}

func TestAPIKeysFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          []string
	}{
		{"one", "k1", []string{"k1"}},
		{"comments and blanks", "# prod keys\n\nk1\n  # indented comment\n\t k2 \t\n\n", []string{"k1", "k2"}},
		{"CRLF", "k1\r\nk2\r\n", []string{"k1", "k2"}},
		{"duplicates kept", "k1\nk1\n", []string{"k1", "k1"}},
		{"hash inside a key", "a#b\n", []string{"a#b"}},
		{"BOM", "\xef\xbb\xbfk1\n", []string{"k1"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, fmt.Sprint("keys", i), tc.content)
			c := mustLoad(t, []string{"--api-keys-file", path}, EnvAPISecret, distinct)
			var got []string
			for _, k := range c.APIKeys {
				got = append(got, k.Reveal())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("keys = %q, want %q", got, tc.want)
			}
			if c.APIKeysFile != path || c.AuthMode() != AuthAPIKeys || !c.AcceptsAPIKeys() || c.AcceptsClientCerts() {
				t.Fatalf("file %q, mode %q", c.APIKeysFile, c.AuthMode())
			}
		})
	}
}

func TestCORSOrigins(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"*", []string{"*"}},
		{" * ", []string{"*"}},
		{"https://app.example.com", []string{"https://app.example.com"}},
		{" HTTPS://App.Example.com , http://localhost:3000,,", []string{"https://app.example.com", "http://localhost:3000"}},
		{"http://[::1]:8080,https://a.example,https://a.example", []string{"http://[::1]:8080", "https://a.example"}},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			c := mustLoad(t, []string{"--cors-origins", tc.in})
			if !reflect.DeepEqual(c.CORSOrigins, tc.want) {
				t.Fatalf("got %q, want %q", c.CORSOrigins, tc.want)
			}
		})
	}
}

func TestDevMode(t *testing.T) {
	p := newPKI(t)
	cases := []struct {
		name         string
		args, env    []string
		wantUpstream string
		wantSecret   string
	}{
		{"defaults", []string{"--emulator"}, nil, "http://127.0.0.1:8787", "emulator"},
		{"env switch", nil, []string{"CBKGATE_EMULATOR", "true"}, "http://127.0.0.1:8787", "emulator"},
		{"ipv6 loopback", []string{"--emulator", "--emulator-addr", "[::1]:9999"}, nil, "http://[::1]:9999", "emulator"},
		{"localhost", []string{"--emulator", "--emulator-addr", "LocalHost:1234"}, nil, "http://LocalHost:1234", "emulator"},
		{"127.x", []string{"--emulator", "--emulator-addr", "127.1.2.3:1"}, nil, "http://127.1.2.3:1", "emulator"},
		{"own secret", []string{"--emulator", "--emulator-secret", " dev "}, nil, "http://127.0.0.1:8787", "dev"},
		{"redundant allow-unauthenticated", []string{"--emulator", "--allow-unauthenticated"}, nil, "http://127.0.0.1:8787", "emulator"},
		{"served over TLS", []string{"--emulator", "--tls-cert", p.certFile, "--tls-key", p.keyFile}, nil, "http://127.0.0.1:8787", "emulator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.args, tc.env...)
			if !c.Emulator || c.Upstream.String() != tc.wantUpstream || c.UpstreamSecret.Reveal() != tc.wantSecret || c.EmulatorSecret != c.UpstreamSecret {
				t.Fatalf("emulator %v upstream %q secret %q", c.Emulator, c.Upstream, c.UpstreamSecret.Reveal())
			}
			if c.AuthMode() != AuthNone || c.AcceptsAPIKeys() || c.AcceptsClientCerts() {
				t.Fatalf("AuthMode = %q", c.AuthMode())
			}
		})
	}
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	keys := writeFile(t, t.TempDir(), "keys", "k1\n")
	pair := []string{"--tls-cert", p.certFile, "--tls-key", p.keyFile}

	t.Run("server only", func(t *testing.T) {
		c := mustLoad(t, pair)
		if c.TLS == nil || c.TLS.MinVersion != tls.VersionTLS12 || len(c.TLS.Certificates) != 1 ||
			c.TLS.ClientAuth != tls.NoClientCert || c.TLS.ClientCAs != nil {
			t.Fatalf("TLS = %+v", c.TLS)
		}
		if c.TLSCertFile != p.certFile || c.TLSKeyFile != p.keyFile || c.AuthMode() != AuthPassThrough || c.AcceptsClientCerts() {
			t.Fatalf("files %q %q mode %q", c.TLSCertFile, c.TLSKeyFile, c.AuthMode())
		}
		handshake(t, c.TLS, p, false, true)
	})
	t.Run("from env", func(t *testing.T) {
		c := mustLoad(t, nil, "CBKGATE_TLS_CERT", p.certFile, "CBKGATE_TLS_KEY", p.keyFile,
			"CBKGATE_TLS_CLIENT_CA", p.caFile, EnvAPISecret, distinct)
		if c.TLS == nil || c.TLSClientCAFile != p.caFile || c.AuthMode() != AuthClientCert {
			t.Fatalf("TLS %v CA %q mode %q", c.TLS != nil, c.TLSClientCAFile, c.AuthMode())
		}
	})
	t.Run("client certs required", func(t *testing.T) {
		c := mustLoad(t, append(pair, "--tls-client-ca", p.caFile), EnvAPISecret, distinct)
		if c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.TLS.ClientCAs == nil {
			t.Fatalf("ClientAuth = %v", c.TLS.ClientAuth)
		}
		if c.AuthMode() != AuthClientCert || !c.AcceptsClientCerts() || c.AcceptsAPIKeys() {
			t.Fatalf("AuthMode = %q", c.AuthMode())
		}
		handshake(t, c.TLS, p, true, true)
		handshake(t, c.TLS, p, false, false)
	})
	t.Run("client certs or keys", func(t *testing.T) {
		c := mustLoad(t, append(pair, "--tls-client-ca", p.caFile, "--api-keys-file", keys), EnvAPISecret, distinct)
		if c.TLS.ClientAuth != tls.VerifyClientCertIfGiven {
			t.Fatalf("ClientAuth = %v", c.TLS.ClientAuth)
		}
		if c.AuthMode() != AuthAPIKeysOrClientCert || !c.AcceptsClientCerts() || !c.AcceptsAPIKeys() {
			t.Fatalf("AuthMode = %q", c.AuthMode())
		}
		handshake(t, c.TLS, p, true, true)
		handshake(t, c.TLS, p, false, true)
	})
}

// handshake runs a real TLS handshake against cfg over loopback TCP and
// checks whether the server accepts it. Judged on the server side: under TLS
// 1.3 the client finishes before the server has checked its certificate.
func handshake(t *testing.T, cfg *tls.Config, p *pki, withClientCert, wantOK bool) {
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
	cc := &tls.Config{RootCAs: p.caPool, ServerName: "localhost"}
	if withClientCert {
		cc.Certificates = []tls.Certificate{p.client}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cc)
	if err == nil {
		defer conn.Close()
	}
	if err := <-result; (err == nil) != wantOK {
		t.Fatalf("client cert %v: server handshake error %v, want ok=%v", withClientCert, err, wantOK)
	}
}

func TestAuthModes(t *testing.T) {
	p := newPKI(t)
	keys := writeFile(t, t.TempDir(), "keys", "k1\n")
	pair := []string{"--tls-cert", p.certFile, "--tls-key", p.keyFile}
	cases := []struct {
		name             string
		args, env        []string
		want             AuthMode
		wantKeys, wantCA bool
	}{
		{"pass-through", nil, nil, AuthPassThrough, false, false},
		{"pass-through over TLS", pair, nil, AuthPassThrough, false, false},
		{"api keys", []string{"--api-keys-file", keys}, []string{EnvAPISecret, distinct}, AuthAPIKeys, true, false},
		{"client cert", append(pair, "--tls-client-ca", p.caFile), []string{EnvAPISecret, distinct}, AuthClientCert, false, true},
		{"both", append(pair, "--tls-client-ca", p.caFile, "--api-keys-file", keys), []string{EnvAPISecret, distinct}, AuthAPIKeysOrClientCert, true, true},
		{"allow unauthenticated", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct}, AuthNone, false, false},
		{"dev mode", []string{"--emulator"}, nil, AuthNone, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.args, tc.env...)
			if c.AuthMode() != tc.want || c.AcceptsAPIKeys() != tc.wantKeys || c.AcceptsClientCerts() != tc.wantCA {
				t.Fatalf("AuthMode %q keys %v certs %v; want %q %v %v",
					c.AuthMode(), c.AcceptsAPIKeys(), c.AcceptsClientCerts(), tc.want, tc.wantKeys, tc.wantCA)
			}
		})
	}
	if m := (&Config{}).AuthMode(); m != AuthPassThrough {
		t.Errorf("zero Config: AuthMode %q", m)
	}
}

func TestErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	keys := writeFile(t, dir, "keys", "k1\n")
	split := distinct[:8] + " " + distinct[8:]
	secretFile := writeFile(t, dir, "secret", distinct+"\n")
	pair := []string{"--tls-cert", p.certFile, "--tls-key", p.keyFile}
	withPair := func(a ...string) []string { return append(append([]string{}, pair...), a...) }

	cases := []struct {
		name  string
		args  []string
		env   []string
		blame []string // each must appear in the message
	}{
		// command line
		{"unknown flag", []string{"--api-secret=" + distinct}, held(), []string{"-api-secret"}},
		{"positional argument", []string{"--emulator", distinct}, nil, []string{"command line"}},
		{"bad bool flag", []string{"--emulator=maybe"}, nil, []string{"-emulator"}},
		{"bad bool env allow", nil, []string{EnvAPISecret, distinct, "CBKGATE_ALLOW_UNAUTHENTICATED", "yes"}, []string{"CBKGATE_ALLOW_UNAUTHENTICATED"}},
		{"bad bool env emulator", nil, []string{"CBKGATE_EMULATOR", "2"}, []string{"CBKGATE_EMULATOR"}},

		// addresses
		{"grpc addr no port", []string{"--grpc-addr", "nope"}, held(), []string{"--grpc-addr"}},
		{"grpc addr env no port", nil, held("CBKGATE_GRPC_ADDR", "localhost"), []string{"CBKGATE_GRPC_ADDR"}},
		{"grpc addr empty flag", []string{"--grpc-addr="}, held(), []string{"--grpc-addr"}},
		{"http addr port too big", []string{"--http-addr", ":65536"}, held(), []string{"--http-addr"}},
		{"http addr env named port", nil, held("CBKGATE_HTTP_ADDR", ":http"), []string{"CBKGATE_HTTP_ADDR"}},
		{"http addr empty port", []string{"--http-addr", "localhost:"}, held(), []string{"--http-addr"}},
		{"http addr negative port", []string{"--http-addr", ":-1"}, held(), []string{"--http-addr"}},

		// upstream
		{"upstream scheme", []string{"--upstream", "ftp://api.chatbotkit.com"}, held(), []string{"--upstream"}},
		{"upstream env relative", nil, held("CHATBOTKIT_BASE_URL", "api.chatbotkit.com"), []string{"CHATBOTKIT_BASE_URL"}},
		{"upstream userinfo", []string{"--upstream", "https://user:" + distinct + "@api.chatbotkit.com"}, held(), []string{"--upstream", "userinfo"}},
		{"upstream bad userinfo", []string{"--upstream", "https://u:" + split + "@x/"}, held(), []string{"--upstream"}},
		{"upstream query", []string{"--upstream", "https://api.chatbotkit.com/?a=1"}, held(), []string{"--upstream"}},
		{"upstream empty query", []string{"--upstream", "https://api.chatbotkit.com?"}, held(), []string{"--upstream"}},
		{"upstream fragment", []string{"--upstream", "https://api.chatbotkit.com/#f"}, held(), []string{"--upstream"}},
		{"upstream port", []string{"--upstream", "https://api.chatbotkit.com:99999"}, held(), []string{"--upstream"}},
		{"upstream unparseable", []string{"--upstream", "http://[::1"}, held(), []string{"--upstream"}},
		{"upstream empty flag", []string{"--upstream="}, held(), []string{"--upstream"}},
		{"upstream no host", []string{"--upstream", "https:///v1"}, held(), []string{"--upstream"}},
		{"upstream port only", []string{"--upstream", "https://:443"}, held(), []string{"--upstream"}},
		{"upstream opaque", []string{"--upstream", "https:api.chatbotkit.com"}, held(), []string{"--upstream"}},

		// logging and shutdown
		{"log level", []string{"--log-level", "verbose"}, held(), []string{"--log-level"}},
		{"log level env", nil, held("CBKGATE_LOG_LEVEL", "trace"), []string{"CBKGATE_LOG_LEVEL"}},
		{"log format", []string{"--log-format", "xml"}, held(), []string{"--log-format"}},
		{"log format env", nil, held("CBKGATE_LOG_FORMAT", "yaml"), []string{"CBKGATE_LOG_FORMAT"}},
		{"shutdown zero", []string{"--shutdown-timeout", "0s"}, held(), []string{"--shutdown-timeout"}},
		{"shutdown negative env", nil, held("CBKGATE_SHUTDOWN_TIMEOUT", "-1s"), []string{"CBKGATE_SHUTDOWN_TIMEOUT"}},
		{"shutdown unparseable", []string{"--shutdown-timeout", "soon"}, held(), []string{"--shutdown-timeout"}},
		{"shutdown bare number", []string{"--shutdown-timeout", "20"}, held(), []string{"--shutdown-timeout"}},
		{"max connection age unparseable", []string{"--max-connection-age", "often"}, held(), []string{"--max-connection-age"}},
		{"max connection age negative env", nil, held("CBKGATE_MAX_CONNECTION_AGE", "-5m"), []string{"CBKGATE_MAX_CONNECTION_AGE"}},
		{"max connection age below a second", []string{"--max-connection-age", "5ms"}, held(), []string{"--max-connection-age"}},

		// CORS
		{"cors star mixed", []string{"--cors-origins", "*,https://a.example"}, held(), []string{"--cors-origins"}},
		{"cors trailing slash", []string{"--cors-origins", "https://a.example/"}, held(), []string{"--cors-origins"}},
		{"cors path", []string{"--cors-origins", "https://a.example/app"}, held(), []string{"--cors-origins"}},
		{"cors no scheme", []string{"--cors-origins", "a.example"}, held(), []string{"--cors-origins"}},
		{"cors wildcard subdomain env", nil, held("CBKGATE_CORS_ORIGINS", "https://*.a.example"), []string{"CBKGATE_CORS_ORIGINS"}},
		{"cors port zero", []string{"--cors-origins", "https://a.example:0"}, held(), []string{"--cors-origins"}},
		{"cors empty port", []string{"--cors-origins", "https://a.example:"}, held(), []string{"--cors-origins"}},
		{"cors query", []string{"--cors-origins", "https://a.example?x=1"}, held(), []string{"--cors-origins"}},
		{"cors fragment", []string{"--cors-origins", "https://a.example#"}, held(), []string{"--cors-origins"}},
		{"cors userinfo", []string{"--cors-origins", "https://u:" + distinct + "@a.example"}, held(), []string{"--cors-origins"}},

		// upstream secret
		{"both secret sources", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct, EnvAPISecretFile, secretFile}, []string{EnvAPISecret, EnvAPISecretFile}},
		{"secret file missing", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, missing}, []string{EnvAPISecretFile}},
		{"secret file is a directory", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, dir}, []string{EnvAPISecretFile}},
		{"secret file empty", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "empty", "")}, []string{EnvAPISecretFile, "empty"}},
		{"secret file blank", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "blank", " \n\n")}, []string{EnvAPISecretFile, "empty"}},
		{"secret file two lines", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "two", distinct+"\n"+distinct+"\n")}, []string{EnvAPISecretFile}},
		{"secret file with space", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "space", split+"\n")}, []string{EnvAPISecretFile}},
		{"secret file non-ASCII", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "utf", distinct+"é\n")}, []string{EnvAPISecretFile}},
		{"secret file too big", []string{"--allow-unauthenticated"}, []string{EnvAPISecretFile, writeFile(t, dir, "big", strings.Repeat(distinct, 5000))}, []string{EnvAPISecretFile}},
		{"secret env with space", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, split}, []string{EnvAPISecret}},
		{"secret env with control", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, distinct + "\x00"}, []string{EnvAPISecret}},
		{"secret env blank", []string{"--allow-unauthenticated"}, []string{EnvAPISecret, " \t "}, []string{EnvAPISecret}},

		// authentication
		{"held secret without auth", nil, []string{EnvAPISecret, distinct}, []string{EnvAPISecret, "--api-keys-file", "--tls-client-ca", "--allow-unauthenticated"}},
		{"held secret file without auth", nil, []string{EnvAPISecretFile, secretFile}, []string{EnvAPISecretFile, "--api-keys-file", "--tls-client-ca", "--allow-unauthenticated"}},
		{"held secret allow=false", nil, []string{EnvAPISecret, distinct, "CBKGATE_ALLOW_UNAUTHENTICATED", "false"}, []string{EnvAPISecret}},
		{"keys in pass-through", []string{"--api-keys-file", keys}, nil, []string{"--api-keys-file", EnvAPISecret}},
		{"keys env in pass-through", nil, []string{"CBKGATE_API_KEYS_FILE", keys}, []string{"CBKGATE_API_KEYS_FILE"}},
		{"client CA in pass-through", withPair(), []string{"CBKGATE_TLS_CLIENT_CA", p.caFile}, []string{"CBKGATE_TLS_CLIENT_CA", EnvAPISecret}},
		{"allow in pass-through", []string{"--allow-unauthenticated"}, nil, []string{"--allow-unauthenticated"}},
		{"allow with keys", []string{"--allow-unauthenticated", "--api-keys-file", keys}, []string{EnvAPISecret, distinct}, []string{"--allow-unauthenticated", "--api-keys-file"}},
		{"allow env with client CA", withPair("--tls-client-ca", p.caFile), held(), []string{"CBKGATE_ALLOW_UNAUTHENTICATED", "--tls-client-ca"}},

		// API keys file
		{"keys file missing", []string{"--api-keys-file", missing}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", missing}},
		{"keys file env missing", nil, []string{EnvAPISecret, distinct, "CBKGATE_API_KEYS_FILE", missing}, []string{"CBKGATE_API_KEYS_FILE"}},
		{"keys file is a directory", []string{"--api-keys-file", dir}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file"}},
		{"keys file empty", []string{"--api-keys-file", writeFile(t, dir, "nokeys", "")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "no keys"}},
		{"keys file only comments", []string{"--api-keys-file", writeFile(t, dir, "comments", "# a\n\n  # b\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "no keys"}},
		{"keys file key with space", []string{"--api-keys-file", writeFile(t, dir, "spaced", "ok\n"+split+"\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 2"}},
		{"keys file inline comment", []string{"--api-keys-file", writeFile(t, dir, "inline", distinct+" # prod\n")}, []string{EnvAPISecret, distinct}, []string{"--api-keys-file", "line 1"}},

		// TLS
		{"cert without key", []string{"--tls-cert", p.certFile}, held(), []string{"--tls-cert", "--tls-key"}},
		{"key env without cert", nil, held("CBKGATE_TLS_KEY", p.keyFile), []string{"--tls-cert", "CBKGATE_TLS_KEY"}},
		{"client CA without pair", []string{"--tls-client-ca", p.caFile}, []string{EnvAPISecret, distinct}, []string{"--tls-client-ca", "--tls-cert", "--tls-key"}},
		{"cert missing", []string{"--tls-cert", missing, "--tls-key", p.keyFile}, held(), []string{"--tls-cert", missing}},
		{"key missing", []string{"--tls-cert", p.certFile, "--tls-key", missing}, held(), []string{"--tls-key", missing}},
		{"cert env missing", nil, held("CBKGATE_TLS_CERT", missing, "CBKGATE_TLS_KEY", p.keyFile), []string{"CBKGATE_TLS_CERT"}},
		{"key does not match", []string{"--tls-cert", p.certFile, "--tls-key", p.otherKeyFile}, held(), []string{"--tls-cert", "--tls-key"}},
		{"cert garbage", []string{"--tls-cert", writeFile(t, dir, "garbage.pem", distinct), "--tls-key", p.keyFile}, held(), []string{"--tls-cert", "--tls-key"}},
		{"cert given as key", []string{"--tls-cert", p.certFile, "--tls-key", p.certFile}, held(), []string{"--tls-cert", "--tls-key"}},
		{"client CA missing", withPair("--tls-client-ca", missing), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca", missing}},
		{"client CA garbage", withPair("--tls-client-ca", writeFile(t, dir, "ca-garbage.pem", distinct)), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca"}},
		{"client CA is a key", withPair("--tls-client-ca", p.keyFile), []string{EnvAPISecret, distinct}, []string{"--tls-client-ca"}},

		// dev mode
		{"emulator with secret", []string{"--emulator"}, []string{EnvAPISecret, distinct}, []string{"--emulator", EnvAPISecret}},
		{"emulator with secret file", []string{"--emulator"}, []string{EnvAPISecretFile, secretFile}, []string{"--emulator", EnvAPISecretFile}},
		{"emulator env with secret", nil, []string{"CBKGATE_EMULATOR", "true", EnvAPISecret, distinct}, []string{"CBKGATE_EMULATOR", EnvAPISecret}},
		{"emulator with upstream flag", []string{"--emulator", "--upstream", "https://api.chatbotkit.com"}, nil, []string{"--emulator", "--upstream"}},
		{"emulator with upstream env", []string{"--emulator"}, []string{"CHATBOTKIT_BASE_URL", "https://api.chatbotkit.com"}, []string{"--emulator", "CHATBOTKIT_BASE_URL"}},
		{"emulator with keys", []string{"--emulator", "--api-keys-file", keys}, nil, []string{"--emulator", "--api-keys-file"}},
		{"emulator with client CA", withPair("--emulator", "--tls-client-ca", p.caFile), nil, []string{"--emulator", "--tls-client-ca"}},
		{"emulator all interfaces", []string{"--emulator", "--emulator-addr", "0.0.0.0:8787"}, nil, []string{"--emulator-addr", "loopback"}},
		{"emulator empty host", []string{"--emulator", "--emulator-addr", ":8787"}, nil, []string{"--emulator-addr", "loopback"}},
		{"emulator remote host", []string{"--emulator", "--emulator-addr", "10.0.0.1:8787"}, nil, []string{"--emulator-addr", "loopback"}},
		{"emulator hostname", []string{"--emulator", "--emulator-addr", "example.com:8787"}, nil, []string{"--emulator-addr", "loopback"}},
		{"emulator port zero", []string{"--emulator", "--emulator-addr", "127.0.0.1:0"}, nil, []string{"--emulator-addr", "port"}},
		{"emulator env no port", []string{"--emulator"}, []string{"CBKGATE_EMULATOR_ADDR", "localhost"}, []string{"CBKGATE_EMULATOR_ADDR"}},
		{"emulator secret empty", []string{"--emulator", "--emulator-secret="}, nil, []string{"--emulator-secret"}},
		{"emulator secret with space", []string{"--emulator", "--emulator-secret", split}, nil, []string{"--emulator-secret"}},
		{"emulator addr without emulator", []string{"--emulator-addr", "127.0.0.1:1"}, nil, []string{"--emulator-addr", "--emulator"}},
		{"emulator secret env without emulator", nil, []string{"CBKGATE_EMULATOR_SECRET", distinct}, []string{"CBKGATE_EMULATOR_SECRET", "--emulator"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, envOf(tc.env...))
			if err == nil {
				t.Fatalf("Load succeeded (auth mode %q), want an error", c.AuthMode())
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
			if errors.Is(err, flag.ErrHelp) {
				t.Errorf("error wraps flag.ErrHelp: %s", msg)
			}
			assertNoLeak(t, "error", msg)
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		c, err := Load([]string{arg}, envOf(EnvAPISecret, distinct))
		if c != nil || !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: got %v, %v; want flag.ErrHelp", arg, c, err)
		}
	}
}

func TestUsage(t *testing.T) {
	u := Usage()
	want := []string{EnvAPISecret, EnvAPISecretFile}
	for _, s := range settings {
		want = append(want, "--"+s.flag, s.env)
		if s.def != "" {
			want = append(want, `"`+s.def+`"`)
		}
	}
	for _, w := range want {
		if !strings.Contains(u, w) {
			t.Errorf("Usage does not mention %s", w)
		}
	}
	// The table must cover every flag the contract names.
	for _, f := range []string{"grpc-addr", "http-addr", "upstream", "api-keys-file", "tls-cert", "tls-key", "tls-client-ca",
		"allow-unauthenticated", "cors-origins", "emulator", "emulator-addr", "emulator-secret", "log-level", "log-format", "shutdown-timeout", "max-connection-age"} {
		if !strings.Contains(u, "--"+f+"\n") && !strings.Contains(u, "--"+f+" ") {
			t.Errorf("Usage lacks --%s", f)
		}
	}
}

// TestPrintedConfigHidesSecrets: a Config logged or printed at startup must
// not reveal the held secret or the API keys.
func TestPrintedConfigHidesSecrets(t *testing.T) {
	keys := writeFile(t, t.TempDir(), "keys", distinct+"-key\n")
	c := mustLoad(t, []string{"--api-keys-file", keys}, EnvAPISecret, distinct)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	for _, s := range []string{fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", *c), fmt.Sprint(c.APIKeys), buf.String()} {
		assertNoLeak(t, "printed config", s)
	}
	if !strings.Contains(buf.String(), `"auth_mode":"api-keys"`) || !strings.Contains(buf.String(), `"api_keys":1`) {
		t.Errorf("log summary lacks auth mode or key count: %s", buf.String())
	}
}
