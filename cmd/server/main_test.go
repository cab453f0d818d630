package main

// These tests run the real binary as a child process, the way an operator
// or an orchestrator does: flags and environment in, JSON logs on stderr,
// real sockets, real signals, exit status out. They cover what no in-process
// test can: main's exit codes and one-line errors, and the drain that a
// SIGTERM or SIGINT starts.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"
	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/k8ssecret"
	"github.com/cbkgate/cbkgate/internal/testlog"
	"github.com/cbkgate/cbkgate/internal/testport"
)

// binDir holds the binary built once for all tests.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cbkgate-main-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "main_test:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds ./cmd/server once (without -race: the child need not be
// instrumented, and a plain build is much faster) and returns its path.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		path := filepath.Join(binDir, "cbkgate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// childEnv is the test process's environment without any cbkgate or
// ChatBotKit setting, plus extra: a variable set where the tests run must
// not change what the child is configured with.
func childEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "CBKGATE_") || strings.HasPrefix(kv, "CHATBOTKIT_")
	})
	return append(env, extra...)
}

// lineLog is the child's stderr, split into lines as they arrive.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced whenever a line arrives
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// snapshot returns the complete lines so far, and a channel closed when
// another arrives.
func (l *lineLog) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines), l.changed
}

// String is everything written so far, a trailing partial line included.
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + "\n" + string(l.partial)
}

// child is one running cbkgate process.
type child struct {
	cmd    *exec.Cmd
	stderr *lineLog
	stdout *testlog.Buffer

	done     chan struct{} // closed when the process has exited
	state    *os.ProcessState
	exitedAt time.Time

	grpcAddr, httpAddr string
}

// start runs the binary with args and a clean environment plus env. The
// process is killed (by its own PID) at cleanup if it is still running, and
// its stderr is logged if the test failed.
func start(t *testing.T, args []string, env ...string) *child {
	t.Helper()
	c := &child{
		cmd:    exec.Command(binary(t), args...),
		stderr: newLineLog(),
		stdout: &testlog.Buffer{},
		done:   make(chan struct{}),
	}
	c.cmd.Env = childEnv(env...)
	c.cmd.Stdout = c.stdout
	c.cmd.Stderr = c.stderr
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start cbkgate: %v", err)
	}
	go func() {
		_ = c.cmd.Wait()
		c.state = c.cmd.ProcessState
		c.exitedAt = time.Now()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				t.Errorf("cbkgate (pid %d) still running 10s after SIGKILL", c.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("cbkgate %s stderr:\n%s", strings.Join(args, " "), c.stderr.String())
		}
	})
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitLine waits until a stderr line satisfies match, or the process
// exits, or the timeout passes.
func (c *child) waitLine(timeout time.Duration, match func(string) bool) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		lines, changed := c.stderr.snapshot()
		for _, l := range lines[seen:] {
			if match(l) {
				return l, nil
			}
		}
		seen = len(lines)
		select {
		case <-changed:
		case <-c.done:
			// The last lines may have landed just before the exit.
			lines, _ := c.stderr.snapshot()
			for _, l := range lines[seen:] {
				if match(l) {
					return l, nil
				}
			}
			return "", fmt.Errorf("cbkgate exited (%v) first", c.state)
		case <-deadline.C:
			return "", fmt.Errorf("not seen within %v", timeout)
		}
	}
}

// logRecord is the part of a JSON log line the tests look at.
type logRecord struct {
	Msg  string `json:"msg"`
	Addr string `json:"addr"`
}

func (c *child) waitLogAddr(msg string) (string, error) {
	line, err := c.waitLine(15*time.Second, func(l string) bool {
		var r logRecord
		return json.Unmarshal([]byte(l), &r) == nil && r.Msg == msg && r.Addr != ""
	})
	if err != nil {
		return "", fmt.Errorf("log line %q: %w", msg, err)
	}
	var r logRecord
	_ = json.Unmarshal([]byte(line), &r)
	return r.Addr, nil
}

// waitListening reads the gRPC and HTTP addresses from the startup log.
func (c *child) waitListening() error {
	var err error
	if c.grpcAddr, err = c.waitLogAddr("grpc listening"); err != nil {
		return err
	}
	if c.httpAddr, err = c.waitLogAddr("http listening"); err != nil {
		return err
	}
	// The last start line, written once the server is ready (/readyz 200).
	_, err = c.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, "cbkgate serving") })
	return err
}

