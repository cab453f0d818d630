//go:build image

package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	tokenv1 "github.com/cbkgate/cbkgate/gen/cbkgate/token/v1"

	"github.com/cbkgate/cbkgate/internal/testport"
)

// The user the image runs as, and what distroless's /etc/passwd and
// /etc/group give it.
const (
	imageUser = "65532:65532"
	passwd    = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group     = "root:x:0:\nnonroot:x:65532:\n"
	caBundle  = "/etc/ssl/certs/ca-certificates.crt"
)

// TestImageRunsAsNonRootReadOnly builds deploy/image/Containerfile.ci with
// buildah (no Docker engine, no registry: FROM scratch), checks the image's
// configuration and file system, then runs its entry point the way a
// container runtime would: in the image's root file system, mounted
// read-only, as the image's user (65532), with the image's environment. The
// running server must answer health checks, its own `healthcheck`
// subcommand (run the same way), and real calls; SIGTERM must end it with
// status 0.
func TestImageRunsAsNonRootReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the image test needs root (buildah, a mount namespace and chroot); run .ci/run as root")
	}
	tools := map[string]string{}
	for _, tool := range []string{"buildah", "unshare", "mount", "chroot"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found: install buildah and util-linux (.ci/run does)", tool)
		}
		tools[tool] = p
	}
	root := repoRoot(t)

	// The build context: the binary and the files distroless would add.
	buildCtx := t.TempDir()
	bin, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		t.Fatalf("CA bundle for the image: %v (install ca-certificates)", err)
	}
	for name, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"cbkgate":                           {bin, 0o755},
		"etc/passwd":                        {[]byte(passwd), 0o644},
		"etc/group":                         {[]byte(group), 0o644},
		"etc/ssl/certs/ca-certificates.crt": {ca, 0o644},
	} {
		p := filepath.Join(buildCtx, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}

	store := t.TempDir()
	buildah := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		all := append([]string{"--storage-driver", "vfs", "--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run")}, args...)
		out, err := exec.CommandContext(ctx, tools["buildah"], all...).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, msg)
		}
		return strings.TrimSpace(string(out))
	}
	const tag = "localhost/cbkgate:ci"
	// Docker format: OCI image configs have no HEALTHCHECK.
	buildah("bud", "--isolation", "chroot", "--format", "docker", "-q",
		"-f", filepath.Join(root, "deploy/image/Containerfile.ci"), "-t", tag, buildCtx)

	var inspect struct {
		Docker struct {
			Config struct {
				User         string
				Env          []string
				Entrypoint   []string
				ExposedPorts map[string]struct{}
				Healthcheck  struct{ Test []string }
			}
		}
	}
	if err := json.Unmarshal([]byte(buildah("inspect", "--type", "image", tag)), &inspect); err != nil {
		t.Fatal(err)
	}
	cfg := inspect.Docker.Config
	if cfg.User != imageUser {
		t.Errorf("image user %q, want %q (numeric, for runAsNonRoot)", cfg.User, imageUser)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/cbkgate"}) {
		t.Errorf("entry point %q, want [/cbkgate]", cfg.Entrypoint)
	}
	if !slices.Equal(cfg.Healthcheck.Test, []string{"CMD", "/cbkgate", "healthcheck"}) {
		t.Errorf("health check %q, want [CMD /cbkgate healthcheck]", cfg.Healthcheck.Test)
	}
	for _, p := range []string{"9090/tcp", "8080/tcp", "9091/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("image does not expose %s", p)
		}
	}
	for _, kv := range []string{"CBKGATE_GRPC_ADDR=:9090", "CBKGATE_HTTP_ADDR=:8080", "CBKGATE_ADMIN_ADDR=:9091"} {
		if !slices.Contains(cfg.Env, kv) {
			t.Errorf("image environment %q lacks %s", cfg.Env, kv)
		}
	}

	container := buildah("from", "-q", tag)
	t.Cleanup(func() { buildah("rm", container) })
	rootfs := buildah("mount", container)
	t.Cleanup(func() { buildah("umount", container) })

	// Nothing but what the Containerfile copies: no shell, no tools.
	var files []string
	filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(rootfs, p)
			files = append(files, "/"+rel)
		}
		return err
	})
	slices.Sort(files)
	if want := []string{"/cbkgate", "/etc/group", "/etc/passwd", caBundle}; !slices.Equal(files, want) {
		t.Errorf("image files %q, want exactly %q", files, want)
	}

	// The image's environment, with the listen addresses moved to free
	// loopback ports (as a pod spec may override them): other tests and
	// servers on this machine may hold 9090 and 8080.
	grpcAddr, httpAddr, adminAddr := hostPort(testport.Free(t)), hostPort(testport.Free(t)), hostPort(testport.Free(t))
	env := overrideEnv(cfg.Env,
		"CBKGATE_GRPC_ADDR="+grpcAddr, "CBKGATE_HTTP_ADDR="+httpAddr, "CBKGATE_ADMIN_ADDR="+adminAddr)
	// inImage runs argv as a container runtime would: a private mount
	// namespace in which the image's root is a read-only bind mount, then
	// chroot into it as the image's user.
	inImage := func(argv ...string) *exec.Cmd {
		script := fmt.Sprintf(`%[1]s --bind "$1" "$1" && %[1]s -o remount,bind,ro "$1" && shift && exec %[2]s --userspec=%[3]s --groups= "$@"`,
			tools["mount"], tools["chroot"], cfg.User)
		cmd := exec.Command(tools["unshare"], append([]string{"--mount", "--fork", "/bin/sh", "-c", script, "sh", rootfs, rootfs}, argv...)...)
		cmd.Env = env
		return cmd
	}

	server := startProcess(t, "cbkgate (image)", inImage(append(cfg.Entrypoint,
		"--emulator", "--emulator-addr="+hostPort(testport.Free(t)), "--log-format=json")...))
	waitHTTP(t, server, "http://"+httpAddr+"/readyz", http.StatusOK, 20*time.Second)

	pid := childOf(t, server.cmd.Process.Pid)
	checkRunsAs(t, pid, 65532)
	checkRootReadOnly(t, pid)

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v, want 200", path, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	// The version stamped at build time, as --version and as a metric.
	if out, err := inImage(append(cfg.Entrypoint, "--version")...).CombinedOutput(); err != nil || !strings.Contains(string(out), "cbkgate "+stampedVersion+" ("+stampedRevision+")") {
		t.Errorf("--version in the image: %v, %q; want cbkgate %s (%s)", err, out, stampedVersion, stampedRevision)
	}
	if resp, err := http.Get("http://" + adminAddr + "/metrics"); err != nil {
		t.Errorf("GET /metrics: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `version="` + stampedVersion + `"`; !strings.Contains(string(b), "cbkgate_build_info{") || !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks cbkgate_build_info with %s", want)
		}
	}
	// Docker's HEALTHCHECK, in the image, as the image's user.
	hc := inImage(cfg.Healthcheck.Test[1:]...)
	if out, err := hc.CombinedOutput(); err != nil || !strings.Contains(string(out), "200") {
		t.Errorf("healthcheck in the image: %v, %q; want exit 0 and 200", err, out)
	}

	// Real calls: gRPC health, a Create, a List of what it created, and a
	// Create over HTTP.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: tokenv1.TokenService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health of TokenService: %v %v, want SERVING", h.GetStatus(), err)
	}
	client := tokenv1.NewTokenServiceClient(cc)
	created, err := client.Create(ctx, &tokenv1.CreateRequest{UserId: "image-user", Name: "from-the-image"})
	if err != nil || created.GetId() == "" || created.GetToken() == "" {
		t.Fatalf("Create in the image: %v, %v", created, err)
	}
	resp, err := http.Post("http://"+httpAddr+"/v1/users/image-user/tokens", "application/json", strings.NewReader(`{"name":"over-http"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP Create in the image: %v %v", resp, err)
	}
	resp.Body.Close()
	stream, err := client.List(ctx, &tokenv1.ListRequest{UserId: "image-user", Order: tokenv1.Order_ORDER_ASC})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("List in the image: %v", err)
		}
		names = append(names, m.GetToken().GetName())
	}
	if !slices.Equal(names, []string{"from-the-image", "over-http"}) {
		t.Errorf("List in the image: %q, want both tokens created", names)
	}

	// SIGTERM, as the kubelet sends it, to the server itself.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-server.done:
		if code := server.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30 s of SIGTERM")
	}
	t.Logf("image %s: user %s, files %q, read-only root; health, healthcheck, 2 creates and a list served; SIGTERM exit 0", tag, cfg.User, files)
}

// overrideEnv returns env with each KEY=value of set replacing or adding
// that key.
func overrideEnv(env []string, set ...string) []string {
	out := slices.Clone(env)
	for _, kv := range set {
		key := kv[:strings.IndexByte(kv, '=')+1]
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, key) })
		out = append(out, kv)
	}
	return out
}

// childOf returns the one child of pid: the process unshare --fork started,
// which by then has exec'd into the server.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("unshare (pid %d) has children %q, want one", pid, f)
	}
	child, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); !strings.HasSuffix(exe, "/cbkgate") {
		t.Fatalf("child %d runs %q, want the image's /cbkgate", child, exe)
	}
	return child
}

// checkRunsAs: every user and group id of the process (real, effective,
// saved, file system) is uid, and it has no supplementary groups.
func checkRunsAs(t *testing.T, pid, uid int) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := strings.Repeat(strconv.Itoa(uid)+" ", 4)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		val = strings.Join(strings.Fields(val), " ")
		switch key {
		case "Uid", "Gid":
			if val+" " != want {
				t.Errorf("server %s %q, want %q", key, val, strings.TrimSpace(want))
			}
		case "Groups":
			if val != "" {
				t.Errorf("server supplementary groups %q, want none", val)
			}
		}
	}
}

// checkRootReadOnly: the server's root directory is a read-only mount.
func checkRootReadOnly(t *testing.T, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// mountinfo: id parent major:minor root mount-point options ...
		if len(f) > 5 && f[4] == "/" {
			if !slices.Contains(strings.Split(f[5], ","), "ro") {
				t.Errorf("server's root is mounted %q, want ro", f[5])
			}
			return
		}
	}
	t.Errorf("no mount at the server's root in its mountinfo:\n%s", b)
}
