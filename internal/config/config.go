// Package config turns cbkgate's command line and environment into a
// validated Config.
//
// Every setting is a flag that can also come from an environment variable
// (flags win, then the environment, then the default), except the upstream
// ChatBotKit secret, which is read only from the environment or a file: a
// flag would put it in `ps` output and shell history.
//
// Load does all the checking of values up front, so that a misconfigured
// server fails at start with one line naming the flag or variable at fault,
// instead of failing on the first call. Settings that would silently be
// ignored are errors for the same reason. Error messages never carry a
// secret's characters: they name the source.
//
// The authentication settings (the secret's source, the keys file, the TLS
// files, --allow-unauthenticated) are only parsed here: which combinations
// are allowed, and reading the credential files, is internal/auth's job,
// since those files are read again on every reload.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// LogFormat is the log output encoding.
type LogFormat string

const (
	LogJSON LogFormat = "json"
	LogText LogFormat = "text"
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
	// APISecret is CHATBOTKIT_API_SECRET as set, APISecretFile
	// CHATBOTKIT_API_SECRET_FILE (a path); both empty means pass-through
	// (or dev mode). internal/auth checks and reads them.
	APISecret     secret.Value
	APISecretFile string

	// APIKeysFile, TLSCertFile, TLSKeyFile and TLSClientCAFile are paths,
	// read by internal/auth ("" when unset).
	APIKeysFile                              string
	TLSCertFile, TLSKeyFile, TLSClientCAFile string

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
	// CallerRate is how many upstream requests per second each caller
	// identity may cause (burst twice that); 0 is no limit.
	CallerRate int // >= 0

	// sources maps each flag to where its value came from ("--flag" or
	// the environment variable), for errors found after Load.
	sources map[string]string
}

// Source names where a flag's value came from: "--flag" when given on the
// command line or defaulted, else its environment variable.
func (c *Config) Source(flag string) string {
	if s, ok := c.sources[flag]; ok {
		return s
	}
	return "--" + flag
}

// Auth is the authentication part of the configuration, as internal/auth
// takes it; the caller adds the hooks.
func (c *Config) Auth() auth.Config {
	anyOrigin := len(c.CORSOrigins) == 1 && c.CORSOrigins[0] == "*"
	return auth.Config{
		Secret:               c.APISecret,
		SecretFile:           c.APISecretFile,
		KeysFile:             c.APIKeysFile,
		TLSCertFile:          c.TLSCertFile,
		TLSKeyFile:           c.TLSKeyFile,
		TLSClientCAFile:      c.TLSClientCAFile,
		AllowUnauthenticated: c.AllowUnauthenticated,
		Emulator:             c.Emulator,
		EmulatorSecret:       c.EmulatorSecret,
		AnyOrigin:            anyOrigin,
		Source:               c.Source,
	}
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
		slog.String("api_keys_file", c.APIKeysFile),
		slog.String("tls_cert", c.TLSCertFile),
		slog.String("tls_client_ca", c.TLSClientCAFile),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Bool("emulator", c.Emulator),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", string(c.LogFormat)),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("max_connection_age", c.MaxConnectionAge),
		slog.Int("caller_rate", c.CallerRate),
	)
}

// Environment variables that hold the upstream secret. There are no flags
// for it on purpose.
const (
	EnvAPISecret     = auth.EnvAPISecret
	EnvAPISecretFile = auth.EnvAPISecretFile
)

// setting is one flag with its environment variable and default. The table
// below is the single source for the FlagSet, the environment lookup and
// Usage, so the three cannot drift apart.
type setting struct {
	flag, env, def string
	// devDef, if set, is the default in dev mode (--emulator): dev mode
	// lets every caller in, so it listens on loopback unless told
	// otherwise.
	devDef string
	arg    string // placeholder shown in Usage; "" for booleans
	help   string
	isBool bool
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
	fCallerRate      = "caller-rate"
)

