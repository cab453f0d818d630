package app_test

// The time limits every client is held to (README "Limits": idle
// connections, request body deadline, stalled List readers), each seen in
// action against the real server with the timeout shortened by
// app.SetTimeouts; the values themselves are the constants of limits.go.
// These tests are not parallel: SetTimeouts changes a package variable.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/app"
	"github.com/cbkgate/cbkgate/internal/gatetest"
)

const heldSecretForLimits = "sk-limits-held-0123456789abcdef"

// startLimited starts cbkgate with a held secret, the given time limits in
// force, and args (no caller authentication when there are none).
func startLimited(t *testing.T, upstreamURL string, idle, body, stalled time.Duration, args ...string) *server {
	t.Helper()
	restore := app.SetTimeouts(idle, body, stalled)
	defer restore()
	return startServer(t, upstreamURL, gatetest.Held(heldSecretForLimits), gatetest.Args(args...))
}

// waitFor polls cond, bounded by within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// steady fails unless f stays the same over a short while: the server has
// stopped doing work for a call.
func steady(t *testing.T, what string, f func() int) int {
	t.Helper()
	before := f()
	time.Sleep(500 * time.Millisecond)
	if after := f(); after != before {
		t.Fatalf("%s still moving: %d, then %d", what, before, after)
	}
	return before
}

// logHas reports whether a log line has every key=value given.
func logHas(s *server, kv ...string) bool {
	for _, line := range strings.Split(s.Logs().String(), "\n") {
		ok := line != ""
		for i := 0; ok && i+1 < len(kv); i += 2 {
			ok = strings.Contains(line, fmt.Sprintf("%q:%q", kv[i], kv[i+1]))
		}
		if ok {
			return true
		}
	}
	return false
}

func TestIdleGRPCConnectionIsClosed(t *testing.T) {
	s := startLimited(t, newEndlessList(t).URL, 300*time.Millisecond, time.Minute, time.Minute)
	c, err := net.Dial("tcp", s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An HTTP/2 connection that never opens a stream.
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	sawGoAway := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !sawGoAway {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			break
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			sawGoAway = true
		case *http2.PingFrame:
			// As a live client would: grpc-go pings with its GOAWAY and
			// closes once answered (else after a timeout of its own).
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		}
	}
	if !sawGoAway {
		t.Fatal("the server closed the idle connection without GOAWAY")
	}
}

func TestIdleHTTPConnectionIsClosed(t *testing.T) {
	s := startLimited(t, newEndlessList(t).URL, 300*time.Millisecond, time.Minute, time.Minute)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: read got %v, want EOF (closed by the server)", err)
	}
}

