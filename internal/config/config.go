// Package config turns cbkgate's command line and environment into a
// validated Config.
//
// Every setting is a flag that can also come from an environment variable
// (flags win, then the environment, then the default), except the upstream
// ChatBotKit secret, which is read only from the environment or a file: a
// flag would put it in `ps` output and shell history.
//
// Load does all the checking up front, so that a misconfigured server fails
// at start with one line naming the flag or variable at fault, instead of
// failing on the first call or, worse, serving with weaker authentication
// than the operator intended. Settings that would silently be ignored, or
// that contradict each other, are errors for the same reason. Error messages
// never carry a secret's characters: they name the source and, for files,
// the path and line number.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// LogFormat is the log output encoding.
type LogFormat string

const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
)

// AuthMode says how callers authenticate to cbkgate and which secret goes
// upstream.
type AuthMode string

const (
	// AuthPassThrough: no secret is held; each caller's own
	// "authorization: Bearer <ChatBotKit secret>" is forwarded upstream.
	AuthPassThrough AuthMode = "pass-through"
	// AuthAPIKeys: the held secret goes upstream; callers present a key from
	// --api-keys-file as "authorization: Bearer <key>".
	AuthAPIKeys AuthMode = "api-keys"
	// AuthClientCert: the held secret goes upstream; callers present a TLS
	// client certificate that verifies against --tls-client-ca.
	AuthClientCert AuthMode = "client-cert"
	// AuthAPIKeysOrClientCert: both of the above are configured; a caller
	// is in with either a valid API key or a verified client certificate.
	AuthAPIKeysOrClientCert AuthMode = "api-keys+client-cert"
	// AuthNone: the held secret goes upstream and callers are not
	// authenticated (--allow-unauthenticated, or dev mode with --emulator).
	AuthNone AuthMode = "unauthenticated"
)

// Config is cbkgate's validated configuration. Load fills every field; a
// Config built by hand gets no validation.
type Config struct {
	GRPCAddr string // listen address of the gRPC server, host:port
	HTTPAddr string // listen address of the gateway, health and OpenAPI, host:port
	// AdminAddr is the listen address of /metrics, host:port; empty turns
	// the admin listener, and with it metrics collection, off.
	AdminAddr string

	// Upstream is the ChatBotKit API base: absolute http(s), no query,
	// fragment or userinfo, trailing slashes removed so that paths such as
	// "/v1/..." can be appended. In dev mode it is http://EmulatorAddr.
	Upstream *url.URL
	// UpstreamSecret is the held ChatBotKit secret; zero in pass-through
	// mode. In dev mode it is EmulatorSecret.
	UpstreamSecret secret.Value

	// APIKeys are the keys callers may present; empty unless
	// --api-keys-file is set. Duplicates are kept: they are harmless.
	APIKeys     []secret.Value
	APIKeysFile string // path, for logging

	TLSCertFile, TLSKeyFile, TLSClientCAFile string // paths, for logging
	// TLS is the server-side TLS configuration for both listeners, built
	// at load from the files above; nil means plaintext. With a client CA
	// and no API keys, client certificates are required at the handshake
	// (RequireAndVerifyClientCert). With a client CA and API keys, a
	// certificate is verified if sent but not required
	// (VerifyClientCertIfGiven), because a caller may use a key instead: the
	// server must then admit a call only if it carries a valid key or its
	// connection has a verified chain. Treat it as read-only; Clone it to
	// change it.
	TLS *tls.Config

	AllowUnauthenticated bool
	// CORSOrigins are the origins allowed cross-origin access to the HTTP
	// gateway: empty (none), exactly ["*"], or lowercased
	// "scheme://host[:port]" origins.
	CORSOrigins []string

	Emulator       bool
	EmulatorAddr   string       // loopback host:port with a fixed port
	EmulatorSecret secret.Value // the Bearer secret the emulator accepts

	LogLevel        slog.Level // one of Debug, Info, Warn, Error
	LogFormat       LogFormat
	ShutdownTimeout time.Duration // > 0
	// MaxConnectionAge is how long a gRPC connection lives before the server
	// asks the client, gracefully, to reconnect (grpc-go adds ±10% jitter),
	// so that clients behind an L4 balancer spread over new replicas. Zero
	// means unlimited.
	MaxConnectionAge time.Duration // >= 0
}