// waitExit waits for the process to exit and returns its exit code.
func (c *child) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.state.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("cbkgate (pid %d) did not exit within %v", c.cmd.Process.Pid, timeout)
		return -1
	}
}

func (c *child) signal(t *testing.T, sig os.Signal) time.Time {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to pid %d: %v", sig, c.cmd.Process.Pid, err)
	}
	return time.Now()
}

// startDev runs cbkgate in dev mode on ephemeral ports. The emulator needs
// a fixed port, found free beforehand; if something takes it in between,
// the start is retried once with another.
func startDev(t *testing.T, extra ...string) *child {
	t.Helper()
	for attempt := 1; ; attempt++ {
		args := append([]string{
			"--emulator",
			"--grpc-addr=127.0.0.1:0",
			"--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--emulator-addr=127.0.0.1:" + strconv.Itoa(testport.Free(t)),
			"--log-format=json",
		}, extra...)
		c := start(t, args)
		err := c.waitListening()
		if err == nil {
			return c
		}
		if attempt == 1 && c.exited() && strings.Contains(c.stderr.String(), "address already in use") {
			t.Logf("emulator port taken, retrying: %s", strings.TrimSpace(c.stderr.String()))
			continue
		}
		t.Fatalf("cbkgate --emulator did not start: %v", err)
	}
}

// startPassThrough runs cbkgate without a held secret against upstream.
func startPassThrough(t *testing.T, upstream string, extra ...string) *child {
	t.Helper()
	args := append([]string{
		"--upstream=" + upstream,
		"--grpc-addr=127.0.0.1:0",
		"--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--log-format=json",
	}, extra...)
	c := start(t, args)
	if err := c.waitListening(); err != nil {
		t.Fatalf("cbkgate did not start: %v", err)
	}
	return c
}

func dial(t *testing.T, addr string) (*grpc.ClientConn, tokenv1.TokenServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, tokenv1.NewTokenServiceClient(conn)
}

func withBearer(ctx context.Context, v string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+v)
}

