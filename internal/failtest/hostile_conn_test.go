package failtest

// The attack suite of issue 18: what one connection, or one caller, could
// make the whole server hold or wait for. Each attack runs over real
// loopback connections, with raw HTTP/2 frames where no well-behaved
// client would send them, and its bound asserted.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/cbkgate/cbkgate/internal/app"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/testpki"
)

// flowWindows tracks the send windows the server granted a rawH2 client:
// the connection's and each stream's (RFC 9113 section 5.2).
type flowWindows struct {
	mu      sync.Mutex
	grew    chan struct{} // closed and replaced whenever a window grows
	conn    int64
	initial int64
	streams map[uint32]int64
}

func (w *flowWindows) init(settings map[http2.SettingID]uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.grew = make(chan struct{})
	w.conn = 65535
	w.initial = 65535
	if v, ok := settings[http2.SettingInitialWindowSize]; ok {
		w.initial = int64(v)
	}
	w.streams = map[uint32]int64{}
}

func (w *flowWindows) grow(stream, n uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if stream == 0 {
		w.conn += int64(n)
	} else {
		w.streams[stream] = w.window(stream) + int64(n)
	}
	close(w.grew)
	w.grew = make(chan struct{})
}

// window is stream's send window; w.mu is held.
func (w *flowWindows) window(stream uint32) int64 {
	if v, ok := w.streams[stream]; ok {
		return v
	}
	return w.initial
}

// take reserves up to n bytes of both windows for stream, without waiting:
// 0 when either is closed.
func (w *flowWindows) take(stream uint32, n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = int(min(int64(n), w.conn, w.window(stream)))
	if n <= 0 {
		return 0
	}
	w.conn -= int64(n)
	w.streams[stream] = w.window(stream) - int64(n)
	return n
}

// changed is closed at the next window growth.
func (w *flowWindows) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.grew
}

// dialRawH2TLS opens a rawH2 over TLS (ALPN h2) to addr.
func dialRawH2TLS(t *testing.T, addr string, pool *tls.Config) *rawH2 {
	t.Helper()
	cfg := pool.Clone()
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	return newRawH2(t, c)
}

// request sends the HEADERS (and CONTINUATION) of a new stream with the
// given header fields and returns its id.
func (r *rawH2) request(fields []hpack.HeaderField, endStream bool) (uint32, error) {
	r.buf.Reset()
	for _, f := range fields {
		if err := r.enc.WriteField(f); err != nil {
			return 0, err
		}
	}
	id := r.next
	r.next += 2
	return id, r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.buf.Bytes(), EndHeaders: true, EndStream: endStream})
}

// sendBodies sends each stream in ids want bytes of body (prefix first,
// then filler), 16 KiB at a time round the streams, as fast as the
// server's windows allow and never ending a stream. It stops when every
// body is sent or when the server has granted no window for stall, and
// returns how many bytes went out.
func (r *rawH2) sendBodies(ids []uint32, prefix []byte, want int, stall time.Duration) int64 {
	r.t.Helper()
	chunk := make([]byte, 16<<10)
	for i := range chunk {
		chunk[i] = ' '
	}
	sent := make(map[uint32]int, len(ids))
	var total int64
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		changed := r.windows.changed()
		progress, done := false, true
		for _, id := range ids {
			left := want - sent[id]
			if left <= 0 {
				continue
			}
			done = false
			n := r.windows.take(id, min(left, len(chunk)))
			if n == 0 {
				continue
			}
			data := chunk[:n]
			if sent[id] < len(prefix) {
				data = append(append([]byte(nil), prefix[sent[id]:]...), chunk...)[:n]
			}
			if err := r.fr.WriteData(id, false, data); err != nil {
				r.t.Logf("sending bodies: %v", err)
				return total
			}
			sent[id] += n
			total += int64(n)
			progress = true
		}
		if done {
			return total
		}
		if !progress {
			select {
			case <-changed:
			case <-time.After(stall):
				return total
			case err := <-r.readDone:
				r.t.Logf("connection ended while sending bodies: %v", err)
				return total
			}
		}
	}
	return total
}

