package check

import (
	"cmp"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// The service the readiness probe asks gRPC health about, the routes the
// HTTP probes use, and the margin the grace period keeps for the process
// to exit after the shutdown timeout.
const (
	tokenService    = "cbkgate.token.v1.TokenService"
	livenessPath    = "/healthz"
	readinessPath   = "/readyz"
	exitMargin      = 5 * time.Second
	shutdownDefault = 20 * time.Second // --shutdown-timeout's default
)

// forEachVariant runs check on the base and on the base with the TLS
// component, each as a subtest.
func forEachVariant(t *testing.T, check func(t *testing.T, variant string, m *manifests)) {
	for name, dir := range variants(t) {
		t.Run(name, func(t *testing.T) { check(t, name, loadDir(t, dir)) })
	}
}

// container returns the cbkgate container of the Deployment.
func container(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "cbkgate" {
		t.Fatalf("Deployment containers %v, want exactly one named cbkgate", cs)
	}
	return &cs[0]
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func containerPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container has no port named %q", name)
	return 0
}

// listenPort is the port of the address an environment variable gives
// cbkgate, or of the image's default when the variable is not set.
func listenPort(t *testing.T, c *corev1.Container, env, imageDefault string) int32 {
	t.Helper()
	addr, ok := envValue(c, env)
	if !ok {
		addr = imageDefault
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s=%q: port: %v", env, addr, err)
	}
	return int32(n)
}

// TestPodSecurityRestricted: the pod template passes the "restricted" Pod
// Security Standard at the latest version, with the admission controller's
// own checks.
func TestPodSecurityRestricted(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := m.deployment.Spec.Template
		results := eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec)
		if len(results) == 0 {
			t.Fatal("the evaluator ran no checks")
		}
		agg := policy.AggregateCheckResults(results)
		if !agg.Allowed {
			t.Errorf("Pod Security restricted refuses the pod: %s: %s", agg.ForbiddenReason(), agg.ForbiddenDetail())
		}
		t.Logf("Pod Security restricted (%s): %d checks passed", psaapi.LatestVersion(), len(results))

		// Beyond restricted: nothing in the image is written to.
		c := container(t, m.deployment)
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("container root file system is not read-only")
		}
	})
}

// TestPodSecurityCheckRefusesRoot: the evaluator used above does refuse a
// pod that runs as root, so its verdict means something.
func TestPodSecurityCheckRefusesRoot(t *testing.T) {
	m := load(t)
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := m.deployment.Spec.Template.DeepCopy()
	root, no := int64(0), false
	tmpl.Spec.SecurityContext.RunAsUser = &root
	tmpl.Spec.SecurityContext.RunAsNonRoot = &no
	agg := policy.AggregateCheckResults(eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec))
	if agg.Allowed {
		t.Error("a root pod passed the restricted check")
	}
}

// TestRunsAsTheImageUser: the pod's user is the Dockerfile's numeric USER.
func TestRunsAsTheImageUser(t *testing.T) {
	m := load(t)
	b, err := os.ReadFile(filepath.Join(baseDir, "..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\d+):(\d+)\s*$`).FindAllStringSubmatch(string(b), -1)
	if len(users) == 0 {
		t.Fatal("Dockerfile has no numeric USER uid:gid")
	}
	last := users[len(users)-1]
	sc := m.deployment.Spec.Template.Spec.SecurityContext
	if sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != last[1] ||
		sc.RunAsGroup == nil || strconv.FormatInt(*sc.RunAsGroup, 10) != last[2] {
		t.Errorf("pod runs as %v:%v, the image as %s:%s", sc.RunAsUser, sc.RunAsGroup, last[1], last[2])
	}
}

// TestGracePeriodCoversTheDrain: the kubelet's SIGKILL comes after the
// preStop sleep, the whole shutdown timeout, and a margin to exit.
func TestGracePeriodCoversTheDrain(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		spec := m.deployment.Spec.Template.Spec
		c := container(t, m.deployment)
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			t.Fatal("no preStop sleep: SIGTERM would come while endpoints still route new calls here")
		}
		if c.Lifecycle.PreStop.Exec != nil {
			t.Error("preStop exec needs a shell or sleep binary, which the image does not have")
		}
		preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if preStop < 5*time.Second {
			t.Errorf("preStop sleep %v: too short for endpoints to converge", preStop)
		}
		shutdown := shutdownDefault
		if v, ok := envValue(c, "CBKGATE_SHUTDOWN_TIMEOUT"); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("CBKGATE_SHUTDOWN_TIMEOUT=%q: %v", v, err)
			}
			shutdown = d
		}
		if spec.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds unset: the default 30 s is shorter than the drain")
		}
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if need := preStop + shutdown + exitMargin; grace < need {
			t.Errorf("terminationGracePeriodSeconds %v < preStop %v + shutdown timeout %v + %v", grace, preStop, shutdown, exitMargin)
		}
		t.Logf("grace %v >= preStop %v + --shutdown-timeout %v + %v", grace, preStop, shutdown, exitMargin)
	})
}

