// Package auth is cbkgate's whole authentication policy: which ChatBotKit
// secret a call spends upstream, who the caller is, and whether it may call
// at all.
//
// From the raw settings the configuration parsed (the secret's source, the
// API keys file, the TLS files, --allow-unauthenticated, dev mode) Load
// decides the mode, refuses combinations that contradict each other or
// would mean weaker authentication than the operator asked for, reads the
// credential files, and returns an Authenticator that provides everything
// the servers need: the gRPC interceptors, the HTTP middleware with its one
// 401 challenge, the listeners' TLS configuration (client certificate
// setting included), and reloading of the credential files without a
// restart.
//
// There are two families of mode. In pass-through mode cbkgate holds no
// secret: every call carries "authorization: Bearer <ChatBotKit secret>",
// which is forwarded upstream as is and checked there; cbkgate only insists
// that it is present and well formed, so that a call without one never
// reaches upstream. In held-secret modes cbkgate spends its own secret, so
// it must first know the caller: by an API key sent as a Bearer value, by a
// verified TLS client certificate, or not at all when the operator (or dev
// mode) has said so explicitly.
//
// Every admitted call carries its caller's identity (see Caller). HTTP
// callers of the JSON gateway are authenticated by HTTPMiddleware; the
// gateway then reaches the gRPC server over an in-process connection and
// hands the identity over in metadata that the interceptors believe only
// from that connection (see GatewayMetadata).
//
// Authorization follows authentication: grants.go holds each caller to the
// grants of --grants-file (what it may do, for which users).
//
// Nothing here logs except the outcome of a reload and, once at start, the
// grants policy (LogGrants); no error message carries the characters of a
// credential.
package auth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/cbkgate/cbkgate/internal/secret"
)

// Environment variables that hold the upstream secret. There are no flags
// for it on purpose: a flag would put it in `ps` output and shell history.
const (
	EnvAPISecret     = "CHATBOTKIT_API_SECRET"
	EnvAPISecretFile = "CHATBOTKIT_API_SECRET_FILE"
)

// The flags whose values Config holds, as Config.Source is asked about them.
const (
	FlagAPIKeysFile = "api-keys-file"
	FlagTLSCert     = "tls-cert"
	FlagTLSKey      = "tls-key"
	FlagTLSClientCA = "tls-client-ca"
	FlagAllowUnauth = "allow-unauthenticated"
	FlagEmulator    = "emulator"
	FlagCORSOrigins = "cors-origins"
)

// Config is what Load decides from: the raw settings, as parsed, and the
// hooks the servers wire in.
type Config struct {
	// Secret is CHATBOTKIT_API_SECRET as set (zero when unset).
	Secret secret.Value
	// SecretFile is CHATBOTKIT_API_SECRET_FILE, a path ("" when unset).
	SecretFile string
	// KeysFile is --api-keys-file, a path ("" when unset).
	KeysFile string
	// GrantsFile is --grants-file, a path ("" when unset: every
	// authenticated caller may do everything). See grants.go.
	GrantsFile string
	// TLSCertFile, TLSKeyFile and TLSClientCAFile are the PEM files of
	// --tls-cert, --tls-key and --tls-client-ca ("" when unset).
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// AllowUnauthenticated is --allow-unauthenticated.
	AllowUnauthenticated bool
	// Emulator is dev mode: EmulatorSecret is held and every caller is let
	// in.
	Emulator       bool
	EmulatorSecret secret.Value
	// AnyOrigin is --cors-origins '*': any web page may call the HTTP API.
	AnyOrigin bool
	// Source names where a flag's value came from ("--api-keys-file" or
	// "CBKGATE_API_KEYS_FILE"), so errors blame what the operator set. Nil
	// means "--" + the flag.
	Source func(flag string) string

	// TrustedPeer reports whether a gRPC connection comes from cbkgate's own
	// in-process JSON gateway, whose calls HTTPMiddleware has already
	// authenticated. Nil means no peer is trusted.
	TrustedPeer func(net.Addr) bool
	// OnHTTPRefused, if set, is told of every HTTP request HTTPMiddleware
	// refuses, with the ErrorInfo reason (MISSING_CREDENTIALS or
	// INVALID_CREDENTIALS) and the message it answered. Such a request
	// never reaches the gRPC server, so this is where it can be logged and
	// counted. Neither carries a presented credential.
	OnHTTPRefused func(r *http.Request, reason, message string)
	// Log receives one line per reload (info when it worked, error when it
	// did not). Nil discards them.
	Log *slog.Logger
	// OnReload, if set, is told the outcome of every reload: nil, or the
	// error it failed with (metrics count these).
	OnReload func(err error)
}

func (c *Config) source(flag string) string {
	if c.Source != nil {
		if s := c.Source(flag); s != "" {
			return s
		}
	}
	return "--" + flag
}

// Mode names, as the startup log line shows them.
const (
	modePassThrough         = "pass-through"
	modeAPIKeys             = "api-keys"
	modeClientCert          = "client-cert"
	modeAPIKeysOrClientCert = "api-keys+client-cert"
	modeUnauthenticated     = "unauthenticated"
)