// AuthMode reports how callers authenticate; see the AuthMode constants.
func (c *Config) AuthMode() AuthMode {
	switch {
	case c.Emulator:
		return AuthNone
	case c.UpstreamSecret.IsZero():
		return AuthPassThrough
	case c.AcceptsAPIKeys() && c.AcceptsClientCerts():
		return AuthAPIKeysOrClientCert
	case c.AcceptsAPIKeys():
		return AuthAPIKeys
	case c.AcceptsClientCerts():
		return AuthClientCert
	default:
		return AuthNone
	}
}

// AcceptsAPIKeys reports whether a caller may authenticate with a key from
// APIKeys. It is false in pass-through and dev mode, where keys mean nothing.
func (c *Config) AcceptsAPIKeys() bool {
	return !c.Emulator && !c.UpstreamSecret.IsZero() && len(c.APIKeys) > 0
}

// AcceptsClientCerts reports whether a caller may authenticate with a TLS
// client certificate verified against TLSClientCAFile.
func (c *Config) AcceptsClientCerts() bool {
	return !c.Emulator && !c.UpstreamSecret.IsZero() &&
		c.TLS != nil && c.TLS.ClientCAs != nil && c.TLS.ClientAuth != tls.NoClientCert
}

// LogValue implements slog.LogValuer: a startup summary with no secrets
// (counts and paths only).
func (c *Config) LogValue() slog.Value {
	upstream := ""
	if c.Upstream != nil {
		upstream = c.Upstream.Redacted()
	}
	return slog.GroupValue(
		slog.String("grpc_addr", c.GRPCAddr),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("admin_addr", c.AdminAddr),
		slog.String("upstream", upstream),
		slog.String("auth_mode", string(c.AuthMode())),
		slog.Bool("holds_upstream_secret", !c.UpstreamSecret.IsZero()),
		slog.String("api_keys_file", c.APIKeysFile),
		slog.Int("api_keys", len(c.APIKeys)),
		slog.Bool("tls", c.TLS != nil),
		slog.String("tls_client_ca", c.TLSClientCAFile),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Bool("emulator", c.Emulator),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", string(c.LogFormat)),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("max_connection_age", c.MaxConnectionAge),
	)
}

// Environment variables that hold the upstream secret. There are no flags
// for it on purpose.
const (
	EnvAPISecret     = "CHATBOTKIT_API_SECRET"
	EnvAPISecretFile = "CHATBOTKIT_API_SECRET_FILE"
)

// Size caps for files read at load, so that pointing a setting at a huge
// file or a device fails instead of exhausting memory.
const (
	maxSecretFile  = 64 << 10
	maxAPIKeysFile = 4 << 20
	maxPEMFile     = 1 << 20
)

// setting is one flag with its environment variable and default. The table
// below is the single source for the FlagSet, the environment lookup and
// Usage, so the three cannot drift apart.
type setting struct {
	flag, env, def string
	arg            string // placeholder shown in Usage; "" for booleans
	help           string
	isBool         bool
}

const (
	fGRPCAddr        = "grpc-addr"
	fHTTPAddr        = "http-addr"
	fAdminAddr       = "admin-addr"
	fUpstream        = "upstream"
	fAPIKeysFile     = "api-keys-file"
	fTLSCert         = "tls-cert"
	fTLSKey          = "tls-key"
	fTLSClientCA     = "tls-client-ca"
	fAllowUnauth     = "allow-unauthenticated"
	fCORSOrigins     = "cors-origins"
	fEmulator        = "emulator"
	fEmulatorAddr    = "emulator-addr"
	fEmulatorSecret  = "emulator-secret"
	fLogLevel        = "log-level"
	fLogFormat       = "log-format"
	fShutdownTimeout = "shutdown-timeout"
	fMaxConnAge      = "max-connection-age"
)

