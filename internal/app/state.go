package app

import (
	"context"
	"log/slog"

	"github.com/cbkgate/cbkgate/internal/config"
	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/state"
)

// openState builds the state store of --state (the caller-rate buckets and
// the request_id records) and the records sealed with its key.
func (a *App) openState(cfg *config.Config, log *slog.Logger) (state.Store, *state.Records, error) {
	var (
		store state.Store
		key   []byte
		err   error
	)
	if cfg.State.Memory() {
		store, key = state.NewMemory(cfg.CallerRate, nil), state.RandomKey()
	} else {
		if key, err = state.LoadKey(cfg.StateKeyFile); err != nil {
			return nil, nil, &ConfigError{err}
		}
		warn := logging.Limited(log)
		store, err = state.NewRedis(state.RedisOptions{
			URL:        cfg.State.Reveal(),
			CallerRate: cfg.CallerRate,
			OnError: func(op string, err error) {
				a.metrics.StateError(op)
				msg := "state store failed: request_id creates are refused until it is back"
				if op == "rate" {
					msg = "state store failed: --caller-rate falls back to this replica's own limit"
				}
				warn(context.Background(), slog.LevelWarn, msg, slog.String("op", op), slog.String("err", err.Error()))
			},
		})
		if err != nil {
			return nil, nil, &ConfigError{err}
		}
	}
	records, err := state.NewRecords(store, key)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, records, nil
}

// logState says at start where the state is; in memory mode, that it holds
// per replica.
func (a *App) logState() {
	if a.store.Shared() {
		a.log.Info("state in Redis: request_id and --caller-rate hold for every replica", "state", a.cfg.State.String())
		return
	}
	a.log.Info("state in memory: request_id and --caller-rate hold per replica")
}
