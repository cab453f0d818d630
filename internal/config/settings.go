package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cbkgate/cbkgate/internal/auth"
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

// The flag names. Those internal/auth asks Config.Source about are its
// constants, so the two cannot spell a flag differently.
const (
	fGRPCAddr        = "grpc-addr"
	fHTTPAddr        = "http-addr"
	fAdminAddr       = "admin-addr"
	fUpstream        = "upstream"
	fAPIKeysFile     = auth.FlagAPIKeysFile
	fGrantsFile      = auth.FlagGrantsFile
	fTLSCert         = auth.FlagTLSCert
	fTLSKey          = auth.FlagTLSKey
	fTLSClientCA     = auth.FlagTLSClientCA
	fAllowUnauth     = auth.FlagAllowUnauth
	fCORSOrigins     = auth.FlagCORSOrigins
	fEmulator        = auth.FlagEmulator
	fEmulatorAddr    = "emulator-addr"
	fEmulatorSecret  = "emulator-secret"
	fLogLevel        = "log-level"
	fLogFormat       = "log-format"
	fShutdownTimeout = "shutdown-timeout"
	fMaxConnAge      = "max-connection-age"
	fCallerRate      = "caller-rate"
	fConsole         = "console"
	fEmulatorLatency = "emulator-latency"
	fState           = "state"
	fStateKeyFile    = "state-key-file"
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
	{flag: fGrantsFile, env: "CBKGATE_GRANTS_FILE", arg: "path",
		help: "file of grants, one per line (IDENTITY METHODS USERS, e.g. key:signup create,list acme-*), # comments; without it every authenticated caller may do everything; re-read on SIGHUP and on change (needs a held secret)"},
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
	{flag: fEmulatorLatency, env: "CBKGATE_EMULATOR_LATENCY", def: "0", arg: "duration",
		help: "with --emulator: every emulator answer waits this long, as a real network would make it (e.g. 50ms)"},
	{flag: fLogLevel, env: "CBKGATE_LOG_LEVEL", def: "info", arg: "level",
		help: "debug, info, warn or error"},
	{flag: fLogFormat, env: "CBKGATE_LOG_FORMAT", def: "json", arg: "format",
		help: "json or text"},
	{flag: fShutdownTimeout, env: "CBKGATE_SHUTDOWN_TIMEOUT", def: "20s", arg: "duration",
		help: "how long calls in flight may take to finish after SIGTERM/SIGINT"},
	{flag: fMaxConnAge, env: "CBKGATE_MAX_CONNECTION_AGE", def: "5m", arg: "duration",
		help: "close each gRPC connection gracefully after this long (±10% jitter), so clients rebalance; 0 is unlimited"},
	{flag: fCallerRate, env: "CBKGATE_CALLER_RATE", def: "0", arg: "n",
		help: "upstream requests per second each caller may cause (burst 2n; opening a list stream, each resume and each page count); 0 is no limit"},
	{flag: fConsole, env: "CBKGATE_CONSOLE", def: "false", devDef: "true", isBool: true,
		help: "serve the token console, a web page for operators, at /console/ on the HTTP port (on with --emulator; needs a held secret)"},
	{flag: fState, env: "CBKGATE_STATE", def: "memory", arg: "memory|url",
		help: "where --caller-rate and request_id records live: memory (this replica alone) or redis://[USER:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), shared by every replica"},
	{flag: fStateKeyFile, env: "CBKGATE_STATE_KEY_FILE", arg: "path",
		help: "32-byte key (raw or base64) sealing the request_id records in Redis; required with --state redis://..."},
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
	fmt.Fprintf(&b, "  %s\n        a file holding that secret (surrounding whitespace trimmed); re-read on SIGHUP and on change\n", envAPISecretFile)
	b.WriteString("  With neither set, cbkgate runs pass-through: each caller's Authorization: Bearer is forwarded.\n")
	b.WriteString("\nHealth check (for Docker's HEALTHCHECK; the image has no shell or curl):\n")
	b.WriteString("  cbkgate healthcheck [--http-addr host:port] [--path /readyz] [--tls]\n")
	b.WriteString("        exits 0 if the server's /readyz answers 200, else 1\n")
	return b.String()
}
