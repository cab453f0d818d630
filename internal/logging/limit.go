package logging

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Lines about refused or malformed calls, and about calls their client
// cancelled, are rate-limited: a client can make them as fast as it can
// send (the issue measured 50,000 lines, 14 MB, in 0.55 s of rapid-reset
// List attempts without credentials, and 50,000 lines, 16 MB, in 2 s with
// a valid key, whose cancelled calls were not limited), and the log must
// not become the cheapest way to fill a disk or drown the lines that
// matter. A line let through after some were dropped says how many with
// "suppressed"; when none follows within suppressedReportDelay, a line of
// its own does.
const (
	// refusedLinesPerSecond and refusedLinesBurst are the rate of each kind
	// of such line (each lineLimiter).
	refusedLinesPerSecond = 10
	refusedLinesBurst     = 20
	keySuppressed         = "suppressed"
	// suppressedReportDelay is how long after the first line it dropped a
	// limiter reports the count of those dropped since, unless a line let
	// through has carried it already.
	suppressedReportDelay = time.Second
	// suppressedMessage is the message of that report; keySuppressedKind
	// names the message of the lines it counts.
	suppressedMessage = "log lines suppressed"
	keySuppressedKind = "suppressed_msg"
)

// lineLimiter rate-limits one kind of log line. It is the one limiter used
// wherever lines about refused, malformed or client-cancelled calls are
// written. Safe for concurrent use.
type lineLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Int64
	// reportPending: a report of the suppressed count is scheduled.
	reportPending atomic.Bool
}

// newLineLimiter lets through refusedLinesPerSecond lines a second, in bursts
// of refusedLinesBurst.
func newLineLimiter() *lineLimiter {
	return &lineLimiter{lim: rate.NewLimiter(refusedLinesPerSecond, refusedLinesBurst)}
}

// Log writes the line unless the rate is exceeded, in which case it is
// counted; the next line written carries the count of those dropped, or,
// if none is within suppressedReportDelay, a report line of its own.
func (lm *lineLimiter) Log(ctx context.Context, l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.Enabled(ctx, level) {
		return
	}
	if !lm.lim.Allow() {
		lm.suppressed.Add(1)
		if lm.reportPending.CompareAndSwap(false, true) {
			time.AfterFunc(suppressedReportDelay, func() { lm.report(l, level, msg) })
		}
		return
	}
	if n := lm.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64(keySuppressed, n))
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// report writes the count of lines dropped and not yet reported, if any:
// the end of a flood is otherwise never told.
func (lm *lineLimiter) report(l *slog.Logger, level slog.Level, msg string) {
	lm.reportPending.Store(false)
	if n := lm.suppressed.Swap(0); n > 0 {
		l.LogAttrs(context.Background(), level, suppressedMessage, slog.String(keySuppressedKind, msg), slog.Int64(keySuppressed, n))
	}
}

// Limited returns a function that writes lines through l, rate-limited
// like the lines about refused calls: for warnings a caller can repeat at
// will (a listing of tokens it cannot pass on whole, listed again and
// again).
func Limited(l *slog.Logger) func(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	lm := newLineLimiter()
	return func(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
		lm.Log(ctx, l, level, msg, attrs...)
	}
}

// ServerErrorLog is a *log.Logger for http.Server.ErrorLog: net/http writes
// a line for every TLS handshake that fails and every connection that
// breaks the protocol, which a client can make by the thousand. They go
// through l at warn, as "http server" lines with the text in "detail",
// rate-limited like the other lines about malformed calls.
func ServerErrorLog(l *slog.Logger) *log.Logger {
	return log.New(&serverErrorWriter{l: l, limit: newLineLimiter()}, "", 0)
}

type serverErrorWriter struct {
	l     *slog.Logger
	limit *lineLimiter
}

func (w *serverErrorWriter) Write(p []byte) (int, error) {
	w.limit.Log(context.Background(), w.l, slog.LevelWarn, "http server",
		slog.String(keyDetail, truncate(strings.TrimSuffix(string(p), "\n"), maxDetail)))
	return len(p), nil
}
