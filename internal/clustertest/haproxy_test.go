//go:build haproxy

package clustertest

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/cbkgate/cbkgate/internal/emulator"
	"github.com/cbkgate/cbkgate/internal/testport"
)

// upstreamSecret is the ChatBotKit secret the replicas hold and the shared
// emulator accepts.
const upstreamSecret = "clustertest-upstream-secret"

// ingress is one replica's own way in to the shared emulator: every
// replica is configured with a different --upstream, all served by the one
// emulator, so the requests counted here are exactly what that replica
// sent upstream. That is how the tests know which replica served a call.
type ingress struct {
	srv            *httptest.Server
	requests       atomic.Int64
	createRequests atomic.Int64
}

func (in *ingress) ServeHTTP(w http.ResponseWriter, r *http.Request, next http.Handler) {
	in.requests.Add(1)
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token/create") {
		in.createRequests.Add(1)
	}
	if strings.Contains(r.URL.Path, "/user/"+slowUser+"/") {
		time.Sleep(slowPageDelay)
		w = &pacedWriter{ResponseWriter: w}
	}
	next.ServeHTTP(w, r)
}

// slowUser's listing takes slowPageDelay upstream per page, and per line of
// a JSONL stream, so that a List of slowTokens (one per page, or one
// stream) is still running when its replica gets SIGTERM.
const (
	slowUser      = "slow-lister"
	slowTokens    = 12
	slowPageDelay = 250 * time.Millisecond
)

// replica is one cbkgate process with fixed ports, so that it can be
// restarted where HAProxy expects it.
type replica struct {
	name               string
	grpcPort, httpPort int
	up                 *ingress
	extra              []string
	proc               *process
	starts             int
}

func (r *replica) grpcAddr() string { return hostPort(r.grpcPort) }
func (r *replica) httpAddr() string { return hostPort(r.httpPort) }

// start runs the real binary with a held secret and no caller
// authentication, and waits until it is ready.
func (r *replica) start(t *testing.T) {
	t.Helper()
	args := append([]string{
		"--grpc-addr=" + r.grpcAddr(),
		"--http-addr=" + r.httpAddr(),
		"--upstream=" + r.up.srv.URL,
		"--allow-unauthenticated",
		"--log-format=json",
		"--log-level=warn",
		"--shutdown-timeout=10s",
	}, r.extra...)
	cmd := exec.Command(binary(t), args...)
	// The admin listener (metrics), where the binary has one, on a port of
	// its own: three replicas cannot all have :9091.
	cmd.Env = cleanEnv("CHATBOTKIT_API_SECRET="+upstreamSecret, "CBKGATE_ADMIN_ADDR=127.0.0.1:0")
	r.starts++
	r.proc = startProcess(t, fmt.Sprintf("%s (start %d)", r.name, r.starts), cmd)
	waitHTTP(t, r.proc, "http://"+r.httpAddr()+"/readyz", http.StatusOK, 20*time.Second)
}

// cluster is three replicas sharing one emulator, behind one HAProxy.
type cluster struct {
	emu      *emulator.Emulator
	replicas []*replica
	haproxy  *process
	sock     string // HAProxy's runtime API (stats socket, admin level)
	// HAProxy's frontends: gRPC over h2c (HTTP mode, per-call balancing),
	// the JSON gateway over HTTP/1.1, and plain TCP to the gRPC ports (L4,
	// as kube-proxy balances).
	grpcFront, httpFront, tcpFront string
}

// directURL is the emulator itself, for checking what it holds.
func (c *cluster) directURL() string { return c.replicas[0].up.srv.URL }