// Authenticator applies one authentication mode to gRPC calls and HTTP
// requests. The mode is fixed at Load; the credentials (keys, held secret,
// server certificate) can be reloaded. It is safe for concurrent use.
type Authenticator struct {
	passThrough bool
	allowAll    bool
	acceptKeys  bool
	acceptCerts bool

	files     credentialFiles
	clientCAs *x509.CertPool

	// creds is swapped whole by a reload; each call reads it once, so a
	// call in flight keeps the credentials it started with.
	creds atomic.Pointer[credentials]

	trustedPeer   func(net.Addr) bool
	onHTTPRefused func(*http.Request, string, string)
	log           *slog.Logger
	onReload      func(error)
	reloadMu      sync.Mutex // one reload at a time
	// loadedDigest is the files' contents digest taken just before Load
	// read them: Watch's starting point, so a change made while Load ran
	// is not missed.
	loadedDigest [sha256.Size]byte
}

// Load checks the settings, reads the credential files and returns the
// Authenticator. Its errors are one line naming the setting at fault (and,
// for a file, the path and line), never a credential.
func Load(c Config) (*Authenticator, error) {
	files, err := c.files()
	if err != nil {
		return nil, err
	}
	held := files.secretSource != "" || c.Emulator
	a := &Authenticator{
		passThrough:   !held,
		allowAll:      held && (c.AllowUnauthenticated || c.Emulator),
		acceptKeys:    held && c.KeysFile != "",
		acceptCerts:   held && c.TLSClientCAFile != "",
		files:         files,
		trustedPeer:   c.TrustedPeer,
		onHTTPRefused: c.OnHTTPRefused,
		log:           c.Log,
		onReload:      c.OnReload,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.loadedDigest = contentsDigest(files.paths())
	// The files first, so that a missing or broken file is reported as
	// what it is, whatever else is wrong.
	creds, err := files.load()
	if err != nil {
		return nil, err
	}
	if err := c.checkCombination(files.secretSource); err != nil {
		return nil, err
	}
	if err := c.checkGrants(held); err != nil {
		return nil, err
	}
	if c.TLSClientCAFile != "" {
		if a.clientCAs, err = loadClientCAs(c.source(FlagTLSClientCA), c.TLSClientCAFile); err != nil {
			return nil, err
		}
	}
	a.creds.Store(creds)
	return a, nil
}

// files resolves where each credential comes from, and refuses settings
// that cannot be read as one credential each.
func (c *Config) files() (credentialFiles, error) {
	f := credentialFiles{
		keysSource: c.source(FlagAPIKeysFile), keysFile: c.KeysFile,
		certSource: c.source(FlagTLSCert), certFile: c.TLSCertFile,
		keySource: c.source(FlagTLSKey), keyFile: c.TLSKeyFile,
		grantsSource: c.source(FlagGrantsFile), grantsFile: c.GrantsFile,
	}
	switch {
	case !c.Secret.IsZero() && c.SecretFile != "":
		return f, fmt.Errorf("%s and %s are both set: set only one", EnvAPISecret, EnvAPISecretFile)
	case !c.Secret.IsZero():
		v, err := ParseSecret(EnvAPISecret, c.Secret.Reveal())
		if err != nil {
			return f, err
		}
		f.secretSource, f.fixedSecret = EnvAPISecret, v
	case c.SecretFile != "":
		f.secretSource, f.secretFile = EnvAPISecretFile, c.SecretFile
	case c.Emulator:
		f.fixedSecret = c.EmulatorSecret
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return f, fmt.Errorf("%s and %s go together: set both or neither", f.certSource, f.keySource)
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		return f, fmt.Errorf("%s needs %s and %s: client certificates are only seen over TLS",
			c.source(FlagTLSClientCA), f.certSource, f.keySource)
	}
	return f, nil
}

// checkCombination is the one rule of which settings go together. Dev mode
// lets every caller in and holds the emulator's secret; pass-through has
// nothing to guard (upstream checks each caller's own secret); a held
// secret must be guarded by keys or certificates unless the operator
// explicitly lets everyone in; and letting everyone in excludes any
// authentication setting (it would silently mean nothing) and any web page
// on earth (--cors-origins '*').
func (c *Config) checkCombination(secretSource string) error {
	var err error
	switch {
	case c.Emulator:
		err = c.checkDevMode(secretSource)
	case secretSource == "":
		err = c.checkPassThrough()
	default:
		err = c.checkHeldSecret(secretSource)
	}
	if err != nil {
		return err
	}
	return c.checkAnyOrigin(secretSource)
}

// callerAuth reports whether API keys or client certificates are set up.
func (c *Config) callerAuth() (keys, ca bool) {
	return c.KeysFile != "", c.TLSClientCAFile != ""
}

// authSetting names the caller authentication setting given, for errors:
// the keys file if there is one, else the client CA.
func (c *Config) authSetting() string {
	if c.KeysFile != "" {
		return c.source(FlagAPIKeysFile)
	}
	return c.source(FlagTLSClientCA)
}

// checkDevMode: dev mode holds the emulator's secret and lets every
// caller in, so neither another secret nor caller authentication fits.
func (c *Config) checkDevMode(secretSource string) error {
	keys, ca := c.callerAuth()
	switch {
	case secretSource != "":
		emu := c.source(FlagEmulator)
		return fmt.Errorf("%s conflicts with %s: dev mode holds the emulator's secret; unset %s or drop %s", emu, secretSource, secretSource, emu)
	case keys || ca:
		return fmt.Errorf("%s conflicts with %s: dev mode lets every caller in; drop one of them", c.source(FlagEmulator), c.authSetting())
	}
	return nil
}

// checkPassThrough: without a held secret each caller brings its own, so
// caller authentication and letting everyone in would both mean nothing.
func (c *Config) checkPassThrough() error {
	keys, ca := c.callerAuth()
	switch {
	case keys || ca:
		what := "API keys would mean nothing"
		if !keys {
			what = "client certificates would grant nothing"
		}
		return fmt.Errorf("%s needs a held secret (%s or %s): without one cbkgate passes callers' Bearer secrets through and %s",
			c.authSetting(), EnvAPISecret, EnvAPISecretFile, what)
	case c.AllowUnauthenticated:
		return fmt.Errorf("%s needs a held secret (%s or %s): without one every caller must send its own Bearer secret anyway",
			c.source(FlagAllowUnauth), EnvAPISecret, EnvAPISecretFile)
	}
	return nil
}

// checkHeldSecret: a held secret is guarded by keys or certificates, or
// explicitly by nothing, never both.
func (c *Config) checkHeldSecret(secretSource string) error {
	keys, ca := c.callerAuth()
	switch {
	case c.AllowUnauthenticated && (keys || ca):
		return fmt.Errorf("%s contradicts %s: either callers authenticate or they do not; drop one", c.source(FlagAllowUnauth), c.authSetting())
	case !keys && !ca && !c.AllowUnauthenticated:
		return fmt.Errorf("%s is set, so cbkgate would spend that secret on behalf of anyone who connects: set --api-keys-file (CBKGATE_API_KEYS_FILE), or --tls-client-ca (CBKGATE_TLS_CLIENT_CA) with --tls-cert and --tls-key, or pass --allow-unauthenticated (CBKGATE_ALLOW_UNAUTHENTICATED=true) to accept that",
			secretSource)
	}
	return nil
}

// checkAnyOrigin: a mode that lets every caller in spend the held secret
// must not let every web page in too.
func (c *Config) checkAnyOrigin(secretSource string) error {
	if c.AnyOrigin && (c.Emulator || (secretSource != "" && c.AllowUnauthenticated)) {
		open := c.source(FlagAllowUnauth)
		if c.Emulator {
			open = c.source(FlagEmulator)
		}
		return fmt.Errorf("%s \"*\" with %s would let any web page spend the held secret: list the origins allowed, or authenticate callers", c.source(FlagCORSOrigins), open)
	}
	return nil
}

// Mode reports the authentication mode, for the startup log.
func (a *Authenticator) Mode() string {
	switch {
	case a.passThrough:
		return modePassThrough
	case a.allowAll:
		return modeUnauthenticated
	case a.acceptKeys && a.acceptCerts:
		return modeAPIKeysOrClientCert
	case a.acceptKeys:
		return modeAPIKeys
	default:
		return modeClientCert
	}
}

// LogValue implements slog.LogValuer: a summary with counts and paths only.
func (a *Authenticator) LogValue() slog.Value {
	c := a.creds.Load()
	return slog.GroupValue(
		slog.String("mode", a.Mode()),
		slog.String("secret_source", a.files.secretSource),
		slog.String("api_keys_file", a.files.keysFile),
		slog.Int("api_keys", len(c.keys)),
		slog.Bool("client_certs", a.acceptCerts),
		slog.Bool("tls", c.cert != nil),
		slog.String("grants_file", a.files.grantsFile),
	)
}

// String and GoString describe the Authenticator by its mode: printing it
// must never print the credentials it holds.
func (a *Authenticator) String() string   { return "auth.Authenticator(" + a.Mode() + ")" }
func (a *Authenticator) GoString() string { return a.String() }

// ServerTLS returns the TLS configuration of both listeners, or nil for
// plaintext. The certificate is looked up per handshake, so a reloaded one
// serves every new connection. With a client CA a certificate is asked for
// and, if sent, must verify, but it is not demanded: health probes and
// /healthz answer without one, and API keys may stand in for it. The
// interceptors and the middleware then refuse every API call that has
// neither a verified chain nor (where configured) a valid key.
func (a *Authenticator) ServerTLS() *tls.Config {
	if a.files.certFile == "" {
		return nil
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.creds.Load().cert, nil
		},
	}
	if a.clientCAs != nil {
		tc.ClientCAs = a.clientCAs
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc
}