// TestProbesMatchTheServer: readiness is the native gRPC probe on the gRPC
// listener asking for TokenService; liveness is GET /healthz on the HTTP
// listener; both ports are the ones cbkgate is told to listen on.
func TestProbesMatchTheServer(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		c := container(t, m.deployment)
		grpcPort := listenPort(t, c, "CBKGATE_GRPC_ADDR", ":9090")
		httpPort := listenPort(t, c, "CBKGATE_HTTP_ADDR", ":8080")
		adminPort := listenPort(t, c, "CBKGATE_ADMIN_ADDR", ":9091")
		for name, want := range map[string]int32{"grpc": grpcPort, "http": httpPort, "metrics": adminPort} {
			if got := containerPort(t, c, name); got != want {
				t.Errorf("container port %s = %d, but cbkgate listens on %d", name, got, want)
			}
		}

		// Plaintext: the native gRPC probe. TLS: the kubelet's gRPC probe
		// cannot speak it, so /readyz over HTTPS.
		wantScheme := corev1.URISchemeHTTP
		r := c.ReadinessProbe
		if variant == "tls" {
			wantScheme = corev1.URISchemeHTTPS
			if r == nil || r.HTTPGet == nil || r.GRPC != nil {
				t.Fatal("with TLS, readiness is not an HTTPS probe alone")
			}
			if r.HTTPGet.Path != readinessPath || r.HTTPGet.Scheme != wantScheme || resolvePort(t, c, r.HTTPGet.Port) != httpPort {
				t.Errorf("with TLS, readiness is %s %s on port %s, want HTTPS %s on %d", r.HTTPGet.Scheme, r.HTTPGet.Path, r.HTTPGet.Port.String(), readinessPath, httpPort)
			}
		} else {
			if r == nil || r.GRPC == nil || r.HTTPGet != nil {
				t.Fatal("readiness is not a native gRPC probe alone")
			}
			if r.GRPC.Port != grpcPort {
				t.Errorf("readiness probes gRPC port %d, cbkgate listens on %d", r.GRPC.Port, grpcPort)
			}
			if r.GRPC.Service == nil || *r.GRPC.Service != tokenService {
				t.Errorf("readiness asks about service %v, want %s", r.GRPC.Service, tokenService)
			}
		}

		l := c.LivenessProbe
		if l == nil || l.HTTPGet == nil {
			t.Fatal("liveness is not an HTTP probe")
		}
		if l.HTTPGet.Path != livenessPath {
			t.Errorf("liveness path %q, want %s (not /readyz: a draining pod must not be restarted)", l.HTTPGet.Path, livenessPath)
		}
		if got := resolvePort(t, c, l.HTTPGet.Port); got != httpPort {
			t.Errorf("liveness probes port %d, cbkgate's HTTP listens on %d", got, httpPort)
		}
		if scheme := cmp.Or(l.HTTPGet.Scheme, corev1.URISchemeHTTP); scheme != wantScheme {
			t.Errorf("liveness scheme %s, want %s", scheme, wantScheme)
		}
		_, tlsSet := envValue(c, "CBKGATE_TLS_CERT")
		if tlsSet != (variant == "tls") {
			t.Errorf("CBKGATE_TLS_CERT set: %v, in variant %s", tlsSet, variant)
		}
	})
}

func resolvePort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.String {
		return containerPort(t, c, p.StrVal)
	}
	return p.IntVal
}

// TestServiceMatchesThePods: the Service selects the pods, each of its
// ports targets a container port by name, and gRPC is marked as HTTP/2.
func TestServiceMatchesThePods(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		c := container(t, m.deployment)
		podLabels := labels.Set(m.deployment.Spec.Template.Labels)
		if len(m.service.Spec.Selector) == 0 || !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service selector %v does not select the pods %v", m.service.Spec.Selector, podLabels)
		}
		want := map[string]bool{"grpc": false, "http": false, "metrics": false}
		for _, p := range m.service.Spec.Ports {
			if p.TargetPort.Type != intstr.String || p.TargetPort.StrVal != p.Name {
				t.Errorf("Service port %s targets %v, want the container port named %s", p.Name, p.TargetPort.String(), p.Name)
			}
			containerPort(t, c, p.Name)
			if _, ok := want[p.Name]; ok {
				want[p.Name] = true
			}
			// What a proxy must speak to the pod: HTTP/2 in cleartext, or
			// TLS once the listeners have it (the admin port never does).
			wantProto := map[string]string{"grpc": "kubernetes.io/h2c", "http": "http", "metrics": "http"}[p.Name]
			if variant == "tls" && p.Name != "metrics" {
				wantProto = "https"
			}
			if p.AppProtocol == nil || *p.AppProtocol != wantProto {
				t.Errorf("Service port %s appProtocol %v, want %s", p.Name, p.AppProtocol, wantProto)
			}
		}
		for name, ok := range want {
			if !ok {
				t.Errorf("Service has no %s port", name)
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(m.deployment.Spec.Selector)
		if err != nil || !sel.Matches(podLabels) {
			t.Errorf("Deployment selector %v does not select its own pods: %v", m.deployment.Spec.Selector, err)
		}
	})
}