var settings = []setting{
	{flag: fGRPCAddr, env: "CBKGATE_GRPC_ADDR", def: ":9090", arg: "host:port",
		help: "gRPC listen address"},
	{flag: fHTTPAddr, env: "CBKGATE_HTTP_ADDR", def: ":8080", arg: "host:port",
		help: "HTTP listen address (JSON gateway, /healthz, /readyz, /openapi.json)"},
	{flag: fAdminAddr, env: "CBKGATE_ADMIN_ADDR", def: ":9091", arg: "host:port",
		help: "admin listen address (Prometheus /metrics); empty turns it off (dev mode: 127.0.0.1:9091)"},
	{flag: fUpstream, env: "CHATBOTKIT_BASE_URL", def: "https://api.chatbotkit.com", arg: "url",
		help: "ChatBotKit API base URL"},
	{flag: fAPIKeysFile, env: "CBKGATE_API_KEYS_FILE", arg: "path",
		help: "file of caller API keys, one per line, # comments (needs a held secret)"},
	{flag: fTLSCert, env: "CBKGATE_TLS_CERT", arg: "path",
		help: "PEM server certificate (with --tls-key; default plaintext)"},
	{flag: fTLSKey, env: "CBKGATE_TLS_KEY", arg: "path",
		help: "PEM server private key (with --tls-cert)"},
	{flag: fTLSClientCA, env: "CBKGATE_TLS_CLIENT_CA", arg: "path",
		help: "PEM CA bundle; callers may authenticate with client certificates it signs (needs a held secret and --tls-cert)"},
	{flag: fAllowUnauth, env: "CBKGATE_ALLOW_UNAUTHENTICATED", def: "false", isBool: true,
		help: "with a held secret and no API keys or client CA, let any caller in"},
	{flag: fCORSOrigins, env: "CBKGATE_CORS_ORIGINS", arg: "list",
		help: "comma-separated origins (scheme://host[:port]) allowed to call the HTTP gateway, or *"},
	{flag: fEmulator, env: "CBKGATE_EMULATOR", def: "false", isBool: true,
		help: "dev mode: run the in-process ChatBotKit emulator, use it upstream, no caller authentication"},
	{flag: fEmulatorAddr, env: "CBKGATE_EMULATOR_ADDR", def: "127.0.0.1:8787", arg: "host:port",
		help: "emulator listen address (loopback only, fixed port)"},
	{flag: fEmulatorSecret, env: "CBKGATE_EMULATOR_SECRET", def: "emulator", arg: "secret",
		help: "the Bearer secret the emulator accepts (not a real credential)"},
	{flag: fLogLevel, env: "CBKGATE_LOG_LEVEL", def: "info", arg: "level",
		help: "debug, info, warn or error"},
	{flag: fLogFormat, env: "CBKGATE_LOG_FORMAT", def: "json", arg: "format",
		help: "json or text"},
	{flag: fShutdownTimeout, env: "CBKGATE_SHUTDOWN_TIMEOUT", def: "20s", arg: "duration",
		help: "how long calls in flight may take to finish after SIGTERM/SIGINT"},
	{flag: fMaxConnAge, env: "CBKGATE_MAX_CONNECTION_AGE", def: "5m", arg: "duration",
		help: "close each gRPC connection gracefully after this long (±10% jitter), so clients rebalance; 0 is unlimited"},
}