func newCluster(t *testing.T, replicaArgs ...string) *cluster {
	t.Helper()
	haproxyBin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy not found: install Debian's haproxy package (.ci/run does)")
	}
	c := &cluster{emu: emulator.New(emulator.Options{Secret: upstreamSecret})}
	for i := range 3 {
		in := &ingress{}
		emu := c.emu
		in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { in.ServeHTTP(w, r, emu) }))
		t.Cleanup(in.srv.Close)
		c.replicas = append(c.replicas, &replica{
			name: fmt.Sprintf("r%d", i), grpcPort: testport.Free(t), httpPort: testport.Free(t), up: in, extra: replicaArgs,
		})
	}
	for _, r := range c.replicas {
		r.start(t)
	}

	dir := t.TempDir()
	c.sock = filepath.Join(dir, "admin.sock")
	c.grpcFront, c.httpFront, c.tcpFront = hostPort(testport.Free(t)), hostPort(testport.Free(t)), hostPort(testport.Free(t))
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	f, err := os.Create(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := haproxyConfig.Execute(f, c); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(haproxyBin, "-c", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	c.haproxy = startProcess(t, "haproxy", exec.Command(haproxyBin, "-db", "-f", cfgPath))
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(c.sock); err == nil {
			break
		}
		if c.haproxy.exited() || time.Now().After(deadline) {
			t.Fatalf("haproxy's runtime API socket did not appear within 10 s (exited: %v)", c.haproxy.exited())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.waitStatus(t, 20*time.Second, "UP", c.replicas...)
	return c
}

// haproxyConfig is the balancer. Health checks are GET /readyz on each
// replica's HTTP port, every 200 ms, one failure takes a server out, two
// successes bring it back, as a Kubernetes readiness probe would (faster,
// to keep the test short). Requests are retried on another server only when
// the connection could not be made (retries, redispatch): HAProxy never
// resends a request that reached a replica, so a Create is never sent twice
// by the balancer either.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`
global
    stats socket {{.Sock}} mode 600 level admin
    maxconn 4096

defaults
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 1s
    retries 3
    option redispatch 1

frontend grpc_in
    mode http
    bind {{.GRPCFront}} proto h2
    default_backend be_grpc

backend be_grpc
    mode http
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{{- range .Replicas}}
    server {{.Name}} {{.GRPC}} proto h2 check port {{.HTTPPort}} check-proto h1 inter 200ms fall 1 rise 2
{{- end}}

frontend http_in
    mode http
    bind {{.HTTPFront}}
    default_backend be_http

backend be_http
    mode http
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{{- range .Replicas}}
    server {{.Name}} {{.HTTP}} check inter 200ms fall 1 rise 2
{{- end}}

frontend tcp_in
    mode tcp
    bind {{.TCPFront}}
    default_backend be_tcp

backend be_tcp
    mode tcp
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{{- range .Replicas}}
    server {{.Name}} {{.GRPC}} check port {{.HTTPPort}} inter 200ms fall 1 rise 2
{{- end}}
`))

// The template's view of the cluster.
func (c *cluster) Sock() string      { return c.sock }
func (c *cluster) GRPCFront() string { return c.grpcFront }
func (c *cluster) HTTPFront() string { return c.httpFront }
func (c *cluster) TCPFront() string  { return c.tcpFront }
func (c *cluster) Replicas() []map[string]any {
	var out []map[string]any
	for _, r := range c.replicas {
		out = append(out, map[string]any{"Name": r.name, "GRPC": r.grpcAddr(), "HTTP": r.httpAddr(), "HTTPPort": r.httpPort})
	}
	return out
}

// backends are the HAProxy backends that hold every replica.
var backends = []string{"be_grpc", "be_http", "be_tcp"}

// admin sends one command to HAProxy's runtime API and returns the answer.
func (c *cluster) admin(t *testing.T, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("unix", c.sock, 2*time.Second)
	if err != nil {
		t.Fatalf("HAProxy runtime API: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("HAProxy runtime API %q: %v", cmd, err)
	}
	return string(out)
}

// setState sets a replica's admin state ("drain": no new requests or
// connections, as when Kubernetes removes a terminating pod's endpoint;
// "ready": back in) in every backend.
func (c *cluster) setState(t *testing.T, r *replica, state string) {
	t.Helper()
	for _, be := range backends {
		if out := strings.TrimSpace(c.admin(t, fmt.Sprintf("set server %s/%s state %s", be, r.name, state))); out != "" {
			t.Fatalf("set server %s/%s state %s: %s", be, r.name, state, out)
		}
	}
}

// stats returns HAProxy's "show stat" rows for the servers, keyed
// "backend/server", each a map from column name to value.
func (c *cluster) stats(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := c.admin(t, "show stat")
	rd := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	rd.FieldsPerRecord = -1
	rows, err := rd.ReadAll()
	if err != nil || len(rows) < 1 {
		t.Fatalf("show stat: %v\n%s", err, out)
	}
	head := rows[0]
	res := map[string]map[string]string{}
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, v := range row {
			if i < len(head) {
				m[head[i]] = v
			}
		}
		res[m["pxname"]+"/"+m["svname"]] = m
	}
	return res
}

// waitStatus waits, bounded, until every backend reports status for each
// replica given.
func (c *cluster) waitStatus(t *testing.T, within time.Duration, status string, rs ...*replica) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := c.stats(t)
		var pending []string
		for _, r := range rs {
			for _, be := range backends {
				if got := st[be+"/"+r.name]["status"]; got != status {
					pending = append(pending, fmt.Sprintf("%s/%s=%s", be, r.name, got))
				}
			}
		}
		if len(pending) == 0 {
			return
		}
		if c.haproxy != nil && c.haproxy.exited() {
			t.Fatalf("haproxy exited: %v", c.haproxy.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy status not %s within %v: %s", status, within, strings.Join(pending, " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// emulatorTokens reads a user's tokens (id and name, oldest first) straight
// from the emulator's JSONL stream: the truth that the tests compare the
// calls' answers with.
func (c *cluster) emulatorTokens(t *testing.T, user string) (ids, names []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.directURL()+"/v1/partner/user/"+url.PathEscape(user)+"/token/list?order=asc", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+upstreamSecret)
	req.Header.Set("Accept", "application/jsonl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("emulator list of %s: %s", user, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Data struct{ ID, Name string } `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, line.Data.ID)
		names = append(names, line.Data.Name)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids, names
}

