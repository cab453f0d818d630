package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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
				{"APISecret", c.APISecret, secret.Value("")},
				{"apiSecretFile", c.apiSecretFile, ""},
				{"apiKeysFile", c.apiKeysFile, ""},
				{"TLSCertFile", c.TLSCertFile, ""},
				{"tlsKeyFile", c.tlsKeyFile, ""},
				{"tlsClientCAFile", c.tlsClientCAFile, ""},
				{"allowUnauthenticated", c.allowUnauthenticated, false},
				{"CORSOrigins", len(c.CORSOrigins), 0},
				{"Emulator", c.Emulator, false},
				{"EmulatorAddr", c.EmulatorAddr, "127.0.0.1:8787"},
				{"EmulatorSecret", c.EmulatorSecret.Reveal(), "emulator"},
				{"LogLevel", c.LogLevel, slog.LevelInfo},
				{"LogFormat", c.LogFormat, logJSON},
				{"ShutdownTimeout", c.ShutdownTimeout, 20 * time.Second},
				{"MaxConnectionAge", c.MaxConnectionAge, 5 * time.Minute},
				{"CallerRate", c.CallerRate, 0},
				{"Console", c.Console, false},
				{"EmulatorLatency", c.EmulatorLatency, time.Duration(0)},
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
		{flag: "caller-rate", env: "CBKGATE_CALLER_RATE", flagVal: "5", envVal: "20",
			get: func(c *Config) string { return strconv.Itoa(c.CallerRate) }, wantFlag: "5", wantEnv: "20"},
		{flag: "emulator-latency", env: "CBKGATE_EMULATOR_LATENCY", flagVal: "50ms", envVal: "1s",
			get: func(c *Config) string { return c.EmulatorLatency.String() }, wantFlag: "50ms", wantEnv: "1s"},
		{flag: "cors-origins", env: "CBKGATE_CORS_ORIGINS", flagVal: "https://a.example", envVal: "*",
			get: func(c *Config) string { return strings.Join(c.CORSOrigins, ",") }, wantFlag: "https://a.example", wantEnv: "*"},
		{flag: "emulator-addr", env: "CBKGATE_EMULATOR_ADDR", flagVal: "localhost:1234", envVal: "[::1]:4321",
			get:      func(c *Config) string { return c.EmulatorAddr + " " + c.Upstream.String() },
			wantFlag: "localhost:1234 http://localhost:1234", wantEnv: "[::1]:4321 http://[::1]:4321",
			extraArgs: []string{"--emulator"}},
		{flag: "emulator-secret", env: "CBKGATE_EMULATOR_SECRET", flagVal: "dev-flag", envVal: "dev-env",
			get:      func(c *Config) string { return c.EmulatorSecret.Reveal() },
			wantFlag: "dev-flag", wantEnv: "dev-env",
			extraArgs: []string{"--emulator"}},
		{flag: "allow-unauthenticated", env: "CBKGATE_ALLOW_UNAUTHENTICATED", flagVal: "true", envVal: "1",
			get:      func(c *Config) string { return fmt.Sprint(c.allowUnauthenticated) },
			wantFlag: "true", wantEnv: "true",
			extraEnv: []string{EnvAPISecret, distinct}},
		{flag: "console", env: "CBKGATE_CONSOLE", flagVal: "true", envVal: "1",
			get:      func(c *Config) string { return fmt.Sprint(c.Console) },
			wantFlag: "true", wantEnv: "true",
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
		if len(c.CORSOrigins) != 0 || c.apiKeysFile != "" || c.Auth().KeysFile != "" {
			t.Fatalf("CORS %q, keys file %q: want both empty", c.CORSOrigins, c.apiKeysFile)
		}
	})
	t.Run("api keys file", func(t *testing.T) {
		env := []string{EnvAPISecret, distinct, "CBKGATE_API_KEYS_FILE", other}
		if c := mustLoad(t, []string{"--api-keys-file", keys}, env...); c.apiKeysFile != keys || c.source("api-keys-file") != "--api-keys-file" {
			t.Fatalf("flag: got %q from %s", c.apiKeysFile, c.source("api-keys-file"))
		}
		if c := mustLoad(t, nil, env...); c.apiKeysFile != other || c.source("api-keys-file") != "CBKGATE_API_KEYS_FILE" {
			t.Fatalf("env: got %q from %s", c.apiKeysFile, c.source("api-keys-file"))
		}
	})
	t.Run("grants file", func(t *testing.T) {
		env := []string{EnvAPISecret, distinct, "CBKGATE_GRANTS_FILE", other}
		if a := mustLoad(t, []string{"--grants-file", keys}, env...).Auth(); a.GrantsFile != keys || a.Source("grants-file") != "--grants-file" {
			t.Fatalf("flag: got %q from %s", a.GrantsFile, a.Source("grants-file"))
		}
		if a := mustLoad(t, nil, env...).Auth(); a.GrantsFile != other || a.Source("grants-file") != "CBKGATE_GRANTS_FILE" {
			t.Fatalf("env: got %q from %s", a.GrantsFile, a.Source("grants-file"))
		}
	})
	t.Run("single dash flags", func(t *testing.T) {
		c := mustLoad(t, []string{"-grpc-addr", ":1", "-emulator"})
		if c.GRPCAddr != ":1" || !c.Emulator {
			t.Fatalf("got %q %v", c.GRPCAddr, c.Emulator)
		}
	})
}