// TestDisruptionAndScaling: the PDB selects the pods and lets one go at a
// time; at least two replicas; the HPA scales this Deployment on CPU, from
// two; CPU is requested (the HPA's base) and not limited; memory is
// limited and GOMEMLIMIT follows the limit.
func TestDisruptionAndScaling(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		podLabels := labels.Set(m.deployment.Spec.Template.Labels)
		sel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("PDB selector %v does not select the pods %v (%v)", m.pdb.Spec.Selector, podLabels, err)
		}
		if mu := m.pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() < 1 {
			t.Errorf("PDB maxUnavailable %v: want at least 1, or node drains block forever", mu)
		}
		if r := m.deployment.Spec.Replicas; r == nil || *r < 2 {
			t.Errorf("Deployment replicas %v, want at least 2", r)
		}
		if ru := m.deployment.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("rolling update maxUnavailable %v, want 0 (capacity kept during a rollout)", ru)
		}

		h := m.hpa.Spec
		if h.ScaleTargetRef.Kind != "Deployment" || h.ScaleTargetRef.Name != m.deployment.Name || h.ScaleTargetRef.APIVersion != "apps/v1" {
			t.Errorf("HPA targets %+v, want Deployment %s", h.ScaleTargetRef, m.deployment.Name)
		}
		if h.MinReplicas == nil || *h.MinReplicas < 2 || h.MaxReplicas <= *h.MinReplicas {
			t.Errorf("HPA replicas %v..%d, want from at least 2 upwards", h.MinReplicas, h.MaxReplicas)
		}
		if len(h.Metrics) != 1 || h.Metrics[0].Resource == nil || h.Metrics[0].Resource.Name != corev1.ResourceCPU ||
			h.Metrics[0].Resource.Target.AverageUtilization == nil {
			t.Errorf("HPA metrics %+v, want CPU utilization", h.Metrics)
		}

		c := container(t, m.deployment)
		if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
			t.Error("no CPU request: the HPA's utilization has no base")
		}
		if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			t.Error("CPU limit set: CFS throttling stalls calls; see the comment in deployment.yaml")
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Error("no memory limit")
		}
		var gomemlimit *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "GOMEMLIMIT" {
				gomemlimit = &c.Env[i]
			}
		}
		if gomemlimit == nil || gomemlimit.ValueFrom == nil || gomemlimit.ValueFrom.ResourceFieldRef == nil {
			t.Fatal("GOMEMLIMIT does not come from the container's resources")
		}
		ref := gomemlimit.ValueFrom.ResourceFieldRef
		if ref.Resource != "limits.memory" || (ref.ContainerName != "" && ref.ContainerName != c.Name) {
			t.Errorf("GOMEMLIMIT from %+v, want limits.memory of %s", ref, c.Name)
		}
		// GOMEMLIMIT is read as bytes: a divisor would make it 256 for 256Mi.
		if !ref.Divisor.IsZero() && ref.Divisor.Value() != 1 {
			t.Errorf("GOMEMLIMIT divisor %s, want none (bytes)", ref.Divisor.String())
		}
	})
}

