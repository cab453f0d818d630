package failtest

// The attack suite of issue 9: what an attacker without credentials (or a
// hostile upstream) tried against cbkgate, each rerun against the real
// server with the contract's bound asserted. The time limits (idle
// connections, body deadline, stalled readers) are in internal/app's
// limits_test.go, where they can be shortened.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cbkgate/cbkgate/internal/app"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

// rawH2 is a bare HTTP/2 client connection to the gRPC listener, for what
// no well-behaved client sends: header lists far past any limit, more
// streams than allowed, streams that never send their request.
type rawH2 struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer

	settings map[http2.SettingID]uint32
	next     uint32 // next stream id

	mu       sync.Mutex
	rst      map[http2.ErrCode]int
	headers  int // HEADERS frames received (responses and trailers)
	pingAck  chan struct{}
	readDone chan error
	windows  flowWindows // the server's receive windows, for sendData
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newRawH2(t, c)
}

// newRawH2 speaks HTTP/2 on c (a TCP connection, or a TLS one that
// negotiated h2), closed at cleanup.
func newRawH2(t *testing.T, c net.Conn) *rawH2 {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	r := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c), settings: map[http2.SettingID]uint32{}, next: 1,
		rst: map[http2.ErrCode]int{}, pingAck: make(chan struct{}, 1), readDone: make(chan error, 1)}
	r.enc = hpack.NewEncoder(&r.buf)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			s.ForeachSetting(func(st http2.Setting) error { r.settings[st.ID] = st.Val; return nil })
			break
		}
	}
	r.windows.init(r.settings)
	if err := r.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	go r.readLoop()
	return r
}

func (r *rawH2) readLoop() {
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.readDone <- err
			return
		}
		r.mu.Lock()
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			r.rst[f.ErrCode]++
		case *http2.MetaHeadersFrame:
			r.headers++
		case *http2.PingFrame:
			if f.IsAck() {
				r.pingAck <- struct{}{}
			}
		case *http2.WindowUpdateFrame:
			r.windows.grow(f.StreamID, f.Increment)
		}
		r.mu.Unlock()
	}
}

// open starts a gRPC call to method whose header list carries extra and
// padding bytes of metadata, and sends nothing more on it. The padding goes as
// literals that are never indexed, so the server must hold every byte of
// it (indexed values would share one string).
// resetLists opens a List call and resets it at once (RST_STREAM CANCEL),
// attempts times, with extra headers on each; it returns how long that
// took, once the server has seen every frame and the last handlers have
// had time to log.
func (r *rawH2) resetLists(attempts int, extra ...hpack.HeaderField) time.Duration {
	r.t.Helper()
	start := time.Now()
	for i := range attempts {
		id := r.next
		if err := r.open("/cbkgate.token.v1.TokenService/List", 0, extra...); err != nil {
			r.t.Fatalf("attempt %d: %v", i, err)
		}
		if err := r.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			r.t.Fatalf("attempt %d: %v", i, err)
		}
	}
	r.sync()
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	return elapsed
}

// refusedLinesBound is the most log lines refused or cancelled calls may
// write over elapsed (plus the 200 ms resetLists waits): the limiter's
// burst of 20 and 10 a second, and a few lines of slack.
func refusedLinesBound(elapsed time.Duration) int {
	return 20 + int(10*(elapsed.Seconds()+0.2)) + 5
}

func (r *rawH2) open(method string, padding int, extra ...hpack.HeaderField) error {
	r.t.Helper()
	r.buf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method}, {Name: ":authority", Value: "cbkgate"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...) {
		r.enc.WriteField(f)
	}
	pad := hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("p", 4000), Sensitive: true}
	for n := 0; n < padding; n += int(pad.Size()) {
		r.enc.WriteField(pad)
	}
	id := r.next
	r.next += 2
	const frame = 16 << 10 // the least SETTINGS_MAX_FRAME_SIZE there is
	block := r.buf.Bytes()
	first := block[:min(frame, len(block))]
	block = block[len(first):]
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		n := min(frame, len(block))
		if err := r.fr.WriteContinuation(id, n == len(block), block[:n]); err != nil {
			return err
		}
		block = block[n:]
	}
	return nil
}

// sync waits until the server has read everything sent so far (it answers
// a PING after the frames before it).
func (r *rawH2) sync() {
	r.t.Helper()
	if err := r.fr.WritePing(false, [8]byte{1}); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-r.pingAck:
	case err := <-r.readDone:
		r.t.Fatalf("connection ended: %v", err)
	case <-time.After(30 * time.Second):
		r.t.Fatal("no PING answer within 30s")
	}
}

func (r *rawH2) resets(code http2.ErrCode) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rst[code]
}

// memory is the process's heap and stacks in use after a GC, and its RSS.
func memory(t *testing.T) (inUse, rss int64) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return int64(ms.HeapInuse + ms.StackInuse), rss
}

const miB = 1 << 20