// TestAuthSettings: the authentication settings are passed on as given, for
// internal/auth to check and read (its tests cover what they mean).
func TestAuthSettings(t *testing.T) {
	c := mustLoad(t, []string{"--api-keys-file", "/k", "--tls-cert", "/c", "--tls-key", "/k2", "--tls-client-ca", "/ca",
		"--allow-unauthenticated", "--cors-origins", "*"},
		EnvAPISecret, " "+distinct+"\n", envAPISecretFile, "/s")
	a := c.Auth()
	if a.Secret.Reveal() != " "+distinct+"\n" || a.SecretFile != "/s" || a.KeysFile != "/k" || a.TLSCertFile != "/c" || a.TLSKeyFile != "/k2" ||
		a.TLSClientCAFile != "/ca" || !a.AllowUnauthenticated || a.Emulator || !a.AnyOrigin {
		t.Fatalf("auth settings %+v", a)
	}
	if src := a.Source("tls-client-ca"); src != "--tls-client-ca" {
		t.Errorf("Source(tls-client-ca) = %q", src)
	}
	c = mustLoad(t, []string{"--emulator", "--emulator-secret", "dev"}, "CBKGATE_API_KEYS_FILE", "/env-k")
	if a := c.Auth(); !a.Emulator || a.EmulatorSecret.Reveal() != "dev" || a.KeysFile != "/env-k" || a.Source("api-keys-file") != "CBKGATE_API_KEYS_FILE" || a.AnyOrigin {
		t.Fatalf("dev auth settings %+v from %s", a, a.Source("api-keys-file"))
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
	p := testpki.WriteFiles(t)
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
		{"served over TLS", []string{"--emulator", "--tls-cert", p.CertFile, "--tls-key", p.KeyFile}, nil, "http://127.0.0.1:8787", "emulator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.args, tc.env...)
			if !c.Emulator || c.Upstream.String() != tc.wantUpstream || c.EmulatorSecret.Reveal() != tc.wantSecret {
				t.Fatalf("emulator %v upstream %q secret %q", c.Emulator, c.Upstream, c.EmulatorSecret.Reveal())
			}
		})
	}
}

// TestErrors: values that do not parse. (Which authentication settings go
// together, and what the credential files hold, is internal/auth's:
// see its TestLoadErrors.)
func TestErrors(t *testing.T) {
	split := distinct[:8] + " " + distinct[8:]

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
		{"caller rate negative", []string{"--caller-rate", "-1"}, held(), []string{"--caller-rate"}},
		{"caller rate not a number env", nil, held("CBKGATE_CALLER_RATE", "fast"), []string{"CBKGATE_CALLER_RATE"}},
		{"caller rate fractional", []string{"--caller-rate", "2.5"}, held(), []string{"--caller-rate"}},
		{"emulator latency negative", []string{"--emulator-latency", "-1s"}, held(), []string{"--emulator-latency"}},
		{"emulator latency bare number", []string{"--emulator-latency", "50"}, held(), []string{"--emulator-latency"}},

		// the console: never in pass-through mode
		{"console in pass-through", []string{"--console"}, nil, []string{"--console", "pass-through", EnvAPISecret}},
		{"console env in pass-through", nil, []string{"CBKGATE_CONSOLE", "true"}, []string{"CBKGATE_CONSOLE", "pass-through"}},
		{"console not a boolean", []string{"--console=maybe"}, held(), []string{"-console"}},
		{"console env not a boolean", nil, held("CBKGATE_CONSOLE", "yes please"), []string{"CBKGATE_CONSOLE"}},

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

		// dev mode
		{"emulator with upstream flag", []string{"--emulator", "--upstream", "https://api.chatbotkit.com"}, nil, []string{"--emulator", "--upstream"}},
		{"emulator with upstream env", []string{"--emulator"}, []string{"CHATBOTKIT_BASE_URL", "https://api.chatbotkit.com"}, []string{"--emulator", "CHATBOTKIT_BASE_URL"}},
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
				t.Fatalf("Load succeeded (%+v), want an error", c)
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
	want := []string{EnvAPISecret, envAPISecretFile}
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
		"allow-unauthenticated", "cors-origins", "emulator", "emulator-addr", "emulator-secret", "log-level", "log-format", "shutdown-timeout", "max-connection-age", "caller-rate", "emulator-latency", "grants-file", "console", "state", "state-key-file"} {
		if !strings.Contains(u, "--"+f+"\n") && !strings.Contains(u, "--"+f+" ") {
			t.Errorf("Usage lacks --%s", f)
		}
	}
}