// TestServiceAccountAndSecret: no API token is mounted; the Secret is
// mounted as a directory (subPath mounts never see a rotation), read-only,
// and every file the settings name is in it, under a key the documented
// Secret has.
func TestServiceAccountAndSecret(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		spec := m.deployment.Spec.Template.Spec
		if a := m.serviceAccount.AutomountServiceAccountToken; a == nil || *a {
			t.Error("ServiceAccount mounts an API token")
		}
		if spec.ServiceAccountName != m.serviceAccount.Name {
			t.Errorf("pods use service account %q, the base defines %q", spec.ServiceAccountName, m.serviceAccount.Name)
		}
		if a := spec.AutomountServiceAccountToken; a == nil || *a {
			t.Error("pod template does not turn off the API token mount")
		}

		c := container(t, m.deployment)
		example := decodeAll(t, mustRead(t, filepath.Join(baseDir, "secret.example.yaml")))[0].(*corev1.Secret)
		// Each Secret the pods may mount: the settings that name files in
		// it, and the keys it has.
		type expected struct {
			env  []string
			keys []string
		}
		var exampleKeys []string
		for k := range example.StringData {
			exampleKeys = append(exampleKeys, k)
		}
		secrets := map[string]expected{
			example.Name: {env: []string{"CHATBOTKIT_API_SECRET_FILE", "CBKGATE_API_KEYS_FILE", "CBKGATE_GRANTS_FILE"}, keys: exampleKeys},
			// kubectl create secret tls: a kubernetes.io/tls Secret.
			"cbkgate-tls": {env: []string{"CBKGATE_TLS_CERT", "CBKGATE_TLS_KEY"}, keys: []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}},
			// The Redis component's, as its secret.example.yaml documents.
			stateExample(t).Name: {env: []string{"CBKGATE_STATE_KEY_FILE"}, keys: []string{"state-key"}},
		}
		mounted := map[string]bool{}
		mounts := map[string]corev1.VolumeMount{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.Name] = vm
		}
		for _, v := range spec.Volumes {
			if v.Secret == nil {
				continue
			}
			want, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Errorf("volume %s mounts Secret %q, which is not documented", v.Name, v.Secret.SecretName)
				continue
			}
			mounted[v.Secret.SecretName] = true
			vm, ok := mounts[v.Name]
			if !ok {
				t.Errorf("secret volume %s is not mounted", v.Name)
				continue
			}
			if vm.SubPath != "" || vm.SubPathExpr != "" {
				t.Errorf("secret volume %s mounted with subPath: rotation would never reach the pod", v.Name)
			}
			if !vm.ReadOnly {
				t.Errorf("secret volume %s mounted writable", v.Name)
			}
			for _, env := range want.env {
				path, ok := envValue(c, env)
				if !ok {
					t.Errorf("%s not set", env)
					continue
				}
				dir, key := filepath.Split(path)
				if filepath.Clean(dir) != filepath.Clean(vm.MountPath) {
					t.Errorf("%s=%s is outside the Secret's mount %s", env, path, vm.MountPath)
				}
				if !slices.Contains(want.keys, key) {
					t.Errorf("%s names key %q, which Secret %s does not have", env, key, v.Secret.SecretName)
				}
			}
		}
		if !mounted[example.Name] || mounted["cbkgate-tls"] != (variant == "tls") || mounted["cbkgate-state"] != (variant == "redis") {
			t.Errorf("Secrets mounted %v in variant %s", mounted, variant)
		}
		if _, ok := envValue(c, "CHATBOTKIT_API_SECRET"); ok {
			t.Error("CHATBOTKIT_API_SECRET in the manifest: the secret belongs in the Secret's file")
		}
	})
}

// TestSettingsKnownToTheServer: every flag and cbkgate variable the
// manifest sets is one the binary documents in --help, so a typo cannot be
// silently ignored.
func TestSettingsKnownToTheServer(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		c := container(t, m.deployment)
		help := serverHelp(t)
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "CBKGATE_") || strings.HasPrefix(e.Name, "CHATBOTKIT_") {
				if !regexp.MustCompile(`\b` + regexp.QuoteMeta(e.Name) + `\b`).MatchString(help) {
					t.Errorf("cbkgate --help does not know %s", e.Name)
				}
			}
		}
		for _, arg := range append(slices.Clone(c.Command), c.Args...) {
			if name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "="); strings.HasPrefix(arg, "-") && !strings.Contains(help, "--"+name) {
				t.Errorf("cbkgate --help does not know %s", arg)
			}
		}
	})
}

var (
	helpOnce sync.Once
	helpText string
	helpErr  error
)

// serverHelp is `cbkgate --help`, built from the repository's source.
func serverHelp(t *testing.T) string {
	t.Helper()
	helpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "run", "./cmd/server", "--help")
		cmd.Dir = filepath.Join(baseDir, "..", "..")
		out, err := cmd.Output()
		helpText, helpErr = string(out), err
	})
	if helpErr != nil {
		t.Fatalf("go run ./cmd/server --help: %v", helpErr)
	}
	return helpText
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConnectionsRebalance: gRPC connections have a maximum age, or every
// client of kube-proxy's L4 balancing stays on its first pod for good and
// new replicas from the autoscaler get none of its calls.
func TestConnectionsRebalance(t *testing.T) {
	forEachVariant(t, func(t *testing.T, variant string, m *manifests) {
		c := container(t, m.deployment)
		age := 5 * time.Minute // --max-connection-age's default
		if v, ok := envValue(c, "CBKGATE_MAX_CONNECTION_AGE"); ok {
			if v == "0" {
				age = 0
			} else {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatalf("CBKGATE_MAX_CONNECTION_AGE=%q: %v", v, err)
				}
				age = d
			}
		}
		if age <= 0 {
			t.Error("CBKGATE_MAX_CONNECTION_AGE is unlimited: clients behind kube-proxy never rebalance")
		}
	})
}