// tlsGate runs cbkgate with TLS on both ports and an API keys file naming
// keys, and returns it with the client TLS config for its listeners.
func tlsGate(t *testing.T, upstream string, keys []string, args ...string) (*gate, *tls.Config) {
	t.Helper()
	pki := testpki.WriteFiles(t)
	keyFile := testpki.WriteFile(t, t.TempDir(), "keys", []byte(strings.Join(keys, "\n")+"\n"))
	clientTLS := &tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"}
	g := startGate(t, upstream, gatetest.ClientTLS(clientTLS),
		gatetest.Args(append([]string{"--tls-cert=" + pki.CertFile, "--tls-key=" + pki.KeyFile, "--api-keys-file=" + keyFile}, args...)...))
	return g, clientTLS
}

// bodyStreams is how many streams the body attacks open: as many as one
// connection may.
const bodyStreams = app.MaxStreamsPerConn

// bodyBytes is each stream's body: just under the 1 MiB cap of a request,
// so that no stream is refused for its size.
const bodyBytes = 1<<20 - 4<<10

// TestHostileBodiesHeldPerConnection: one HTTP/2 connection with a valid
// key opens as many streams as it may on the REST and Connect routes, and
// sends each almost 1 MiB of body that never ends. The issue measured 313 MB
// held for 25 s (593 MB at the peak); the connection now makes the server
// hold at most 32 MiB, and each stream's body waits for the rest.
func TestHostileBodiesHeldPerConnection(t *testing.T) {
	const key = "sk-bodies-0123456789abcdef"
	g, clientTLS := tlsGate(t, fu.Start(t).URL, []string{key})
	r := dialRawH2TLS(t, strings.TrimPrefix(g.URL(), "https://"), clientTLS)
	var ids []uint32
	for i := range bodyStreams {
		path := "/v1/users/u1/tokens"
		if i%2 == 1 {
			path = "/cbkgate.token.v1.TokenService/Create"
		}
		id, err := r.request([]hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
			{Name: ":path", Value: path}, {Name: ":authority", Value: "localhost"},
			{Name: "content-type", Value: "application/json"},
			{Name: "authorization", Value: "Bearer " + key},
		}, false)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	bodyAttack(t, r, ids, []byte(`{"user_id":"u1","name":"`))
}