// TestPrintedConfigHidesSecrets: a Config logged or printed at startup must
// not reveal the held secret or the API keys.
func TestPrintedConfigHidesSecrets(t *testing.T) {
	keys := writeFile(t, t.TempDir(), "keys", distinct+"-key\n")
	c := mustLoad(t, []string{"--api-keys-file", keys}, EnvAPISecret, distinct, envAPISecretFile, "/s")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	for _, s := range []string{fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", *c), fmt.Sprint(c.Auth()), fmt.Sprintf("%+v", c.Auth()), buf.String()} {
		assertNoLeak(t, "printed config", s)
	}
	if !strings.Contains(buf.String(), `"api_keys_file":"`+keys+`"`) {
		t.Errorf("log summary lacks the keys file: %s", buf.String())
	}
}

// TestConsole: the console is on in dev mode unless switched off, off
// elsewhere unless switched on, and needs a held secret (from the
// environment or a file) outside dev mode.
func TestConsole(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want bool
	}{
		{"dev mode", []string{"--emulator"}, nil, true},
		{"dev mode switched off", []string{"--emulator", "--console=false"}, nil, false},
		{"dev mode switched off by env", []string{"--emulator"}, []string{"CBKGATE_CONSOLE", "false"}, false},
		{"held secret", nil, []string{EnvAPISecret, distinct}, false},
		{"held secret with --console", []string{"--console"}, []string{EnvAPISecret, distinct}, true},
		{"secret file with --console", []string{"--console"}, []string{envAPISecretFile, "/run/secret"}, true},
		{"pass-through", nil, nil, false},
		{"pass-through with --console=false", []string{"--console=false"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := mustLoad(t, tc.args, tc.env...); c.Console != tc.want {
				t.Errorf("Console = %v, want %v", c.Console, tc.want)
			}
		})
	}
}

// TestLogValueDurations: the startup summary prints durations as the
// flags take them ("20s"), in JSON and text logs, never in nanoseconds.
func TestLogValueDurations(t *testing.T) {
	c := mustLoad(t, []string{"--max-connection-age=90s"})
	var js, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "config", c)
	for _, want := range []string{`"shutdown_timeout":"20s"`, `"max_connection_age":"1m30s"`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON summary lacks %s: %s", want, js.String())
		}
	}
	for _, want := range []string{"config.shutdown_timeout=20s", "config.max_connection_age=1m30s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text summary lacks %s: %s", want, text.String())
		}
	}
}

// TestDevModeListensOnLoopback: dev mode lets every caller in, so unless
// told otherwise it listens on loopback only; given addresses win.
func TestDevModeListensOnLoopback(t *testing.T) {
	c := mustLoad(t, []string{"--emulator"})
	if c.GRPCAddr != "127.0.0.1:9090" || c.HTTPAddr != "127.0.0.1:8080" || c.AdminAddr != "127.0.0.1:9091" {
		t.Errorf("dev mode listens on %q, %q and %q, want 127.0.0.1:9090, 127.0.0.1:8080 and 127.0.0.1:9091", c.GRPCAddr, c.HTTPAddr, c.AdminAddr)
	}
	if c := mustLoad(t, []string{"--emulator", "--admin-addr="}); c.AdminAddr != "" {
		t.Errorf("dev mode with --admin-addr= listens on %q for metrics, want none", c.AdminAddr)
	}
	c = mustLoad(t, []string{"--emulator", "--grpc-addr", ":9090"}, "CBKGATE_HTTP_ADDR", ":8080")
	if c.GRPCAddr != ":9090" || c.HTTPAddr != ":8080" {
		t.Errorf("dev mode with addresses given listens on %q and %q, want :9090 and :8080", c.GRPCAddr, c.HTTPAddr)
	}
	c = mustLoad(t, nil)
	if c.GRPCAddr != ":9090" || c.HTTPAddr != ":8080" || c.AdminAddr != ":9091" {
		t.Errorf("outside dev mode the defaults are %q and %q, want :9090 and :8080", c.GRPCAddr, c.HTTPAddr)
	}
}
