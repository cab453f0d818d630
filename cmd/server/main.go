// Command server runs cbkgate: TokenService over gRPC and JSON in front of
// ChatBotKit's partner user token API. Configuration comes from flags and
// the environment (see --help); `--emulator` runs it against an in-process
// ChatBotKit stand-in for development.
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
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := config.Load(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stdout, config.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cbkgate: %v\n", err)
		return 2
	}
	log := logging.New(os.Stderr, cfg.LogLevel, string(cfg.LogFormat))

	a, err := app.New(cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cbkgate: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}
