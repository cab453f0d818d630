package logging

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc/grpclog"
)

// grpcLogMessage is the message of every line grpc-go or grpc-gateway
// writes through grpclog; what they said goes in "detail".
const grpcLogMessage = "grpc library"

// InstallGRPCLogger sends grpc-go's own log (grpclog, which grpc-gateway
// writes to as well) through l, in its format and at its level: Info at
// debug (grpc-go narrates every connection there), Warning at warn, Error
// at error. Warnings and errors mostly report peers that misbehave (a bad
// header, a broken frame), so they are rate-limited like refused calls.
// grpclog has one logger per process: call this once, before any gRPC
// use (cmd/server does).
func InstallGRPCLogger(l *slog.Logger) {
	grpclog.SetLoggerV2(&grpcLogger{l: l, limit: newLineLimiter()})
}

type grpcLogger struct {
	l     *slog.Logger
	limit *lineLimiter
}

func (g *grpcLogger) log(level slog.Level, text string) {
	attr := slog.String(keyDetail, truncate(strings.TrimSuffix(text, "\n"), maxDetail))
	if level == slog.LevelDebug {
		g.l.LogAttrs(context.Background(), level, grpcLogMessage, attr)
		return
	}
	g.limit.Log(context.Background(), g.l, level, grpcLogMessage, attr)
}

func (g *grpcLogger) Info(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g *grpcLogger) Infoln(args ...any) { g.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g *grpcLogger) Infof(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Warning(args ...any)   { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g *grpcLogger) Warningln(args ...any) { g.log(slog.LevelWarn, fmt.Sprintln(args...)) }
func (g *grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g *grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g *grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal lines are never dropped: grpc-go exits after them.
func (g *grpcLogger) Fatal(args ...any)                 { g.fatal(fmt.Sprint(args...)) }
func (g *grpcLogger) Fatalln(args ...any)               { g.fatal(fmt.Sprintln(args...)) }
func (g *grpcLogger) Fatalf(format string, args ...any) { g.fatal(fmt.Sprintf(format, args...)) }

func (g *grpcLogger) fatal(text string) {
	g.l.Error(grpcLogMessage, keyDetail, strings.TrimSuffix(text, "\n"))
	os.Exit(1)
}

// V reports whether verbose lines of level v are wanted: only grpc-go's
// level 0, and that only when the logger takes debug lines.
func (g *grpcLogger) V(v int) bool {
	return v <= 0 && g.l.Enabled(context.Background(), slog.LevelDebug)
}
