package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// buildServer builds ./cmd/server into dir and returns the binary's path.
func buildServer(dir string) (string, error) {
	bin := filepath.Join(dir, "cbkgate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/cbkgate/cbkgate/cmd/server")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building cmd/server (run the benchmark from inside the repository, or pass -server): %w", err)
	}
	return bin, nil
}

// server is cbkgate running as a child process, so that its CPU time and
// resident memory are its own.
type server struct {
	cmd      *exec.Cmd
	pid      int
	grpcAddr string
	httpAddr string
	logPath  string
	conn     *grpc.ClientConn
	exited   chan struct{} // closed once the process has been reaped
}

// metricsOn and metricsOff are the values of startServer's metrics
// argument: an admin listener on a free loopback port (cbkgate's default,
// metrics collected), none (--admin-addr=, metrics off), or no
// --admin-addr flag at all, for a binary that predates it.
const (
	metricsOn     = "on"
	metricsOff    = "off"
	metricsNoFlag = "no flag"
)

// startServer runs bin in front of upstream with the held secret and no
// caller authentication, on free loopback ports, and waits until it serves.
// env is added to the benchmark's own environment.
func startServer(bin string, env []string, upstream, secret, logLevel, metrics, dir string) (*server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a picked port can be taken meanwhile
		s, err := tryStartServer(bin, env, upstream, secret, logLevel, metrics, dir, attempt)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartServer(bin string, env []string, upstream, secret, logLevel, metrics, dir string, attempt int) (*server, error) {
	grpcAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%d.log", filepath.Base(bin), logLevel, strings.ReplaceAll(metrics, " ", ""), attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"--grpc-addr=" + grpcAddr, "--http-addr=" + httpAddr, "--upstream=" + upstream,
		"--allow-unauthenticated", "--log-level=" + logLevel, "--shutdown-timeout=2s"}
	switch metrics {
	case metricsOn:
		adminAddr, err := freePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--admin-addr="+adminAddr)
	case metricsOff:
		args = append(args, "--admin-addr=")
	}
	cmd := exec.Command(bin, args...)
	// Tracing stays off whatever the benchmark's own environment says: the
	// figures are for cbkgate as it runs by default.
	cmd.Env = append(append(os.Environ(), env...), "CHATBOTKIT_API_SECRET="+secret, "OTEL_SDK_DISABLED=true")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the benchmark dies, so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, grpcAddr: grpcAddr, httpAddr: httpAddr, logPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	if err := s.waitServing(10 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("cbkgate did not start: %w\n%s", err, s.logTail())
	}
	return s, nil
}

// serveUpstream serves h on a free loopback port, as the upstream cbkgate
// is pointed at, and returns its base URL and how to stop it.
func serveUpstream(h http.Handler) (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	return "http://" + lis.Addr().String(), func() { hs.Close() }, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *server) waitServing(timeout time.Duration) error {
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	s.conn = conn
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-s.exited:
			return errors.New("the process exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("not serving after " + timeout.String())
}

// stop sends SIGTERM, waits for a clean exit, and kills the process if it
// does not come.
func (s *server) stop() {
	if s.conn != nil {
		s.conn.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// cpuTime is the process's user plus system CPU time so far.
func (s *server) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces; fields after it are
	// space-separated: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(utime+stime) * (time.Second / 100)
}

// memory returns VmRSS and VmHWM (peak RSS) in bytes.
func (s *server) memory() (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// resetPeak resets VmHWM to the current RSS (Linux: clear_refs 5), so that
// the peak read later is the peak since now. It reports whether it worked.
func (s *server) resetPeak() bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0) == nil
}