// Usage returns the help text: every flag with its environment variable and
// default, and the secret variables.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: cbkgate [flags]\n\n")
	b.WriteString("Each flag can also be set with the environment variable shown.\n")
	b.WriteString("A flag on the command line wins over the environment, which wins over the default.\n\n")
	b.WriteString("Flags:\n")
	for _, s := range settings {
		head := "  --" + s.flag
		if s.arg != "" {
			head += " " + s.arg
		}
		def := "none"
		if s.def != "" {
			def = strconv.Quote(s.def)
		}
		fmt.Fprintf(&b, "%s\n        %s\n        env %s, default %s\n", head, s.help, s.env, def)
	}
	b.WriteString("  --version\n        print \"cbkgate VERSION (REVISION)\" and exit\n")
	b.WriteString("\nUpstream secret (environment only, never a flag, so it stays out of ps):\n")
	fmt.Fprintf(&b, "  %s\n        the ChatBotKit secret to hold; callers then authenticate to cbkgate\n", EnvAPISecret)
	fmt.Fprintf(&b, "  %s\n        a file holding that secret (surrounding whitespace trimmed)\n", EnvAPISecretFile)
	b.WriteString("  With neither set, cbkgate runs pass-through: each caller's Authorization: Bearer is forwarded.\n")
	b.WriteString("\nHealth check (for Docker's HEALTHCHECK; the image has no shell or curl):\n")
	b.WriteString("  cbkgate healthcheck [--http-addr host:port] [--path /readyz] [--tls]\n")
	b.WriteString("        exits 0 if the server's /readyz answers 200, else 1\n")
	return b.String()
}

// input resolves each setting from the parsed flags, the environment and
// the defaults, and remembers where a value came from so that errors can
// blame the right name.
type input struct {
	fs     *flag.FlagSet
	set    map[string]bool
	getenv func(string) string
	byFlag map[string]*setting
}

// get returns the setting's value, the name to blame for it ("--flag" or
// the environment variable), and whether the operator gave it explicitly.
// An explicitly empty flag (--api-keys-file=) wins over the environment: it
// is how to switch off a variable set elsewhere.
func (in *input) get(name string) (val, src string, explicit bool) {
	s := in.byFlag[name]
	if in.set[name] {
		return in.fs.Lookup(name).Value.String(), "--" + name, true
	}
	if v := in.getenv(s.env); v != "" {
		return v, s.env, true
	}
	return s.def, "--" + name, false
}

// blame returns the name to use in an error about the setting.
func (in *input) blame(name string) string {
	_, src, _ := in.get(name)
	return src
}

func (in *input) boolean(name string) (bool, error) {
	v, src, _ := in.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean (use true or false)", src, v)
	}
	return b, nil
}

// ErrVersion is what Load returns for --version: print the version and
// exit 0.
var ErrVersion = errors.New("version requested")

// Load parses args (without the program name) and the environment, read
// through getenv (nil means an empty environment). Flags win over the
// environment, the environment over defaults; an empty environment value
// counts as unset. "-h" or "--help" returns an error wrapping flag.ErrHelp:
// print Usage and exit 0. Any other error is one line naming the flag or
// variable at fault.
func Load(args []string, getenv func(string) string) (*Config, error) {
	cfg, err := load(args, getenv)
	if err != nil {
		// Belt and braces: the one-line promise must hold even if a wrapped
		// library error ever grows a newline.
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") && !errors.Is(err, flag.ErrHelp) {
			return nil, errors.New(strings.Join(strings.Fields(msg), " "))
		}
		return nil, err
	}
	return cfg, nil
}

