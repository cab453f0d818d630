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
//
// The files, by job: config.go the Config type and Load; settings.go the
// table of flags, variables and defaults, and Usage; input.go where a
// value comes from (flag, environment, default); load.go the stages of
// Load; parse.go the parser of each kind of value.
package config

import (
	"errors"
	"flag"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// LogFormat is the log output encoding.
type LogFormat string

const (
	logJSON LogFormat = "json"
	logText LogFormat = "text"
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
	// APISecret is CHATBOTKIT_API_SECRET as set; it and apiSecretFile both
	// empty means pass-through (or dev mode). Exported because fmt calls
	// the String method (the redaction) of exported fields only.
	APISecret secret.Value
	// TLSCertFile is the path of the server certificate, read by
	// internal/auth ("" when unset: plaintext).
	TLSCertFile string
	// CORSOrigins are the origins allowed cross-origin access to the HTTP
	// gateway: empty (none), exactly ["*"], or lowercased
	// "scheme://host[:port]" origins.
	CORSOrigins []string

	Emulator       bool
	EmulatorAddr   string       // loopback host:port with a fixed port
	EmulatorSecret secret.Value // the Bearer secret the emulator accepts
	// EmulatorLatency is how long every emulator answer waits (dev mode).
	EmulatorLatency time.Duration // >= 0

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
	// Console serves the token console at /console/ on the HTTP port. Never
	// in pass-through mode, where the page would ask operators for
	// ChatBotKit's own secret.
	Console bool
	// State is --state (its String hides a password).
	State StateURL
	// StateKeyFile is --state-key-file ("" in memory mode).
	StateKeyFile string

	// The rest of the authentication settings, which leave only through
	// Auth. apiSecretFile is CHATBOTKIT_API_SECRET_FILE; it, apiKeysFile,
	// tlsKeyFile and tlsClientCAFile are paths ("" when unset).
	// internal/auth checks and reads them.
	apiSecretFile, apiKeysFile  string
	tlsKeyFile, tlsClientCAFile string
	allowUnauthenticated        bool
	// grantsFile is --grants-file, a path ("" when unset), read by
	// internal/auth like the keys file.
	grantsFile string

	// sources maps each flag to where its value came from ("--flag" or
	// the environment variable), for errors found after Load.
	sources map[string]string
}

// source names where a flag's value came from: "--flag" when given on the
// command line or defaulted, else its environment variable.
func (c *Config) source(flag string) string {
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
		SecretFile:           c.apiSecretFile,
		KeysFile:             c.apiKeysFile,
		GrantsFile:           c.grantsFile,
		TLSCertFile:          c.TLSCertFile,
		TLSKeyFile:           c.tlsKeyFile,
		TLSClientCAFile:      c.tlsClientCAFile,
		AllowUnauthenticated: c.allowUnauthenticated,
		Emulator:             c.Emulator,
		EmulatorSecret:       c.EmulatorSecret,
		AnyOrigin:            anyOrigin,
		Source:               c.source,
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
		slog.String("api_keys_file", c.apiKeysFile),
		slog.String("grants_file", c.grantsFile),
		slog.String("tls_cert", c.TLSCertFile),
		slog.String("tls_client_ca", c.tlsClientCAFile),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Bool("emulator", c.Emulator),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", string(c.LogFormat)),
		// As Go durations ("20s"), the form the flags take, in JSON and
		// text alike: slog's JSON handler writes a Duration in nanoseconds.
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("max_connection_age", c.MaxConnectionAge.String()),
		slog.Int("caller_rate", c.CallerRate),
		slog.Bool("console", c.Console),
		slog.String("state", c.State.String()),
		slog.String("state_key_file", c.StateKeyFile),
		slog.Duration("emulator_latency", c.EmulatorLatency),
	)
}

// Environment variables that hold the upstream secret. There are no flags
// for it on purpose.
const (
	EnvAPISecret     = auth.EnvAPISecret
	envAPISecretFile = auth.EnvAPISecretFile
)

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