func (c *cluster) upstreamRequests() []int64 {
	out := make([]int64, len(c.replicas))
	for i, r := range c.replicas {
		out[i] = r.up.requests.Load()
	}
	return out
}

func (c *cluster) upstreamCreates() int64 {
	var n int64
	for _, r := range c.replicas {
		n += r.up.createRequests.Load()
	}
	return n
}

// waitServes waits, bounded, until replica i has sent upstream more than
// it had at before: it is taking calls.
func (c *cluster) waitServes(t *testing.T, i int, before int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for c.replicas[i].up.requests.Load() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s served no call within %v", c.replicas[i].name, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// cleanEnv is the test's environment without any cbkgate or ChatBotKit
// setting, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CBKGATE_") && !strings.HasPrefix(kv, "CHATBOTKIT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// stop sends sig and waits, bounded, for the exit; it returns the exit code.
func (p *process) stop(t testing.TB, sig os.Signal, within time.Duration) int {
	t.Helper()
	p.signalled.Store(true)
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s (pid %d) did not exit within %v of %v", p.name, p.cmd.Process.Pid, within, sig)
		return -1
	}
}

// pacedWriter sends what it is given a line at a time, slowPageDelay
// apart, each line flushed: a listing streamed as JSONL arrives as slowly
// as one read page by page.
type pacedWriter struct {
	http.ResponseWriter
	lines int
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		if p.lines > 0 {
			time.Sleep(slowPageDelay)
		}
		m, err := p.ResponseWriter.Write(line)
		n += m
		if err != nil {
			return n, err
		}
		if line[len(line)-1] == '\n' {
			p.lines++
		}
		http.NewResponseController(p.ResponseWriter).Flush()
		b = b[len(line):]
	}
	return n, nil
}