var settings = []setting{
	{flag: fGRPCAddr, env: "CBKGATE_GRPC_ADDR", def: ":9090", devDef: "127.0.0.1:9090", arg: "host:port",
		help: "gRPC listen address (127.0.0.1:9090 with --emulator)"},
	{flag: fHTTPAddr, env: "CBKGATE_HTTP_ADDR", def: ":8080", devDef: "127.0.0.1:8080", arg: "host:port",
		help: "HTTP listen address: JSON gateway, /healthz, /readyz, /openapi.json (127.0.0.1:8080 with --emulator)"},
	{flag: fAdminAddr, env: "CBKGATE_ADMIN_ADDR", def: ":9091", devDef: "127.0.0.1:9091", arg: "host:port",
		help: "admin listen address (Prometheus /metrics); empty turns it off (127.0.0.1:9091 with --emulator)"},
	{flag: fUpstream, env: "CHATBOTKIT_BASE_URL", def: "https://api.chatbotkit.com", arg: "url",
		help: "ChatBotKit API base URL"},
	{flag: fAPIKeysFile, env: "CBKGATE_API_KEYS_FILE", arg: "path",
		help: "file of caller API keys, one per line (NAME KEY, NAME sha256:HEX or KEY), # comments; re-read on SIGHUP and on change (needs a held secret)"},
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
	{flag: fCallerRate, env: "CBKGATE_CALLER_RATE", def: "0", arg: "n",
		help: "upstream requests per second each caller may cause (burst 2n; list pages count); 0 is no limit"},
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
	fmt.Fprintf(&b, "  %s\n        a file holding that secret (surrounding whitespace trimmed); re-read on SIGHUP and on change\n", EnvAPISecretFile)
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
	fs       *flag.FlagSet
	set      map[string]bool
	getenv   func(string) string
	byFlag   map[string]*setting
	emulator bool // --emulator: devDef defaults apply
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
	if in.emulator && s.devDef != "" {
		return s.devDef, "--" + name, false
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

	c := &Config{sources: map[string]string{}}
	for _, st := range settings {
		c.sources[st.flag] = in.blame(st.flag)
	}
	var err error

	// Dev mode first: it changes the defaults of the listen addresses.
	if c.Emulator, err = in.boolean(fEmulator); err != nil {
		return nil, err
	}
	in.emulator = c.Emulator
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
	if c.CallerRate, err = in.callerRate(); err != nil {
		return nil, err
	}
	if c.CORSOrigins, err = in.corsOrigins(); err != nil {
		return nil, err
	}
	if c.AllowUnauthenticated, err = in.boolean(fAllowUnauth); err != nil {
		return nil, err
	}
	c.APIKeysFile, _, _ = in.get(fAPIKeysFile)
	c.TLSCertFile, _, _ = in.get(fTLSCert)
	c.TLSKeyFile, _, _ = in.get(fTLSKey)
	c.TLSClientCAFile, _, _ = in.get(fTLSClientCA)
	c.APISecret, c.APISecretFile = secret.Value(getenv(EnvAPISecret)), getenv(EnvAPISecretFile)

	if c.Emulator {
		if err := in.devMode(c); err != nil {
			return nil, err
		}
		return c, nil
	}
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
	return c, nil
}

// devMode derives the upstream from the emulator settings. A real
// upstream is a conflict, because dev mode talks to the emulator; picking
// one silently would leave the operator unsure which they got. (What dev
// mode means for authentication is internal/auth's to check.)
func (in *input) devMode(c *Config) error {
	emu := in.blame(fEmulator)
	if _, src, explicit := in.get(fUpstream); explicit {
		return fmt.Errorf("%s conflicts with %s: dev mode talks to the emulator; drop one of them", emu, src)
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
	if c.EmulatorSecret, err = auth.ParseSecret(src, v); err != nil {
		return err
	}
	return nil
}

// adminAddr is --admin-addr: a listen address, or empty for none. In dev
// mode its default is on loopback (its devDef), like every listener's:
// metrics are for the one person trying cbkgate out.
func (in *input) adminAddr() (string, error) {
	if v, _, explicit := in.get(fAdminAddr); explicit && v == "" {
		return "", nil
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

// maxCallerRate keeps 2n (the burst) far from overflowing and is beyond
// any quota ChatBotKit grants.
const maxCallerRate = 1_000_000

func (in *input) callerRate() (int, error) {
	v, src, _ := in.get(fCallerRate)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxCallerRate {
		return 0, fmt.Errorf("%s: %q: not a whole number of requests per second from 0 (no limit) to %d", src, v, maxCallerRate)
	}
	return n, nil
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
