package failtest

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// bombBytes is what each decompression bomb inflates to: 256 times the
// 1 MiB a request message may be.
const bombBytes = 256 << 20

// TestHostileDecompressionBomb: a compressed request message of a few
// hundred KiB that inflates to 256 MiB, on every surface that takes a
// compressed body: Connect unary JSON (Content-Encoding), a Connect
// streaming List (Connect-Content-Encoding, the envelope's compressed
// flag), gRPC-Web with JSON and with protobuf (grpc-encoding), and the gRPC
// port itself. The issue measured one such Connect Create growing the
// server from 21 MB to 2.1 GB and answering 500 with no log line. Each is
// refused as too large (HTTP 413 on Connect unary; RESOURCE_EXHAUSTED with
// ErrorInfo PAYLOAD_TOO_LARGE), the server's heap grows by far less than
// the bomb, a log line says so, and nothing reaches the upstream.
func TestHostileDecompressionBomb(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL)
	jsonCreate := gzipBomb([]byte(`{"user_id":"u1","name":"`), bombBytes, []byte(`"}`))
	jsonList := gzipBomb([]byte(`{"user_id":"u1","cursor":"`), bombBytes, []byte(`"}`))
	protoPrefix := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "u1")
	protoPrefix = protowire.AppendVarint(protowire.AppendTag(protoPrefix, 2, protowire.BytesType), bombBytes)
	protoCreate := gzipBomb(protoPrefix, bombBytes, nil)
	listPrefix := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "u1")
	listPrefix = protowire.AppendVarint(protowire.AppendTag(listPrefix, 3, protowire.BytesType), bombBytes)
	protoList := gzipBomb(listPrefix, bombBytes, nil)
	grpcPort := grpcPortClient()

	for _, c := range []struct {
		name, method string
		send         func() rpcResult
		httpStatus   int    // on the HTTP port; the gRPC port answers 200
		ownDetails   bool   // ErrorInfo{PAYLOAD_TOO_LARGE, cbkgate}
		logged       string // the call line
	}{
		{"Connect unary JSON", "Create", func() rpcResult {
			return g.postRPC("Create", map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, jsonCreate)
		}, http.StatusRequestEntityTooLarge, true, `"http call refused"`},
		{"Connect streaming List", "List", func() rpcResult {
			return g.postRPC("List", map[string]string{"Content-Type": "application/connect+json", "Connect-Content-Encoding": "gzip"}, envelope(1, jsonList))
		}, http.StatusOK, true, `"http call refused"`},
		{"gRPC-Web JSON", "Create", func() rpcResult {
			return g.postRPC("Create", map[string]string{"Content-Type": "application/grpc-web+json", "Grpc-Encoding": "gzip"}, envelope(1, jsonCreate))
		}, http.StatusOK, true, `"http call refused"`},
		{"gRPC-Web protobuf", "Create", func() rpcResult {
			return g.postRPC("Create", map[string]string{"Content-Type": "application/grpc-web+proto", "Grpc-Encoding": "gzip"}, envelope(1, protoCreate))
		}, http.StatusOK, true, `"http call refused"`},
		// grpc-go itself reads at most MaxRecvMsgSize+1 bytes out of the
		// decompressor and answers RESOURCE_EXHAUSTED without details.
		{"gRPC port List", "List", func() rpcResult {
			return g.postGRPCPort(grpcPort, "List", map[string]string{"Grpc-Encoding": "gzip"}, envelope(1, protoList))
		}, http.StatusOK, false, `"method":"/cbkgate.token.v1.TokenService/List"`},
		// A unary call's message is read before the interceptors run;
		// they still run for it, so its call line has grpc-go's answer.
		{"gRPC port Create", "Create", func() rpcResult {
			return g.postGRPCPort(grpcPort, "Create", map[string]string{"Grpc-Encoding": "gzip"}, envelope(1, protoCreate))
		}, http.StatusOK, false, `"method":"/cbkgate.token.v1.TokenService/Create"`},
	} {
		func() {
			linesBefore := g.Logs().String()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var res rpcResult
			peak := peakHeap(t, func() { res = c.send() })
			runtime.ReadMemStats(&after)
			allocated := int64(after.TotalAlloc - before.TotalAlloc)
			t.Logf("%s: a %d KiB body inflating to %d MiB: HTTP %d, %v; heap peak %+.1f MiB, allocated %.1f MiB",
				c.name, len(jsonCreate)>>10, bombBytes>>20, res.status, res.st, float64(peak)/miB, float64(allocated)/miB)

			if res.status != c.httpStatus {
				t.Errorf("%s: HTTP %d, want %d: %.300s", c.name, res.status, c.httpStatus, res.body)
			}
			if res.st == nil || res.st.Code() != codes.ResourceExhausted {
				t.Errorf("%s: status %v, want RESOURCE_EXHAUSTED", c.name, res.st)
			} else if c.ownDetails && !ownReason(res.st, "PAYLOAD_TOO_LARGE") {
				t.Errorf("%s: ErrorInfo %v, want PAYLOAD_TOO_LARGE in domain cbkgate", c.name, gatetest.ErrorInfo(res.st))
			}
			if peak > 64*miB || allocated > 64*miB {
				t.Errorf("%s: the heap grew by %.1f MiB and %.1f MiB were allocated for one request; want both under 64 MiB",
					c.name, float64(peak)/miB, float64(allocated)/miB)
			}
			// On the gRPC port grpc-go answers before the call line is
			// written.
			logged := g.Logs().Await(5*time.Second, func(kept string) bool {
				newLines := strings.TrimPrefix(kept, linesBefore)
				return strings.Contains(newLines, c.logged) && strings.Contains(newLines, `"code":"ResourceExhausted"`)
			})
			if !logged {
				t.Errorf("%s: no log line %s with code ResourceExhausted; new lines:\n%s", c.name, c.logged, strings.TrimPrefix(g.Logs().String(), linesBefore))
			}
			wantCalls(t, up, fu.Route(strings.ToLower(c.method)), 0)
		}()
	}
}