// httpDo does one request on a fresh connection, so that a kept-alive
// connection cannot hide what a new client would see.
func httpDo(ctx context.Context, method, url, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestDevMode is the newcomer's path: `cbkgate --emulator`, then every kind
// of call over gRPC and over HTTP with no credentials at all.
func TestDevMode(t *testing.T) {
	t.Parallel()
	const emuSecret = "dev-mode-secret-5d1c"
	c := startDev(t, "--emulator-secret="+emuSecret)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, client := dial(t, c.grpcAddr)
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", tokenv1.TokenService_ServiceDesc.ServiceName} {
		res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v, %v; want SERVING", svc, res.GetStatus(), err)
		}
	}

	meta, err := structpb.NewStruct(map[string]any{"team": "dev", "n": 1.0})
	if err != nil {
		t.Fatal(err)
	}
	created, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "dev-user", Name: "grpc", Description: "made over gRPC", Meta: meta})
	if err != nil {
		t.Fatalf("Create over gRPC: %v", err)
	}
	if created.GetId() == "" || created.GetToken() == "" || created.GetCreateTime() == nil {
		t.Fatalf("Create over gRPC: incomplete response %v", created)
	}
	stream, err := client.List(ctx, &tokenv1.ListRequest{UserId: "dev-user"})
	if err != nil {
		t.Fatal(err)
	}
	var listed []*tokenv1.ListResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("List over gRPC: %v", err)
		}
		listed = append(listed, m)
	}
	if len(listed) != 1 {
		t.Fatalf("List over gRPC: %d tokens, want 1", len(listed))
	}
	if tok := listed[0].GetToken(); tok.GetId() != created.GetId() || tok.GetName() != "grpc" ||
		tok.GetDescription() != "made over gRPC" || tok.GetMeta().GetFields()["team"].GetStringValue() != "dev" {
		t.Errorf("List over gRPC: got %v, want the created token with its name, description and meta", tok)
	}
	if listed[0].GetCursor() == "" {
		t.Errorf("List over gRPC: the last token has no cursor")
	}

	base := "http://" + c.httpAddr
	code, body, err := httpDo(ctx, http.MethodPost, base+"/v1/users/dev-http/tokens", `{"name":"http","meta":{"via":"curl"}}`)
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST /v1/users/dev-http/tokens: %d %s %v", code, body, err)
	}
	var hc1 struct {
		ID         string `json:"id"`
		Token      string `json:"token"`
		CreateTime string `json:"create_time"`
	}
	if err := json.Unmarshal(body, &hc1); err != nil || hc1.ID == "" || hc1.Token == "" || hc1.CreateTime == "" {
		t.Fatalf("POST: body %s (%v): want id, token, create_time", body, err)
	}
	code, body, err = httpDo(ctx, http.MethodGet, base+"/v1/users/dev-http/tokens", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/users/dev-http/tokens: %d %s %v", code, body, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("GET: %d NDJSON lines, want 1:\n%s", len(lines), body)
	}
	var line struct {
		Result struct {
			Token struct {
				ID   string            `json:"id"`
				Name string            `json:"name"`
				Meta map[string]string `json:"meta"`
			} `json:"token"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatalf("GET: line %s: %v", lines[0], err)
	}
	if tok := line.Result.Token; tok.ID != hc1.ID || tok.Name != "http" || tok.Meta["via"] != "curl" {
		t.Errorf("GET: %s, want the token created over HTTP", lines[0])
	}
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if code, body, err := httpDo(ctx, http.MethodGet, base+path, ""); err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %.100s %v", path, code, body, err)
		}
	}

	sent := c.signal(t, syscall.SIGTERM)
	if code := c.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit status after SIGTERM: %d, want 0", code)
	}
	t.Logf("idle dev-mode server exited %v after SIGTERM", c.exitedAt.Sub(sent).Round(time.Millisecond))
	logs := c.stderr.String()
	for what, v := range map[string]string{"emulator secret": emuSecret, "gRPC Create token": created.GetToken(), "HTTP Create token": hc1.Token} {
		if strings.Contains(logs, v) {
			t.Errorf("the %s appears in the logs", what)
		}
	}
}

// TestConfigErrors: a misconfigured start fails at once with one line on
// stderr and a non-zero status, before serving anything.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	blank := filepath.Join(dir, "blank")
	keys := filepath.Join(dir, "keys")
	badKeys := filepath.Join(dir, "bad-keys")
	badGrants := filepath.Join(dir, "bad-grants")
	for path, content := range map[string]string{empty: "", blank: " \n\t\n", keys: "key-one\n", badKeys: "ok key-one\nnot a key-line\n",
		badGrants: "key:ok * *\nkey:b lsit u1\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // not defer: the subtests run after this function returns

	const heldSecret = "held-secret-9f3e2a"
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		args []string
		env  []string
		want string // in the error line
	}{
		{"grpc-addr without port", []string{"--grpc-addr=localhost"}, nil, "--grpc-addr"},
		{"grpc-addr port out of range", []string{"--grpc-addr=127.0.0.1:70000"}, nil, "--grpc-addr"},
		{"grpc-addr from env", nil, []string{"CBKGATE_GRPC_ADDR=nonsense"}, "CBKGATE_GRPC_ADDR"},
		{"http-addr unparseable", []string{"--http-addr=::1:80:"}, nil, "--http-addr"},
		{"upstream not http", []string{"--upstream=ftp://api.example.com"}, nil, "--upstream"},
		{"upstream unparseable", []string{"--upstream=http://[::1"}, nil, "--upstream"},
		{"upstream relative", []string{"--upstream=api.chatbotkit.com"}, nil, "--upstream"},
		{"upstream from env", nil, []string{"CHATBOTKIT_BASE_URL=http://"}, "CHATBOTKIT_BASE_URL"},
		{"api-keys-file missing", []string{"--api-keys-file=" + missing}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--api-keys-file"},
		{"api-keys-file is a directory", []string{"--api-keys-file=" + dir}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--api-keys-file"},
		{"api-keys-file empty", []string{"--api-keys-file=" + empty}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--api-keys-file"},
		{"secret file empty", []string{"--api-keys-file=" + keys}, []string{"CHATBOTKIT_API_SECRET_FILE=" + empty}, "CHATBOTKIT_API_SECRET_FILE: " + empty + " is empty"},
		{"secret file blank", []string{"--allow-unauthenticated"}, []string{"CHATBOTKIT_API_SECRET_FILE=" + blank}, "CHATBOTKIT_API_SECRET_FILE: " + blank + " is empty"},
		{"secret file missing", []string{"--allow-unauthenticated"}, []string{"CHATBOTKIT_API_SECRET_FILE=" + missing}, "CHATBOTKIT_API_SECRET_FILE"},
		{"unknown flag", []string{"--no-such-flag"}, nil, "no-such-flag"},
		{"stray argument", []string{"--emulator", heldSecret}, nil, "argument"},
		{"held secret, callers unauthenticated", nil, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--allow-unauthenticated"},
		{"held secret file, callers unauthenticated", nil, []string{"CHATBOTKIT_API_SECRET_FILE=" + keys}, "--api-keys-file"},
		{"secret file missing, nothing else set", nil, []string{"CHATBOTKIT_API_SECRET_FILE=" + missing}, "CHATBOTKIT_API_SECRET_FILE: " + missing + " does not exist"},
		{"keys file bad line", []string{"--api-keys-file=" + badKeys}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, badKeys + " line 2"},
		{"grants file bad line", []string{"--api-keys-file=" + keys, "--grants-file=" + badGrants}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--grants-file: " + badGrants + " line 2: METHODS"},
		{"grants file in pass-through mode", nil, []string{"CBKGATE_GRANTS_FILE=" + blank}, "CBKGATE_GRANTS_FILE needs a held secret"},
		{"any origin with unauthenticated callers", []string{"--allow-unauthenticated", "--cors-origins=*"}, []string{"CHATBOTKIT_API_SECRET=" + heldSecret}, "--cors-origins"},
		{"any origin in dev mode", []string{"--emulator"}, []string{"CBKGATE_CORS_ORIGINS=*"}, "CBKGATE_CORS_ORIGINS"},
		{"bad shutdown timeout", []string{"--shutdown-timeout=soon"}, nil, "--shutdown-timeout"},
		{"emulator on a public address", []string{"--emulator", "--emulator-addr=0.0.0.0:8787"}, nil, "--emulator-addr"},
		{"grpc port in use", []string{"--emulator", "--emulator-addr=127.0.0.1:" + strconv.Itoa(testport.Free(t)), "--grpc-addr=" + busy.Addr().String(), "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}, nil, "--grpc-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t), tt.args...)
			cmd.Env = childEnv(tt.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			began := time.Now()
			err := cmd.Run()
			elapsed := time.Since(began)
			if ctx.Err() != nil {
				t.Fatalf("still running after %v (killed); stderr: %s", elapsed, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("exit: %v, want a non-zero status; stderr: %s", err, stderr.String())
			}
			// A port in use is a failure to start (1); the rest are the
			// configuration's (2), as the README says.
			if want := map[bool]int{true: 1, false: 2}[strings.Contains(tt.name, "in use")]; ee.ExitCode() != want {
				t.Errorf("exit status %d, want %d", ee.ExitCode(), want)
			}
			msg := stderr.String()
			t.Logf("%v: %s", err, strings.TrimSpace(msg))
			if !strings.HasPrefix(msg, "cbkgate: ") || !strings.HasSuffix(msg, "\n") || strings.Count(msg, "\n") != 1 {
				t.Errorf("stderr is not exactly one line starting with \"cbkgate: \":\n%q", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("stderr %q does not name %q", msg, tt.want)
			}
			if strings.Contains(msg, heldSecret) {
				t.Errorf("stderr echoes the secret: %q", msg)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q, want nothing", stdout.String())
			}
			if elapsed > 3*time.Second {
				t.Errorf("took %v to fail", elapsed)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t), arg)
			cmd.Env = childEnv()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v, want exit 0; stderr: %s", arg, err, stderr.String())
			}
			out := stdout.String()
			if !strings.HasPrefix(out, "Usage: cbkgate") {
				t.Errorf("stdout does not start with the usage line:\n%s", out)
			}
			for _, want := range []string{"--grpc-addr", "--http-addr", "--upstream", "--api-keys-file", "--allow-unauthenticated",
				"--emulator", "--shutdown-timeout", "CBKGATE_GRPC_ADDR", "CHATBOTKIT_API_SECRET", "CHATBOTKIT_API_SECRET_FILE"} {
				if !strings.Contains(out, want) {
					t.Errorf("usage does not mention %s", want)
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: %q, want nothing", stderr.String())
			}
		})
	}
}

// TestVersion: --version prints "cbkgate VERSION (REVISION)" and exits 0,
// with the version and revision the image build passes with -ldflags -X.
func TestVersion(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(bin string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, "--version")
		cmd.Env = childEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() != 0 {
			t.Fatalf("--version: %v, stderr %q; want exit 0 and nothing on stderr", err, stderr.String())
		}
		return string(out)
	}
	if out := run(binary(t)); !regexp.MustCompile(`^cbkgate \S+ \(\S+\)\n$`).MatchString(out) {
		t.Errorf("--version printed %q, want one line `cbkgate VERSION (REVISION)`", out)
	}
	stamped := filepath.Join(t.TempDir(), "cbkgate-stamped")
	const pkg = "github.com/cbkgate/cbkgate/internal/version"
	build := exec.CommandContext(ctx, "go", "build", "-o", stamped,
		"-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".revision=0123abcd", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags -X: %v\n%s", err, out)
	}
	if out := run(stamped); out != "cbkgate v9.8.7 (0123abcd)\n" {
		t.Errorf("stamped --version printed %q", out)
	}
}

// blockingUpstream is a ChatBotKit stand-in whose token/create holds every
// request until release is closed (or the request is cancelled).
type blockingUpstream struct {
	srv      *httptest.Server
	received chan struct{} // closed when the first create arrives
	arrivals chan struct{} // one value per create that arrives
	release  chan struct{}
	creates  atomic.Int32
	auth     atomic.Value // the Authorization header of the first create
	answered atomic.Bool  // a create got a 200
	Release  func()       // lets held creates answer; idempotent
}

func newBlockingUpstream(t *testing.T) *blockingUpstream {
	u := &blockingUpstream{received: make(chan struct{}), arrivals: make(chan struct{}, 64), release: make(chan struct{})}
	var once, releaseOnce sync.Once
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/token/create") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"not here","code":"NOT_FOUND"}`)
			return
		}
		u.creates.Add(1)
		once.Do(func() {
			u.auth.Store(r.Header.Get("Authorization"))
			close(u.received)
		})
		u.arrivals <- struct{}{}
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"tok-drained","token":"sk-drained-7c41","createdAt":1700000000000}`)
		u.answered.Store(true)
	}))
	u.Release = func() { releaseOnce.Do(func() { close(u.release) }) }
	// Cleanups run last-in first-out: release the handlers, then close.
	t.Cleanup(u.srv.Close)
	t.Cleanup(u.Release)
	return u
}

// TestSignalDrain: with a call in flight, SIGTERM or SIGINT turns the
// server unready and refuses new calls, lets the call finish, and exits 0.
func TestSignalDrain(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testDrain(t, sig)
		})
	}
}

func testDrain(t *testing.T, sig syscall.Signal) {
	const bearer = "cbk-caller-secret-31a8"
	up := newBlockingUpstream(t)
	c := startPassThrough(t, up.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readyz := "http://" + c.httpAddr + "/readyz"
	if code, _, err := httpDo(ctx, http.MethodGet, readyz, ""); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before the signal: %d %v, want 200", code, err)
	}

	conn, client := dial(t, c.grpcAddr)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: tokenv1.TokenService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := watch.Recv(); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v, want SERVING", res.GetStatus(), err)
	}

	type result struct {
		res *tokenv1.CreateResponse
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := client.Create(withBearer(ctx, bearer), &tokenv1.CreateRequest{UserId: "u-drain", Name: "in flight"})
		inflight <- result{res, err}
	}()
	select {
	case <-up.arrivals:
	case r := <-inflight:
		t.Fatalf("Create ended before reaching upstream: %v", r.err)
	case <-ctx.Done():
		t.Fatal("the Create never reached upstream")
	}
	if got := up.auth.Load(); got != "Bearer "+bearer {
		t.Errorf("upstream Authorization %q, want the caller's bearer as is", got)
	}
	// The same through the JSON gateway, on a connection of its own.
	type httpResult struct {
		code int
		body []byte
		err  error
	}
	inflightHTTP := make(chan httpResult, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.httpAddr+"/v1/users/u-drain/tokens", strings.NewReader(`{"name":"in flight over HTTP"}`))
		if err != nil {
			inflightHTTP <- httpResult{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := hc.Do(req)
		if err != nil {
			inflightHTTP <- httpResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflightHTTP <- httpResult{resp.StatusCode, b, err}
	}()
	select {
	case <-up.arrivals:
	case r := <-inflightHTTP:
		t.Fatalf("POST ended before reaching upstream: %d %s %v", r.code, r.body, r.err)
	case <-ctx.Done():
		t.Fatal("the POST never reached upstream")
	}

	c.signal(t, sig)

	// The health service tells watchers first. The watch is itself a call in
	// flight, so end it once it has said so.
	if res, err := watch.Recv(); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health watch after %v: %v %v, want NOT_SERVING", sig, res.GetStatus(), err)
	}
	stopWatch()

	if sig == syscall.SIGTERM {
		// Probes must see the drain as 503 (contract: "/readyz 200 while
		// serving, 503 while draining"), while the Create is still held.
		var last string
		saw503 := false
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !saw503; {
			code, _, err := httpDo(ctx, http.MethodGet, readyz, "")
			switch {
			case err != nil:
				last = err.Error()
			case code == http.StatusServiceUnavailable:
				saw503 = true
			default:
				last = strconv.Itoa(code)
			}
			if !saw503 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !saw503 {
			t.Errorf("/readyz never answered 503 while a call was draining; last answer: %s", last)
		}
	}

	// A new call on a new connection is refused, and nothing more reaches
	// upstream.
	_, fresh := dial(t, c.grpcAddr)
	newCtx, newCancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = fresh.Create(withBearer(newCtx, bearer), &tokenv1.CreateRequest{UserId: "u-drain", Name: "too late"})
	newCancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Create on a new connection while draining: %v, want UNAVAILABLE", err)
	}
	if n := up.creates.Load(); n != 2 {
		t.Errorf("upstream saw %d creates, want the 2 in flight", n)
	}
	if c.exited() {
		t.Fatalf("cbkgate exited (%v) with a call still in flight", c.state)
	}

	up.Release()
	select {
	case r := <-inflight:
		if r.err != nil {
			t.Errorf("the in-flight Create: %v, want OK", r.err)
		} else if r.res.GetId() != "tok-drained" || r.res.GetToken() != "sk-drained-7c41" {
			t.Errorf("the in-flight Create: %v", r.res)
		}
	case <-ctx.Done():
		t.Fatal("the in-flight Create did not finish after upstream answered")
	}
	select {
	case r := <-inflightHTTP:
		if r.err != nil || r.code != http.StatusOK || !strings.Contains(string(r.body), `"tok-drained"`) {
			t.Errorf("the in-flight POST: %d %s %v, want 200 with the token", r.code, r.body, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the in-flight POST did not finish after upstream answered")
	}
	if code := c.waitExit(t, 10*time.Second); code != 0 {
		t.Errorf("exit status after %v: %d, want 0", sig, code)
	}
	logs := c.stderr.String()
	if strings.Contains(logs, bearer) || strings.Contains(logs, "sk-drained-7c41") {
		t.Errorf("the caller's bearer or the created token's secret appears in the logs")
	}
}

// TestShutdownTimeoutCutsOffStuckCall: a call that would never finish does
// not hold the process past --shutdown-timeout.
func TestShutdownTimeoutCutsOffStuckCall(t *testing.T) {
	t.Parallel()
	up := newBlockingUpstream(t) // released only at cleanup
	c := startPassThrough(t, up.srv.URL, "--shutdown-timeout=500ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, client := dial(t, c.grpcAddr)
	inflight := make(chan error, 1)
	go func() {
		_, err := client.Create(withBearer(ctx, "cbk-stuck"), &tokenv1.CreateRequest{UserId: "u-stuck", Name: "stuck"})
		inflight <- err
	}()
	select {
	case <-up.received:
	case err := <-inflight:
		t.Fatalf("Create ended before reaching upstream: %v", err)
	case <-ctx.Done():
		t.Fatal("the Create never reached upstream")
	}

	sent := c.signal(t, syscall.SIGTERM)
	code := c.waitExit(t, 10*time.Second)
	took := c.exitedAt.Sub(sent)
	t.Logf("exited %v after SIGTERM with a stuck call and --shutdown-timeout=500ms", took.Round(time.Millisecond))
	if took >= 5*time.Second {
		t.Errorf("exit took %v after SIGTERM, want well under 5s", took)
	}
	if took < 400*time.Millisecond {
		t.Errorf("exit after %v: the call in flight was not given its --shutdown-timeout", took)
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0 (a drain cut short by the timeout is still an orderly exit)", code)
	}
	select {
	case err := <-inflight:
		if status.Code(err) == codes.OK {
			t.Errorf("the stuck Create ended OK")
		}
		t.Logf("stuck Create ended with %v", status.Code(err))
	case <-time.After(5 * time.Second):
		t.Error("the stuck Create had not ended 5s after cbkgate exited")
	}
	if up.answered.Load() {
		t.Error("upstream answered the stuck create")
	}
}

// TestSIGHUPReloadsCredentials: a real SIGHUP makes the running process
// re-read its keys file (and does not end it, as SIGHUP's default would);
// a key added to the file is then accepted and a removed one refused.
func TestSIGHUPReloadsCredentials(t *testing.T) {
	t.Parallel()
	const secret = "sighup-upstream-secret"
	up := httptest.NewServer(emulator.New(emulator.Options{Secret: secret}))
	t.Cleanup(up.Close)
	dir := k8ssecret.New(t, map[string]string{"keys.txt": "first key-first-0123456789\n"})
	c := start(t, []string{"--upstream=" + up.URL, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--api-keys-file=" + dir.Path("keys.txt"), "--log-format=json"}, "CHATBOTKIT_API_SECRET="+secret)
	if err := c.waitListening(); err != nil {
		t.Fatal(err)
	}
	_, client := dial(t, c.grpcAddr)
	create := func(key string) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Create(withBearer(ctx, key), &tokenv1.CreateRequest{UserId: "u", Name: "n"})
		return status.Code(err)
	}
	if got := create("key-first-0123456789"); got != codes.OK {
		t.Fatalf("first key before the reload: %v", got)
	}
	reloaded := func(l string) bool {
		return strings.Contains(l, `"msg":"credentials reloaded"`) && strings.Contains(l, `"trigger":"SIGHUP"`)
	}

	// The startup line names the process to signal (under `go run`, not
	// the go command), and prints durations as the flags take them.
	serving, err := c.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"cbkgate serving"`) })
	if err != nil {
		t.Fatal(err)
	}
	var startup struct {
		PID    int `json:"pid"`
		Config struct {
			ShutdownTimeout string `json:"shutdown_timeout"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(serving), &startup); err != nil || startup.PID != c.cmd.Process.Pid || startup.Config.ShutdownTimeout != "20s" {
		t.Errorf("startup line %s: pid %d and shutdown_timeout %q (%v), want %d and 20s", serving, startup.PID, startup.Config.ShutdownTimeout, err, c.cmd.Process.Pid)
	}

	c.signal(t, syscall.SIGHUP)
	if _, err := c.waitLine(10*time.Second, reloaded); err != nil {
		t.Fatalf("no SIGHUP reload logged: %v", err)
	}
	dir.Update(t, map[string]string{"keys.txt": "second key-second-0123456789\n"})
	seen := len(func() []string { l, _ := c.stderr.snapshot(); return l }())
	c.signal(t, syscall.SIGHUP)
	if _, err := c.waitLine(10*time.Second, func(l string) bool {
		lines, _ := c.stderr.snapshot()
		return reloaded(l) && slices.Index(lines, l) >= seen
	}); err != nil {
		t.Fatalf("no second SIGHUP reload logged: %v", err)
	}
	if got := create("key-second-0123456789"); got != codes.OK {
		t.Errorf("added key after SIGHUP: %v, want OK", got)
	}
	if got := create("key-first-0123456789"); got != codes.Unauthenticated {
		t.Errorf("removed key after SIGHUP: %v, want UNAUTHENTICATED", got)
	}
	if c.exited() {
		t.Fatalf("cbkgate exited after SIGHUP: %v", c.state)
	}
	if strings.Contains(c.stderr.String(), "key-second-0123456789") {
		t.Error("the log carries a key")
	}
}