func load(args []string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	fs := flag.NewFlagSet("cbkgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	in := &input{fs: fs, set: map[string]bool{}, getenv: getenv, byFlag: map[string]*setting{}}
	for i := range settings {
		s := &settings[i]
		in.byFlag[s.flag] = s
		if s.isBool {
			fs.Bool(s.flag, false, s.help)
		} else {
			fs.String(s.flag, s.def, s.help)
		}
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, fmt.Errorf("%w", err)
		}
		// The flag package names the flag; it echoes a value only for
		// booleans, and no secret is a flag.
		return nil, fmt.Errorf("command line: %v", err)
	}
	if fs.NArg() > 0 {
		// Not echoed: a stray argument may well be a pasted secret.
		return nil, fmt.Errorf("command line: %d unexpected argument(s) after the flags; cbkgate takes flags only (see -h)", fs.NArg())
	}
	if *showVersion {
		return nil, ErrVersion
	}
	fs.Visit(func(f *flag.Flag) { in.set[f.Name] = true })

	c := &Config{}
	var err error

	// Simple values first: each depends on nothing else.
	if c.GRPCAddr, err = in.addr(fGRPCAddr); err != nil {
		return nil, err
	}
	if c.HTTPAddr, err = in.addr(fHTTPAddr); err != nil {
		return nil, err
	}
	if c.AdminAddr, err = in.adminAddr(); err != nil {
		return nil, err
	}
	if c.LogLevel, err = in.logLevel(); err != nil {
		return nil, err
	}
	if c.LogFormat, err = in.logFormat(); err != nil {
		return nil, err
	}
	if c.ShutdownTimeout, err = in.shutdownTimeout(); err != nil {
		return nil, err
	}
	if c.MaxConnectionAge, err = in.maxConnectionAge(); err != nil {
		return nil, err
	}
	if c.CORSOrigins, err = in.corsOrigins(); err != nil {
		return nil, err
	}
	if c.Emulator, err = in.boolean(fEmulator); err != nil {
		return nil, err
	}
	if c.AllowUnauthenticated, err = in.boolean(fAllowUnauth); err != nil {
		return nil, err
	}
	c.APIKeysFile, _, _ = in.get(fAPIKeysFile)
	c.TLSCertFile, _, _ = in.get(fTLSCert)
	c.TLSKeyFile, _, _ = in.get(fTLSKey)
	c.TLSClientCAFile, _, _ = in.get(fTLSClientCA)

	secretVal, secretFile := getenv(EnvAPISecret), getenv(EnvAPISecretFile)
	if secretVal != "" && secretFile != "" {
		return nil, fmt.Errorf("%s and %s are both set: set only one", EnvAPISecret, EnvAPISecretFile)
	}
	secretSrc := ""
	switch {
	case secretVal != "":
		secretSrc = EnvAPISecret
	case secretFile != "":
		secretSrc = EnvAPISecretFile
	}

	// Combinations, checked before any file is read so that a contradictory
	// setup is reported as such rather than as a missing file.
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, fmt.Errorf("%s and %s go together: set both or neither", in.blame(fTLSCert), in.blame(fTLSKey))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		return nil, fmt.Errorf("%s needs %s and %s: client certificates are only seen over TLS",
			in.blame(fTLSClientCA), in.blame(fTLSCert), in.blame(fTLSKey))
	}

	if c.Emulator {
		if err := in.devMode(c, secretSrc); err != nil {
			return nil, err
		}
	} else {
		for _, name := range []string{fEmulatorAddr, fEmulatorSecret} {
			if _, src, explicit := in.get(name); explicit {
				// Ignoring it would hide a typo'd or forgotten --emulator.
				return nil, fmt.Errorf("%s is only used with --emulator, which is not set", src)
			}
		}
		c.EmulatorAddr, _, _ = in.get(fEmulatorAddr)
		c.EmulatorSecret = secret.Value(in.byFlag[fEmulatorSecret].def)
		if c.Upstream, err = in.upstream(); err != nil {
			return nil, err
		}
		if err := in.authCombination(c, secretSrc); err != nil {
			return nil, err
		}
		switch secretSrc {
		case EnvAPISecret:
			if c.UpstreamSecret, err = checkSecret(EnvAPISecret, secretVal); err != nil {
				return nil, err
			}
		case EnvAPISecretFile:
			if c.UpstreamSecret, err = readSecretFile(secretFile); err != nil {
				return nil, err
			}
		}
	}

	if c.APIKeysFile != "" {
		if c.APIKeys, err = readAPIKeys(in.blame(fAPIKeysFile), c.APIKeysFile); err != nil {
			return nil, err
		}
	}
	if c.TLSCertFile != "" {
		if c.TLS, err = in.serverTLS(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// devMode derives the upstream and its secret from the emulator settings.
// Anything that says "use a real upstream" or "authenticate callers" is a
// conflict, because dev mode does the opposite; picking one silently would
// leave the operator unsure which they got.
func (in *input) devMode(c *Config, secretSrc string) error {
	emu := in.blame(fEmulator)
	if secretSrc != "" {
		return fmt.Errorf("%s conflicts with %s: dev mode holds the emulator's secret; unset %s or drop %s", emu, secretSrc, secretSrc, emu)
	}
	if _, src, explicit := in.get(fUpstream); explicit {
		return fmt.Errorf("%s conflicts with %s: dev mode talks to the emulator; drop one of them", emu, src)
	}
	for _, name := range []string{fAPIKeysFile, fTLSClientCA} {
		if v, src, _ := in.get(name); v != "" {
			return fmt.Errorf("%s conflicts with %s: dev mode lets every caller in; drop one of them", emu, src)
		}
	}

	addr, src, _ := in.get(fEmulatorAddr)
	host, port, err := splitAddr(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: %v", src, addr, err)
	}
	if !isLoopback(host) {
		// The emulator accepts a well-known secret: on any other interface
		// anyone who can reach it could mint tokens against it.
		return fmt.Errorf("%s: %q is not a loopback address; the emulator must listen on 127.0.0.1, ::1 or localhost", src, addr)
	}
	if port == 0 {
		// The upstream URL is derived from this address before the
		// emulator listens, so the port must be known now.
		return fmt.Errorf("%s: %q: the emulator needs a fixed port, not 0", src, addr)
	}
	c.EmulatorAddr = addr
	c.Upstream = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port))}

	v, src, _ := in.get(fEmulatorSecret)
	if c.EmulatorSecret, err = checkSecret(src, v); err != nil {
		return err
	}
	c.UpstreamSecret = c.EmulatorSecret
	return nil
}

