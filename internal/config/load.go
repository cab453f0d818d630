package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"

	"github.com/cbkgate/cbkgate/internal/auth"
	"github.com/cbkgate/cbkgate/internal/secret"
)

// load runs the stages in order: read the command line, then the settings
// every mode shares (dev mode first, as it changes the listen defaults),
// then the paths internal/auth reads, then the upstream, which dev mode
// derives from the emulator and every other mode takes from --upstream.
func load(args []string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	in, err := parseCommandLine(args, getenv)
	if err != nil {
		return nil, err
	}
	c := &Config{sources: map[string]string{}}
	for _, st := range settings {
		c.sources[st.flag] = in.blame(st.flag)
	}
	if err := in.serving(c); err != nil {
		return nil, err
	}
	in.authInputs(c)
	if err := in.console(c); err != nil {
		return nil, err
	}
	if c.Emulator {
		err = in.devMode(c)
	} else {
		err = in.realUpstream(c)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parseCommandLine parses args into a FlagSet built from the settings
// table and returns the input that resolves each setting.
func parseCommandLine(args []string, getenv func(string) string) (*input, error) {
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
		return nil, fmt.Errorf("command line: %d unexpected argument(s); cbkgate takes flags only", fs.NArg())
	}
	if *showVersion {
		return nil, ErrVersion
	}
	fs.Visit(func(f *flag.Flag) { in.set[f.Name] = true })
	return in, nil
}

// serving reads the settings every mode shares: dev mode, listeners,
// logging, shutdown, connection age, caller rate, CORS and --allow-unauthenticated.
func (in *input) serving(c *Config) error {
	var err error
	// Dev mode first: it changes the defaults of the listen addresses.
	if c.Emulator, err = in.boolean(fEmulator); err != nil {
		return err
	}
	in.emulator = c.Emulator
	if c.GRPCAddr, err = in.addr(fGRPCAddr); err != nil {
		return err
	}
	if c.HTTPAddr, err = in.addr(fHTTPAddr); err != nil {
		return err
	}
	if c.AdminAddr, err = in.adminAddr(); err != nil {
		return err
	}
	if c.LogLevel, err = in.logLevel(); err != nil {
		return err
	}
	if c.LogFormat, err = in.logFormat(); err != nil {
		return err
	}
	if c.ShutdownTimeout, err = in.shutdownTimeout(); err != nil {
		return err
	}
	if c.MaxConnectionAge, err = in.maxConnectionAge(); err != nil {
		return err
	}
	if c.CallerRate, err = in.callerRate(); err != nil {
		return err
	}
	if err = in.stateSettings(c); err != nil {
		return err
	}
	if c.EmulatorLatency, err = in.emulatorLatency(); err != nil {
		return err
	}
	if c.CORSOrigins, err = in.corsOrigins(); err != nil {
		return err
	}
	c.allowUnauthenticated, err = in.boolean(fAllowUnauth)
	return err
}

// authInputs copies the paths and the secret internal/auth checks and
// reads; nothing about them is judged here.
func (in *input) authInputs(c *Config) {
	c.apiKeysFile, _, _ = in.get(fAPIKeysFile)
	c.grantsFile, _, _ = in.get(fGrantsFile)
	c.TLSCertFile, _, _ = in.get(fTLSCert)
	c.tlsKeyFile, _, _ = in.get(fTLSKey)
	c.tlsClientCAFile, _, _ = in.get(fTLSClientCA)
	c.APISecret, c.apiSecretFile = secret.Value(in.getenv(EnvAPISecret)), in.getenv(envAPISecretFile)
}

// console reads --console, which pass-through mode refuses: there each
// caller's Bearer is ChatBotKit's secret itself, and the page would ask
// operators to type it into a web page.
func (in *input) console(c *Config) error {
	var err error
	if c.Console, err = in.boolean(fConsole); err != nil || !c.Console {
		return err
	}
	if !c.Emulator && c.APISecret == "" && c.apiSecretFile == "" {
		return fmt.Errorf("%s needs a held secret (%s or %s): in pass-through mode the page would ask operators for ChatBotKit's own secret",
			in.blame(fConsole), EnvAPISecret, envAPISecretFile)
	}
	return nil
}

// realUpstream takes the upstream from --upstream. The emulator's settings
// are refused when given: ignoring them would hide a typo'd or forgotten
// --emulator.
func (in *input) realUpstream(c *Config) error {
	for _, name := range []string{fEmulatorAddr, fEmulatorSecret} {
		if _, src, explicit := in.get(name); explicit {
			return fmt.Errorf("%s needs --emulator", src)
		}
	}
	c.EmulatorAddr, _, _ = in.get(fEmulatorAddr)
	c.EmulatorSecret = secret.Value(in.byFlag[fEmulatorSecret].def)
	var err error
	c.Upstream, err = in.upstream()
	return err
}

// devMode derives the upstream from the emulator settings. A real
// upstream is a conflict, because dev mode talks to the emulator; picking
// one silently would leave the operator unsure which they got. (What dev
// mode means for authentication is internal/auth's to check.)
func (in *input) devMode(c *Config) error {
	emu := in.blame(fEmulator)
	if _, src, explicit := in.get(fUpstream); explicit {
		return fmt.Errorf("%s conflicts with %s: dev mode's upstream is the emulator", emu, src)
	}

	addr, src, _ := in.get(fEmulatorAddr)
	host, port, err := splitAddr(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: %v", src, addr, err)
	}
	if !isLoopback(host) {
		// The emulator accepts a well-known secret: on any other interface
		// anyone who can reach it could mint tokens against it.
		return fmt.Errorf("%s: %q: not a loopback address", src, addr)
	}
	if port == 0 {
		// The upstream URL is derived from this address before the
		// emulator listens, so the port must be known now.
		return fmt.Errorf("%s: %q: needs a fixed port, not 0", src, addr)
	}
	c.EmulatorAddr = addr
	c.Upstream = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port))}

	v, src, _ := in.get(fEmulatorSecret)
	if c.EmulatorSecret, err = auth.ParseSecret(src, v); err != nil {
		return err
	}
	return nil
}
