package failtest

// Calls that straddle a change of the server's state: a grants reload, the
// age of a connection, a shutdown (found by a red-team pass).

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	fu "github.com/cbkgate/cbkgate/internal/faultyupstream"
	"github.com/cbkgate/cbkgate/internal/gatetest"
	"github.com/cbkgate/cbkgate/internal/testlog"
)

const aliceKey = "sk-lifecycle-alice-0123456789abcdef"

// grantsGate is a gate with one API key, alice's (aliceKey), and grants,
// and the grants file's path.
func grantsGate(t *testing.T, up *fu.Server, grants string, opts ...gatetest.Option) (*gate, string) {
	t.Helper()
	dir := t.TempDir()
	keyFile, grantsFile := filepath.Join(dir, "keys"), filepath.Join(dir, "grants")
	if err := os.WriteFile(keyFile, []byte("alice "+aliceKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(grantsFile, []byte(grants), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, up.URL, append([]gatetest.Option{gatetest.Args("--api-keys-file="+keyFile, "--grants-file="+grantsFile)}, opts...)...)
	return g, grantsFile
}

// TestHostileGrantRevokedBeforeListMessage: a List stream opened while its
// caller held `list u1`, whose request message comes after a reload has
// revoked that grant, is refused. The check ran on the message but with
// the table of the moment the stream opened, so the revoked caller listed
// u1's tokens; nothing but --max-connection-age bounds how long a stream
// may wait to send its message.
func TestHostileGrantRevokedBeforeListMessage(t *testing.T) {
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.Lines(fu.Tokens("tok_", 3)...))
	g, grantsFile := grantsGate(t, up, "key:alice list u1\n")
	ctx := metadata.AppendToOutgoingContext(g.ctx(), "authorization", "Bearer "+aliceKey)
	// grpc-go sends the stream's headers now, its message later.
	cs, err := g.Conn().NewStream(ctx, &grpc.StreamDesc{StreamName: "List", ServerStreams: true, ClientStreams: true},
		"/cbkgate.token.v1.TokenService/List")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the server has begun the call
	if err := os.WriteFile(grantsFile, []byte("key:alice list nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.App().Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.list(ctx, &tokenv1.ListRequest{UserId: "u1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a List begun after the revocation: %v, want PERMISSION_DENIED", err)
	}
	if err := cs.SendMsg(&tokenv1.ListRequest{UserId: "u1"}); err != nil {
		t.Fatal(err)
	}
	_ = cs.CloseSend()
	got := 0
	for {
		if err = cs.RecvMsg(new(tokenv1.ListResponse)); err != nil {
			break
		}
		got++
	}
	if status.Code(err) != codes.PermissionDenied || got != 0 {
		t.Fatalf("the List whose message came after the revocation: %d tokens, %v; want PERMISSION_DENIED and none", got, err)
	}
	wantCalls(t, up, fu.List, 0)
}

// TestHostileHopIsNotAged: every HTTP call reaches the gRPC server over
// one in-process connection, which --max-connection-age aged like a
// client's: each HTTP List still running --shutdown-timeout after the age
// was cut, however young its own connection, with grpc-go's transport
// error as its message. A REST List of 16 tokens over 4 s, with an age of
// 1 s and a grace of 1 s, now ends complete.
func TestHostileHopIsNotAged(t *testing.T) {
	up := fu.Start(t)
	up.SetDefault(fu.List, fu.PaceLines(250*time.Millisecond, fu.Lines(fu.Tokens("tok_", 16)...)))
	g := startGate(t, up.URL, gatetest.ShutdownTimeout(time.Second), gatetest.Args("--max-connection-age=1s"))
	res := g.do(g.ctx(), http.MethodGet, "/v1/users/u1/tokens", "")
	lines := strings.Split(strings.TrimSpace(string(res.body)), "\n")
	if res.status != http.StatusOK || len(lines) != 16 || strings.Contains(string(res.body), `"error"`) {
		t.Fatalf("a REST List of 16 tokens over 4 s: HTTP %d, %d lines, the last %.300s", res.status, len(lines), lines[len(lines)-1])
	}
}

// TestHostileShutdownCutInWords: a REST List still running when
// --shutdown-timeout passes ends with an error line in cbkgate's words
// (SHUTTING_DOWN), not grpc-go's transport error ("closing transport due
// to ... goaway"); and a Connect List cut the same way leaves no plain-text
// line of httputil's on the standard logger, outside the log's format.
func TestHostileShutdownCutInWords(t *testing.T) {
	var stdlog testlog.Buffer
	prev, prevFlags := log.Writer(), log.Flags()
	log.SetOutput(&stdlog)
	t.Cleanup(func() { log.SetOutput(prev); log.SetFlags(prevFlags) })

	up := fu.Start(t)
	up.SetDefault(fu.List, fu.PaceLines(200*time.Millisecond, fu.Lines(fu.Tokens("tok_", 200)...)))
	g := startGate(t, up.URL, gatetest.ShutdownTimeout(time.Second))

	rest, err := g.hc.Do(mustRequest(t, g.ctx(), http.MethodGet, g.URL()+"/v1/users/u1/tokens", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Body.Close()
	restLines := bufio.NewScanner(rest.Body)
	if !restLines.Scan() {
		t.Fatalf("REST List: no first token: %v", restLines.Err())
	}
	connect, err := g.hc.Do(mustRequest(t, g.ctx(), http.MethodPost, g.URL()+rpcPrefix+"List",
		envelope(0, []byte(`{"user_id":"u1"}`)), map[string]string{"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer connect.Body.Close()
	var frame [5]byte
	if _, err := io.ReadFull(connect.Body, frame[:]); err != nil {
		t.Fatalf("Connect List: no first message: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(io.Discard, connect.Body) })
	var last string
	wg.Go(func() {
		for restLines.Scan() {
			last = restLines.Text()
		}
	})
	if err := g.Stop(15 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	wg.Wait()
	if !strings.Contains(last, `"error"`) {
		t.Fatalf("the REST List cut by the shutdown ended with %.300s, want an error line", last)
	}
	if !strings.Contains(last, `"SHUTTING_DOWN"`) || strings.Contains(last, "transport") || strings.Contains(last, "goaway") {
		t.Errorf("the REST List's error line: %.500s\nwant SHUTTING_DOWN in cbkgate's words", last)
	}
	if s := stdlog.String(); s != "" {
		t.Errorf("lines outside the configured log format (the standard logger):\n%s", s)
	}
}

// mustRequest builds a request with body and headers.
func mustRequest(t *testing.T, ctx context.Context, method, url string, body []byte, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// TestHostileGrantsPathNotAFile: the grants file's path swapped for a FIFO
// that nothing writes to blocked the watcher's read for good, and with it
// every reload and the shutdown (Run waits for the watcher). A reload now
// refuses anything but a regular file, keeps the grants it had, and
// shutdown ends on time.
func TestHostileGrantsPathNotAFile(t *testing.T) {
	up := fu.Start(t)
	g, grantsFile := grantsGate(t, up, "key:alice * *\n", gatetest.ShutdownTimeout(time.Second))
	fifo := filepath.Join(filepath.Dir(grantsFile), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, grantsFile); err != nil {
		t.Fatal(err)
	}
	// Should a reader block anyway, let it go once the test is over.
	defer func() {
		if f, err := os.OpenFile(grantsFile, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- g.App().Reload() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a reload from a FIFO succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a reload from a FIFO at the grants path did not return within 5 s")
	}
	ctx := metadata.AppendToOutgoingContext(g.ctx(), "authorization", "Bearer "+aliceKey)
	if _, err := g.Client().Create(ctx, &tokenv1.CreateRequest{UserId: "u1", Name: "n"}); err != nil {
		t.Errorf("a Create under the grants kept: %v", err)
	}
	time.Sleep(3 * time.Second) // the watcher looks every 2 s
	g.Shutdown()
	select {
	case <-g.Done():
	case <-time.After(8 * time.Second):
		t.Fatal("Run did not return within 8 s of shutdown (--shutdown-timeout=1s)")
	}
}