// authCombination enforces the contract's authentication rules outside dev
// mode. It looks only at which settings are present; files are read later.
func (in *input) authCombination(c *Config, secretSrc string) error {
	keys, ca := c.APIKeysFile != "", c.TLSClientCAFile != ""
	if secretSrc == "" {
		// Pass-through: callers bring their own ChatBotKit secret, which
		// upstream checks; cbkgate has nothing to guard.
		if keys {
			return fmt.Errorf("%s needs a held secret (%s or %s): without one cbkgate passes callers' Bearer secrets through and API keys would mean nothing",
				in.blame(fAPIKeysFile), EnvAPISecret, EnvAPISecretFile)
		}
		if ca {
			return fmt.Errorf("%s needs a held secret (%s or %s): without one cbkgate passes callers' Bearer secrets through and client certificates would grant nothing",
				in.blame(fTLSClientCA), EnvAPISecret, EnvAPISecretFile)
		}
		if c.AllowUnauthenticated {
			return fmt.Errorf("%s needs a held secret (%s or %s): without one every caller must send its own Bearer secret anyway",
				in.blame(fAllowUnauth), EnvAPISecret, EnvAPISecretFile)
		}
		return nil
	}
	if c.AllowUnauthenticated && (keys || ca) {
		other := in.blame(fAPIKeysFile)
		if !keys {
			other = in.blame(fTLSClientCA)
		}
		return fmt.Errorf("%s contradicts %s: either callers authenticate or they do not; drop one", in.blame(fAllowUnauth), other)
	}
	if !keys && !ca && !c.AllowUnauthenticated {
		return fmt.Errorf("%s is set, so cbkgate would spend that secret on behalf of anyone who connects: set --api-keys-file (CBKGATE_API_KEYS_FILE), or --tls-client-ca (CBKGATE_TLS_CLIENT_CA) with --tls-cert and --tls-key, or pass --allow-unauthenticated (CBKGATE_ALLOW_UNAUTHENTICATED=true) to accept that",
			secretSrc)
	}
	return nil
}