// TestIdleHTTP2ConnectionIsClosed: over TLS the HTTP listener speaks
// HTTP/2; a connection that opens no stream is closed (GOAWAY) when the
// idle timeout passes.
func TestIdleHTTP2ConnectionIsClosed(t *testing.T) {
	p := newPKI(t)
	restore := app.SetTimeouts(300*time.Millisecond, time.Minute, time.Minute)
	s := startServer(t, newEndlessList(t).URL,
		gatetest.Held(heldSecretForLimits),
		gatetest.Args("--tls-cert="+p.certFile, "--tls-key="+p.keyFile),
		gatetest.ClientTLS(p.clientTLS()),
	)
	restore()
	tc := p.clientTLS()
	tc.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", strings.TrimPrefix(s.URL(), "https://"), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("negotiated %q, want h2", c.ConnectionState().NegotiatedProtocol)
	}
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	sawGoAway := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !sawGoAway {
				t.Fatalf("idle HTTP/2 connection: %v before any GOAWAY", err)
			}
			break
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			sawGoAway = true
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSlowBodyIsCutOff: connections that trickle a request body are
// answered and closed once the body deadline passes, whether the call was
// refused before its body (no credentials) or reads it; none reaches the
// upstream, and the file descriptors they held are released.
func TestSlowBodyIsCutOff(t *testing.T) {
	up := newEndlessList(t)
	keys := writeKeys(t, "sk-limits-key-0123456789abcdef")
	for _, mode := range []struct {
		name string
		args []string
		want int
	}{
		{"body read by the call", nil, http.StatusRequestTimeout},
		{"call refused before its body", []string{"--api-keys-file=" + keys}, http.StatusUnauthorized},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := startLimited(t, up.URL, time.Minute, 500*time.Millisecond, time.Minute, mode.args...)
			addr := strings.TrimPrefix(s.URL(), "http://")
			before := openFDs(t)
			const conns = 100
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for range conns {
				wg.Go(func() {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					// A body of 100 bytes of which 10 ever arrive.
					io.WriteString(c, "POST /v1/users/u1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"a")
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						errs <- fmt.Errorf("no answer: %v", err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != mode.want {
						errs <- fmt.Errorf("status %d, want %d", resp.StatusCode, mode.want)
						return
					}
					if _, err := io.Copy(io.Discard, br); err != nil {
						errs <- fmt.Errorf("connection not closed by the server: %v", err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := up.Count(); n != 0 {
				t.Fatalf("upstream got %d requests", n)
			}
			waitFor(t, 10*time.Second, "file descriptors released", func() bool { return openFDs(t) <= before+5 })
		})
	}
}

// TestStalledGRPCListIsCutOff: a List whose reader takes nothing is cut
// off: the server stops fetching pages, the call ends (its log line says
// READER_STALLED), and the reader, when it reads again, gets what was
// already sent and then CANCELLED.
func TestStalledGRPCListIsCutOff(t *testing.T) {
	up := newEndlessList(t)
	s := startLimited(t, up.URL, time.Minute, time.Minute, 500*time.Millisecond)
	// A static window, so the transport buffers only 64 KiB for the test's
	// stream however long it goes unread.
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := tokenv1.NewTokenServiceClient(cc).List(ctx, &tokenv1.ListRequest{UserId: "u1", PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the List call logged as cut off", func() bool {
		return logHas(s, "method", "/cbkgate.token.v1.TokenService/List", "code", "Canceled")
	})
	pages := steady(t, "upstream pages", up.Count)
	if pages > 40 {
		t.Fatalf("%d upstream pages fetched for a reader that took nothing", pages)
	}
	n := 0
	for {
		_, err := stream.Recv()
		if err != nil {
			st := status.Convert(err)
			if st.Code() != codes.Canceled {
				t.Fatalf("after %d tokens: %v, want CANCELLED (cut off)", n, err)
			}
			break
		}
		n++
	}
	if n == 0 {
		t.Fatal("no token arrived before the cut")
	}
}

// TestStalledHTTPListIsCutOff: the same over HTTP: a client that stops
// reading an NDJSON List has its answer cut (the connection closed, or an
// error line), and the server stops fetching pages.
func TestStalledHTTPListIsCutOff(t *testing.T) {
	up := newEndlessList(t)
	s := startLimited(t, up.URL, time.Minute, time.Minute, 500*time.Millisecond)
	d := net.Dialer{}
	c, err := d.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A small receive buffer, so the server's writes block soon.
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(64 << 10)
	}
	io.WriteString(c, "GET /v1/users/u1/tokens?page_size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, 20*time.Second, "the List call ended", func() bool {
		return logHas(s, "method", "/cbkgate.token.v1.TokenService/List")
	})
	pages := steady(t, "upstream pages", up.Count)
	if pages > 200 {
		t.Fatalf("%d upstream pages fetched for a reader that stopped", pages)
	}
	// What the kernel buffered before the cut drains first. Then, either
	// the connection ends mid-answer (the HTTP write deadline cut it), or
	// the answer ends with an error line (the gRPC side cut the List
	// first, while the gateway's writes were still crawling out).
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer head: %v", err)
	}
	var tail tailBuffer
	_, err = io.Copy(&tail, resp.Body)
	switch {
	case err == nil:
		if !strings.Contains(tail.last(), `"error"`) {
			t.Fatalf("the stalled List ended OK, its last line %q", tail.last())
		}
	case errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "reset"):
	default:
		t.Fatalf("the server did not end the stalled answer: %v", err)
	}
}

// tailBuffer keeps the last line written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 64<<10 {
		t.b = append([]byte(nil), t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) last() string {
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	return lines[len(lines)-1]
}

// TestBadHandshakeFloodIsRateLimited: net/http writes a line for every
// failed TLS handshake; 300 of them, which need no credentials, write a
// bounded number of lines, all in the process's JSON format.
func TestBadHandshakeFloodIsRateLimited(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, newEndlessList(t).URL,
		gatetest.Held(heldSecretForLimits),
		gatetest.Args("--tls-cert="+p.certFile, "--tls-key="+p.keyFile),
		gatetest.ClientTLS(p.clientTLS()),
	)
	before := strings.Count(s.Logs().String(), "\n")
	addr := strings.TrimPrefix(s.URL(), "https://")
	start := time.Now()
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	elapsed := time.Since(start)
	var lines int
	waitFor(t, 5*time.Second, "the handshake lines written", func() bool {
		lines = strings.Count(s.Logs().String(), "\n") - before
		return lines > 0
	})
	bound := 20 + int(10*elapsed.Seconds()) + 2
	t.Logf("300 failed handshakes in %s wrote %d lines (bound %d)", elapsed.Round(time.Millisecond), lines, bound)
	if lines > bound {
		t.Fatalf("%d lines for 300 failed handshakes, want at most %d", lines, bound)
	}
	s.Logs().JSON(t) // every line is JSON
}
