package failtest

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"

	"github.com/cbkgate/cbkgate/internal/logging"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

// grpcLogs receives grpc-go's and grpc-gateway's own log lines (grpclog),
// as cmd/server sends them through the process logger.
var grpcLogs = &testlog.Buffer{Keep: logKeep}

// TestMain fails the package if any goroutine outlives the tests: every
// server, connection and upstream request a test starts must be gone by the
// end. No goroutine is ignored.
func TestMain(m *testing.M) {
	logging.InstallGRPCLogger(logging.New(grpcLogs, slog.LevelInfo, "json"))
	goleak.VerifyTestMain(m)
}