// adminAddr is --admin-addr: a listen address, or empty for none. In dev
// mode its default is the loopback address, like the emulator's: metrics
// are for the one person trying cbkgate out.
func (in *input) adminAddr() (string, error) {
	v, _, explicit := in.get(fAdminAddr)
	if explicit && v == "" {
		return "", nil
	}
	if !explicit {
		if emu, err := in.boolean(fEmulator); err == nil && emu {
			return "127.0.0.1:9091", nil
		}
	}
	return in.addr(fAdminAddr)
}

func (in *input) addr(name string) (string, error) {
	v, src, _ := in.get(name)
	if _, _, err := splitAddr(v); err != nil {
		return "", fmt.Errorf("%s: %q: %v", src, v, err)
	}
	return v, nil
}

// splitAddr checks a listen address: host:port with a numeric port. The host
// may be empty (all interfaces).
func splitAddr(v string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, errors.New("not a host:port address: " + ae.Err)
		}
		return "", 0, errors.New("not a host:port address")
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, int(n), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (in *input) upstream() (*url.URL, error) {
	v, src, _ := in.get(fUpstream)
	u, err := url.Parse(v)
	if err != nil {
		// The url.Error would quote the whole value, userinfo included;
		// keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: not a valid URL: %v", src, err)
	}
	// Checked before the value is ever quoted, so a password in it is
	// never echoed.
	if u.User != nil {
		return nil, fmt.Errorf("%s: must not contain userinfo (user:password@); the upstream secret comes from %s or %s", src, EnvAPISecret, EnvAPISecretFile)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: %q: must be an absolute http or https URL", src, v)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%s: %q: must be an absolute URL with a host, like https://api.chatbotkit.com", src, v)
	}
	if u.Port() != "" {
		if _, err := strconv.ParseUint(u.Port(), 10, 16); err != nil {
			return nil, fmt.Errorf("%s: %q: port is not a number from 0 to 65535", src, v)
		}
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return nil, fmt.Errorf("%s: %q: must not have a query or fragment", src, v)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

func (in *input) logLevel() (slog.Level, error) {
	v, src, _ := in.get(fLogLevel)
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%s: %q: must be debug, info, warn or error", src, v)
}

func (in *input) logFormat() (LogFormat, error) {
	v, src, _ := in.get(fLogFormat)
	switch f := LogFormat(strings.ToLower(v)); f {
	case LogJSON, LogText:
		return f, nil
	}
	return "", fmt.Errorf("%s: %q: must be json or text", src, v)
}

func (in *input) shutdownTimeout() (time.Duration, error) {
	v, src, _ := in.get(fShutdownTimeout)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: not a duration (like 20s or 1m30s)", src, v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: %q: must be greater than zero", src, v)
	}
	return d, nil
}

// maxConnectionAgeFloor keeps a typo such as "5ms" from making every client
// reconnect hundreds of times a second.
const maxConnectionAgeFloor = time.Second

func (in *input) maxConnectionAge() (time.Duration, error) {
	v, src, _ := in.get(fMaxConnAge)
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: not a duration (like 5m, or 0 for unlimited)", src, v)
	}
	if d != 0 && d < maxConnectionAgeFloor {
		return 0, fmt.Errorf("%s: %q: must be 0 (unlimited) or at least %s", src, v, maxConnectionAgeFloor)
	}
	return d, nil
}

