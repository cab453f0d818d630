package check

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// redisComponent is the Redis component's directory.
var redisComponent = filepath.Join(baseDir, "components", "redis")

// stateExample is the Secret the Redis component documents.
func stateExample(t *testing.T) *corev1.Secret {
	t.Helper()
	objs := decodeAll(t, mustRead(t, filepath.Join(redisComponent, "secret.example.yaml")))
	if len(objs) != 1 {
		t.Fatalf("the Redis component's secret.example.yaml holds %d objects, want 1", len(objs))
	}
	s, ok := objs[0].(*corev1.Secret)
	if !ok {
		t.Fatalf("the Redis component's secret.example.yaml holds a %T, want a Secret", objs[0])
	}
	return s
}

// TestRedisComponent: with the component, one Redis runs (a StatefulSet
// of one, append-only, no eviction, restricted Pod Security, a password
// from the documented Secret), the Service reaches it, and cbkgate's
// --state names that Service with that password while the manifest holds
// no password. Without it, the base runs no Redis and says nothing of
// --state (memory: per replica).
func TestRedisComponent(t *testing.T) {
	if base := load(t); base.redis != nil || base.redisService != nil {
		t.Fatal("the base runs Redis; it belongs in the component")
	}
	m := loadDir(t, componentOverlay(t, "redis"))
	if m.redis == nil || m.redisService == nil {
		t.Fatalf("the component renders StatefulSet %v, Service %v", m.redis != nil, m.redisService != nil)
	}
	if r := m.redis.Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("Redis replicas %v, want 1", r)
	}
	tmpl := m.redis.Spec.Template
	if len(tmpl.Spec.Containers) != 1 {
		t.Fatalf("Redis pod containers: %d", len(tmpl.Spec.Containers))
	}
	rc := tmpl.Spec.Containers[0]
	args := strings.Join(rc.Args, " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction", "--requirepass $(REDIS_PASSWORD)"} {
		if !strings.Contains(args, want) {
			t.Errorf("Redis args %q lack %q", args, want)
		}
	}
	if len(m.redis.Spec.VolumeClaimTemplates) != 1 {
		t.Error("Redis keeps its data on no volume")
	}
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	agg := policy.AggregateCheckResults(eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec))
	if !agg.Allowed {
		t.Errorf("Pod Security restricted refuses the Redis pod: %s: %s", agg.ForbiddenReason(), agg.ForbiddenDetail())
	}
	for k, v := range m.redisService.Spec.Selector {
		if tmpl.Labels[k] != v {
			t.Errorf("the Redis Service selects %s=%s, the pod has %q", k, v, tmpl.Labels[k])
		}
	}
	secret := stateExample(t)
	passwordFrom := func(c *corev1.Container) bool {
		for _, e := range c.Env {
			if e.Name == "REDIS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name == secret.Name && e.ValueFrom.SecretKeyRef.Key == "redis-password" {
				return true
			}
		}
		return false
	}
	if !passwordFrom(&rc) {
		t.Error("Redis takes its password from elsewhere than the documented Secret")
	}
	c := container(t, m.deployment)
	if !passwordFrom(c) {
		t.Error("cbkgate takes the Redis password from elsewhere than the documented Secret")
	}
	state, _ := envValue(c, "CBKGATE_STATE")
	want := "redis://:$(REDIS_PASSWORD)@" + m.redisService.Name + ":6379/0"
	if state != want {
		t.Errorf("CBKGATE_STATE=%q, want %q", state, want)
	}
	// $(REDIS_PASSWORD) is expanded only from variables defined before it.
	names := make([]string, len(c.Env))
	for i, e := range c.Env {
		names[i] = e.Name
	}
	if slices.Index(names, "REDIS_PASSWORD") > slices.Index(names, "CBKGATE_STATE") {
		t.Error("CBKGATE_STATE comes before REDIS_PASSWORD: Kubernetes would not expand it")
	}
	if _, ok := envValue(load(t).deployment.Spec.Template.Spec.Containers[0].DeepCopy(), "CBKGATE_STATE"); ok {
		t.Error("the base sets CBKGATE_STATE")
	}
	readme := string(mustRead(t, filepath.Join(baseDir, "README.md")))
	if !strings.Contains(readme, "without it, request ids and `--caller-rate` hold per replica") {
		t.Error("the base's README does not say that without the Redis component request ids and --caller-rate hold per replica")
	}
}
