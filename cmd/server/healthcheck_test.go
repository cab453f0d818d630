package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cbkgate/cbkgate/internal/testport"
)

// TestHealthcheckBinary: `cbkgate healthcheck` run as its own process, as
// Docker's HEALTHCHECK runs it, finds a real dev-mode server by flag or by
// CBKGATE_HTTP_ADDR and exits 0; with nothing listening it exits 1.
func TestHealthcheckBinary(t *testing.T) {
	c := startDev(t)
	_, port, _ := net.SplitHostPort(c.httpAddr)
	run := func(args []string, env ...string) (int, string) {
		cmd := exec.Command(binary(t), append([]string{"healthcheck"}, args...)...)
		cmd.Env = childEnv(env...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := run([]string{"--http-addr=" + c.httpAddr}); code != 0 || !strings.Contains(out, "200") {
		t.Errorf("healthcheck --http-addr=%s: exit %d, %q; want 0 and 200", c.httpAddr, code, out)
	}
	// The address as the server was given it, wildcard host and all.
	if code, out := run(nil, "CBKGATE_HTTP_ADDR=:"+port); code != 0 {
		t.Errorf("healthcheck with CBKGATE_HTTP_ADDR=:%s: exit %d, %q; want 0", port, code, out)
	}
	free := testport.Free(t)
	if code, out := run([]string{"--http-addr=127.0.0.1:" + strconv.Itoa(free)}); code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("healthcheck with nothing listening: exit %d, %q; want 1, connection refused", code, out)
	}
}

// TestHealthcheckAnswers: only a 200 from /readyz is healthy; a draining
// server's 503 is not; TLS follows CBKGATE_TLS_CERT; bad arguments fail
// with 1, never Docker's reserved 2.
func TestHealthcheckAnswers(t *testing.T) {
	var (
		mu    sync.Mutex
		ready bool
		paths []string
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		if !ready {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()
	addr := func(s *httptest.Server) string {
		return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
	}

	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		ready bool
		want  int
		path  string
	}{
		{"ready", []string{"--http-addr", addr(plain)}, nil, true, 0, "/readyz"},
		{"draining", []string{"--http-addr", addr(plain)}, nil, false, 1, "/readyz"},
		{"liveness path", []string{"--http-addr", addr(plain), "--path", "/healthz"}, nil, true, 0, "/healthz"},
		{"tls from env", nil, map[string]string{"CBKGATE_HTTP_ADDR": addr(secure), "CBKGATE_TLS_CERT": "/etc/tls/tls.crt"}, true, 0, "/readyz"},
		{"tls server, plaintext probe", []string{"--http-addr", addr(secure)}, nil, true, 1, ""},
		{"bad address", []string{"--http-addr", "nonsense"}, nil, true, 1, ""},
		{"stray argument", []string{"extra"}, nil, true, 1, ""},
		{"unknown flag", []string{"--nope"}, nil, true, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			ready, paths = tc.ready, nil
			mu.Unlock()
			var stdout, stderr bytes.Buffer
			got := healthcheck(tc.args, func(k string) string { return tc.env[k] }, &stdout, &stderr)
			mu.Lock()
			defer mu.Unlock()
			if got != tc.want {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", got, tc.want, stdout.String(), stderr.String())
			}
			if tc.path != "" && (len(paths) != 1 || paths[0] != tc.path) {
				t.Errorf("probed %v, want [%s]", paths, tc.path)
			}
		})
	}
}