// TestHostileGRPCBodiesHeldPerConnection: the same on the gRPC port,
// without credentials (grpc-go reads a unary call's request before any
// interceptor looks at its metadata): each of 256 Create calls announces a
// message of almost 1 MiB and sends it without its last bytes.
func TestHostileGRPCBodiesHeldPerConnection(t *testing.T) {
	g := startGate(t, fu.Start(t).URL, gatetest.PassThrough())
	r := dialRawH2(t, g.GRPCAddr())
	var ids []uint32
	for i := range bodyStreams {
		id, err := r.request([]hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/cbkgate.token.v1.TokenService/Create"}, {Name: ":authority", Value: "cbkgate"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		}, false)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], bodyBytes+64)
	bodyAttack(t, r, ids, prefix)
}

// bodyAttack sends the bodies of ids on r and asserts what the server
// holds meanwhile: at most 32 MiB and some slack for the connection's
// streams and buffers, where holding every body would be 256 MiB.
func bodyAttack(t *testing.T, r *rawH2, ids []uint32, prefix []byte) {
	t.Helper()
	steady()
	baseHeap, _ := memory(t)
	var sent int64
	start := time.Now()
	peak := peakHeap(t, func() { sent = r.sendBodies(ids, prefix, bodyBytes, time.Second) })
	r.sync()
	heap, _ := memory(t)
	held := heap - baseHeap
	t.Logf("%d streams sent %.1f MiB of body in %s; heap peaked %+.1f MiB, held %+.1f MiB after GC",
		len(ids), float64(sent)/miB, time.Since(start).Round(time.Millisecond), float64(peak)/miB, float64(held)/miB)
	const bound = 32*miB + 8*miB
	if held > bound || peak > bound+16*miB {
		t.Errorf("one connection's bodies made the server hold %.1f MiB (peak %.1f MiB), want at most %d MiB",
			float64(held)/miB, float64(peak)/miB, bound/miB)
	}
}

// TestHostileRapidResetHTTP: a client without a key opens REST calls on the
// TLS HTTP port and resets each at once (HEADERS then RST_STREAM,
// CVE-2023-44487), 100,000 times, a tenth of them (with a key) while the
// server waits for their body.
// Before, net/http's HTTP/2 deadline timers, armed even for a stream
// already reset, kept each stream for 30 s: +45 MiB heap, +78 MiB RSS. The issue measured RSS
// from 21 MB to 137 MB for 100,000; the server's memory now grows by less
// than 32 MiB, and the log stays bounded.
func TestHostileRapidResetHTTP(t *testing.T) {
	up := fu.Start(t)
	const key = "sk-rapid-reset-0123456789abcdef"
	g, clientTLS := tlsGate(t, up.URL, []string{key})
	addr := strings.TrimPrefix(g.URL(), "https://")
	// Every tenth attempt carries the key and a body that never comes: its
	// stream is reset while the server waits for the body. (A List: a
	// refused write would be audited, and audit lines are never
	// rate-limited.)
	attempt := 0
	reset := func(r *rawH2) error {
		attempt++
		fields := []hpack.HeaderField{
			{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
			{Name: ":path", Value: "/v1/users/u1/tokens"}, {Name: ":authority", Value: "localhost"},
		}
		withBody := attempt%10 == 0
		if withBody {
			fields = append(fields, hpack.HeaderField{Name: "authorization", Value: "Bearer " + key})
		}
		id, err := r.request(fields, !withBody)
		if err == nil {
			err = r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		return err
	}
	// The first connection and calls set up what every later one reuses.
	warm := dialRawH2TLS(t, addr, clientTLS)
	for range 100 {
		if err := reset(warm); err != nil {
			t.Fatal(err)
		}
	}
	warm.settle()
	warm.c.Close()
	steady() // what earlier tests left winds down
	baseHeap, baseRSS := memory(t)
	before := g.Logs().Lines()
	attempts := 100_000
	if raceEnabled {
		attempts = 20_000 // five times slower
	}
	start := time.Now()
	sent, conns := 0, 0
	for sent < attempts && time.Since(start) < time.Minute {
		r := dialRawH2TLS(t, addr, clientTLS)
		for ; sent < attempts; sent++ {
			if err := reset(r); err != nil {
				// The server may end a connection that does this
				// (GOAWAY); a new one carries on.
				t.Logf("after %d attempts: %v; reconnecting", sent, err)
				break
			}
		}
		r.settle()
		r.c.Close()
		conns++
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the last handlers finish
	heap, rss := memory(t)
	lines := g.Logs().Lines() - before
	t.Logf("%d rapid resets on %d connections in %s: heap+stacks %+.1f MiB, RSS %+.1f MiB, %d log lines",
		sent, conns, elapsed.Round(time.Millisecond), float64(heap-baseHeap)/miB, float64(rss-baseRSS)/miB, lines)
	if heap-baseHeap > 32*miB || (!raceEnabled && rss-baseRSS > 32*miB) {
		t.Errorf("memory grew by %.1f MiB (heap) / %.1f MiB (RSS), want at most 32",
			float64(heap-baseHeap)/miB, float64(rss-baseRSS)/miB)
	}
	if bound := 20 + int(10*(elapsed.Seconds()+0.2)) + 5; lines > bound {
		t.Errorf("%d log lines, want at most %d", lines, bound)
	}
	wantCalls(t, up, fu.List, 0)
}

// settle waits, bounded, until the server has read everything sent so
// far or has ended the connection.
func (r *rawH2) settle() {
	if r.fr.WritePing(false, [8]byte{2}) != nil {
		return
	}
	select {
	case <-r.pingAck:
	case err := <-r.readDone:
		r.readDone <- err
	case <-time.After(30 * time.Second):
		r.t.Fatal("no PING answer within 30s")
	}
}

// listsStarted is how many List calls the gRPC server (both of its
// listeners) has started, read from cbkgate's /metrics.
func listsStarted(t *testing.T, g *gate) int {
	t.Helper()
	resp, err := g.hc.Get("http://" + g.App().AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "grpc_server_started_total{") && strings.Contains(line, `grpc_method="List"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += int(v)
		}
	}
	return n
}

// TestHostileOneCallerCannotStallOthers: caller A holds 600 REST Lists
// paced by --caller-rate (each waits for its turn at the upstream), more
// than one connection's streams; caller B's Creates, over REST and over
// Connect, are answered in about their usual time. The issue measured B's
// REST Create timing out after 15 s (every gateway call shared one
// in-process connection capped at 256 streams) while over Connect it took
// 6 ms.
func TestHostileOneCallerCannotStallOthers(t *testing.T) {
	const keyA, keyB = "sk-caller-a-0123456789abcdef", "sk-caller-b-0123456789abcdef"
	keyFile := testpki.WriteFile(t, t.TempDir(), "keys", []byte(keyA+"\n"+keyB+"\n"))
	g := startGate(t, fu.Start(t).URL, gatetest.Args("--caller-rate=5", "--api-keys-file="+keyFile))

	// B's Create, over REST or Connect: how long it took.
	create := func(connect bool) time.Duration {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		url, body := g.URL()+"/v1/users/u1/tokens", `{"name":"n"}`
		if connect {
			url, body = g.URL()+"/cbkgate.token.v1.TokenService/Create", `{"user_id":"u1","name":"n"}`
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+keyB)
		start := time.Now()
		resp, err := g.hc.Do(req)
		if err != nil {
			t.Fatalf("caller B's Create (connect %v): %v after %s", connect, err, time.Since(start).Round(time.Millisecond))
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("caller B's Create (connect %v): %s", connect, resp.Status)
		}
		return time.Since(start)
	}
	// The median of five Creates; B's rate (5 a second) is not what is
	// measured, so each waits its turn first.
	median := func(connect bool) time.Duration {
		var ds []time.Duration
		for range 5 {
			time.Sleep(250 * time.Millisecond)
			ds = append(ds, create(connect))
		}
		slices.Sort(ds)
		return ds[2]
	}
	create(false) // warm up both paths
	create(true)
	restIdle, connectIdle := median(false), median(true)

	// A's Lists, each on a connection of its own (HTTP/1.1).
	const lists = 600
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxIdleConnsPerHost: -1}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
	})
	for range lists {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+"/v1/users/u1/tokens", nil)
			if err != nil {
				return
			}
			req.Header.Set("Authorization", "Bearer "+keyA)
			if resp, err := tr.RoundTrip(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for listsStarted(t, g) < app.MaxStreamsPerConn {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of caller A's Lists started within 30s", listsStarted(t, g))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the rest of them, where they can
	started := listsStarted(t, g)
	restLoaded, connectLoaded := median(false), median(true)
	t.Logf("caller A holds %d Lists (%d reached gRPC); caller B's Create over REST %s -> %s, over Connect %s -> %s",
		lists, started, restIdle.Round(time.Microsecond), restLoaded.Round(time.Microsecond),
		connectIdle.Round(time.Microsecond), connectLoaded.Round(time.Microsecond))
	for _, c := range []struct {
		name         string
		idle, loaded time.Duration
	}{{"REST", restIdle, restLoaded}, {"Connect", connectIdle, connectLoaded}} {
		if ratio := float64(c.loaded) / float64(c.idle); ratio > 10 {
			t.Errorf("caller B's Create over %s took %.0fx its usual time while A held its Lists, want at most 10x", c.name, ratio)
		}
	}
}