// TestHostileMetadataAndStreams: one unauthenticated connection opens as
// many calls as it can, each with as much metadata as it can, and never
// sends a request message. With grpc-go's defaults (16 MiB header lists,
// no stream cap) 50 Health Watch streams with 1 MiB of metadata each and
// 300 calls with 62 KiB grew this process by 76 MiB of heap; the issue
// measured 23 MB to 188 MB for 50 Watch streams of 8 MiB. Now a header
// list over 64 KiB ends the connection, only 256 calls of one connection
// get in, and the server's memory grows by less than 32 MiB either way.
func TestHostileMetadataAndStreams(t *testing.T) {
	g := startGate(t, fu.Start(t).URL, gatetest.PassThrough())
	baseHeap, baseRSS := memory(t)
	check := func(what string) {
		t.Helper()
		heap, rss := memory(t)
		t.Logf("%s: heap+stacks %+.1f MiB, RSS %+.1f MiB", what, float64(heap-baseHeap)/miB, float64(rss-baseRSS)/miB)
		if heap-baseHeap > 32*miB || (!raceEnabled && rss-baseRSS > 32*miB) {
			t.Errorf("%s: memory grew by %.1f MiB (heap) / %.1f MiB (RSS), want at most 32",
				what, float64(heap-baseHeap)/miB, float64(rss-baseRSS)/miB)
		}
	}

	// Header lists far over the cap: the connection is ended.
	big := dialRawH2(t, g.GRPCAddr())
	if got := big.settings[http2.SettingMaxHeaderListSize]; got != app.MaxHeaderListBytes {
		t.Errorf("server SETTINGS_MAX_HEADER_LIST_SIZE = %d, want %d", got, app.MaxHeaderListBytes)
	}
	sent := 0
	for range 50 {
		if big.open("/grpc.health.v1.Health/Watch", miB) != nil {
			break
		}
		sent++
	}
	select {
	case <-big.readDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("the connection sending %d header lists of 1 MiB is still open", sent)
	}
	check(strconv.Itoa(sent) + " Watch streams of 1 MiB of metadata sent")

	// Header lists just under the cap, more calls than a connection may
	// have: the extra ones are refused.
	r := dialRawH2(t, g.GRPCAddr())
	if got := r.settings[http2.SettingMaxConcurrentStreams]; got != app.MaxStreamsPerConn {
		t.Errorf("server SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, app.MaxStreamsPerConn)
	}
	const calls = 300
	for i := range calls {
		if err := r.open("/cbkgate.token.v1.TokenService/Create", app.MaxHeaderListBytes-2<<10); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	r.sync()
	check(strconv.Itoa(calls) + " calls with 62 KiB of metadata held open")
	if got, want := r.resets(http2.ErrCodeRefusedStream), calls-app.MaxStreamsPerConn; got < want {
		t.Errorf("%d calls refused for the stream cap, want at least %d", got, want)
	}
}

// TestWatchStreamsAreCapped: Health Watch streams need no credentials and
// stay open as long as the client likes; past MaxWatchStreams in the
// process, a new one is refused at once.
func TestWatchStreamsAreCapped(t *testing.T) {
	g := startGate(t, fu.Start(t).URL, gatetest.PassThrough())
	var conns []*grpc.ClientConn
	for range 2 { // the cap is per process, not per connection
		cc, err := grpc.NewClient(g.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	for i := range app.MaxWatchStreams {
		w, err := healthpb.NewHealthClient(conns[i%2]).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Fatalf("Watch %d of %d: %v", i+1, app.MaxWatchStreams, err)
		}
	}
	w, err := healthpb.NewHealthClient(conns[0]).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	st := wantCode(t, err, codes.ResourceExhausted)
	if ei := gatetest.ErrorInfo(st); ei.GetReason() != "TOO_MANY_STREAMS" || ei.GetDomain() != "cbkgate" {
		t.Fatalf("ErrorInfo %v, want cbkgate TOO_MANY_STREAMS", ei)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("ran out of time")
	}
}

// TestHostileRapidReset: one connection without credentials opens List
// calls and resets each at once, thousands of times (the issue: 50,000
// attempts wrote 50,000 log lines, 14 MB, in 0.55 s). The log lines stay
// bounded, the connection's memory too, and nothing reaches the upstream.
func TestHostileRapidReset(t *testing.T) {
	up := fu.Start(t)
	g := startGate(t, up.URL, gatetest.PassThrough())
	before := g.Logs().Lines()
	r := dialRawH2(t, g.GRPCAddr())
	const attempts = 5000
	elapsed := r.resetLists(attempts)
	lines := g.Logs().Lines() - before
	bound := refusedLinesBound(elapsed)
	t.Logf("%d rapid-reset List attempts in %s wrote %d log lines (bound %d)", attempts, elapsed.Round(time.Millisecond), lines, bound)
	if lines > bound {
		t.Errorf("%d log lines, want at most %d", lines, bound)
	}
	wantCalls(t, up, fu.List, 0)
}
