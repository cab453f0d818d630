// Command server runs cbkgate: TokenService over gRPC and JSON in front of
// ChatBotKit's partner user token API. Configuration comes from flags and
// the environment (see --help); `--emulator` runs it against an in-process
// ChatBotKit stand-in for development. SIGTERM or SIGINT drains and stops
// it; SIGHUP reloads the credential files (API keys, secret file, TLS key
// pair).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/version"
)

func main() {
	app.TuneGC()
	os.Exit(run())
}

func run() int {
	if code, ok := runSubcommand(os.Args[1:]); ok {
		return code
	}
	// SIGHUP reloads the credential files. Caught from the start: its
	// default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := config.Load(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stdout, config.Usage())
		return 0
	}
	if errors.Is(err, config.ErrVersion) {
		fmt.Fprintln(os.Stdout, version.String())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cbkgate: %v\n", err)
		return 2
	}
	log := logging.New(os.Stderr, cfg.LogLevel, string(cfg.LogFormat))
	logging.InstallGRPCLogger(log)

	a, err := app.New(cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cbkgate: %v\n", err)
		if errors.As(err, new(*app.ConfigError)) {
			return 2
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		for {
			select {
			case <-hup:
				// A failure is logged by Reload and changes nothing.
				_ = a.Reload()
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}