func (in *input) corsOrigins() ([]string, error) {
	v, src, _ := in.get(fCORSOrigins)
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part == "*" {
			out = append(out, part)
			continue
		}
		o, err := checkOrigin(part)
		if err != nil {
			if strings.Contains(part, "@") {
				// May hold a user:password; say what is wrong without it.
				return nil, fmt.Errorf("%s: an entry contains userinfo (user@ or user:password@); %v", src, err)
			}
			return nil, fmt.Errorf("%s: %q: %v", src, part, err)
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	for _, o := range out {
		if o == "*" && len(out) > 1 {
			return nil, fmt.Errorf("%s: \"*\" allows every origin and cannot be combined with others", src)
		}
	}
	return out, nil
}

// checkOrigin accepts exactly what a browser sends in an Origin header,
// "scheme://host[:port]", and returns it lowercased as browsers send it.
// Anything more (a path, even a lone "/") would never match and is refused
// rather than silently never allowing anyone.
func checkOrigin(s string) (string, error) {
	if strings.Contains(s, "*") {
		return "", errors.New("wildcards are only allowed as \"*\" on its own")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return "", errors.New("not an origin of the form scheme://host[:port]")
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "#") {
		return "", errors.New("an origin is scheme://host[:port] only, with no path (not even a trailing /), query, fragment or userinfo")
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", errors.New("port must be a number from 1 to 65535")
		}
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// checkSecret trims surrounding whitespace and insists on printable ASCII
// without spaces: the value travels in an "authorization: Bearer" header
// (gRPC metadata allows nothing else), so anything else is a mistake such as
// a second line in a file. Errors never quote the value.
func checkSecret(src, v string) (secret.Value, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", fmt.Errorf("%s: the secret is empty", src)
	}
	if !isTokenChars(v) {
		return "", fmt.Errorf("%s: the secret contains spaces, line breaks or non-printable/non-ASCII characters", src)
	}
	return secret.Value(v), nil
}

func isTokenChars(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return false
		}
	}
	return true
}

// readCapped reads at most limit bytes of path and fails if there are more.
func readCapped(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	// A UTF-8 byte order mark from a Windows editor is not part of the value.
	return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), nil
}

func readSecretFile(path string) (secret.Value, error) {
	b, err := readCapped(path, maxSecretFile)
	if err != nil {
		return "", fmt.Errorf("%s: %v", EnvAPISecretFile, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "", fmt.Errorf("%s: %s is empty", EnvAPISecretFile, path)
	}
	if _, err := checkSecret(EnvAPISecretFile, string(b)); err != nil {
		return "", fmt.Errorf("%s: %s: the file must hold just the secret; it contains spaces, more than one line or non-printable/non-ASCII characters", EnvAPISecretFile, path)
	}
	return secret.Value(strings.TrimSpace(string(b))), nil
}

// readAPIKeys parses the keys file: one key per line, surrounding whitespace
// trimmed, blank lines and lines starting with # ignored. Errors give line
// numbers, never content.
func readAPIKeys(src, path string) ([]secret.Value, error) {
	b, err := readCapped(path, maxAPIKeysFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, err)
	}
	var keys []secret.Value
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !isTokenChars(line) {
			return nil, fmt.Errorf("%s: %s line %d: a key must be printable ASCII without spaces (it is sent as authorization: Bearer <key>; comments need their own line)", src, path, i+1)
		}
		keys = append(keys, secret.Value(line))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %s holds no keys (blank lines and lines starting with # are ignored)", src, path)
	}
	return keys, nil
}

// serverTLS loads the key pair and client CA now, so a bad file stops the
// start rather than the first handshake.
func (in *input) serverTLS(c *Config) (*tls.Config, error) {
	certSrc, keySrc := in.blame(fTLSCert), in.blame(fTLSKey)
	certPEM, err := readCapped(c.TLSCertFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", certSrc, err)
	}
	keyPEM, err := readCapped(c.TLSKeyFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", keySrc, err)
	}
	// X509KeyPair's errors describe PEM block types and parse failures,
	// never key material.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %s and %s are not a usable key pair: %v", certSrc, keySrc, c.TLSCertFile, c.TLSKeyFile, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}
	if c.TLSClientCAFile == "" {
		return tc, nil
	}
	caSrc := in.blame(fTLSClientCA)
	caPEM, err := readCapped(c.TLSClientCAFile, maxPEMFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", caSrc, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificates", caSrc, c.TLSClientCAFile)
	}
	tc.ClientCAs = pool
	tc.ClientAuth = tls.RequireAndVerifyClientCert
	if c.APIKeysFile != "" {
		// A caller with an API key and no certificate must get through the
		// handshake; one that sends a certificate must still have it verify.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
