package check

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// baseDir is the kustomize base, the parent of this module.
const baseDir = ".."

// manifests is the rendered base, decoded.
type manifests struct {
	objects        []runtime.Object
	deployment     *appsv1.Deployment
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	// The Redis component's StatefulSet and Service (nil without it).
	redis        *appsv1.StatefulSet
	redisService *corev1.Service
}

// strictDecoder decodes only the kinds the base may hold, and fails on any
// field those types do not have (a misspelt or misplaced key would
// otherwise be dropped silently, here and by the API server's apply).
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, autoscalingv2.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll splits a multi-document YAML stream and decodes each document
// strictly.
func decodeAll(t *testing.T, rendered []byte) []runtime.Object {
	t.Helper()
	dec := strictDecoder(t)
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendered)))
	var out []runtime.Object
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("strict decode: %v\n%s", err, doc)
		}
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
		out = append(out, obj)
	}
}

// tlsOverlay writes an overlay of the base with the TLS component, as an
// operator's overlay would use them, and returns its directory.
func tlsOverlay(t *testing.T) string { return componentOverlay(t, "tls") }

// componentOverlay writes an overlay of the base with the named
// components, and returns its directory.
func componentOverlay(t *testing.T, components ...string) string {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	// kustomize takes only relative paths to other kustomizations.
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"resources:\n  - " + rel + "\ncomponents:\n"
	for _, c := range components {
		k += "  - " + filepath.Join(rel, "components", c) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// variants are what the checks run on: the base, the base with TLS, and
// the base with shared state in Redis.
func variants(t *testing.T) map[string]string {
	return map[string]string{"base": baseDir, "tls": tlsOverlay(t), "redis": componentOverlay(t, "redis")}
}

// renderWithLibrary renders a kustomization with kustomize's Go library,
// as `kubectl kustomize` does.
func renderWithLibrary(t *testing.T, dir string) []byte {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// load renders and decodes the base, and picks out the objects by kind.
// Each kind must appear exactly once; nothing else may.
func load(t *testing.T) *manifests { return loadDir(t, baseDir) }

// loadDir is load for any kustomization.
func loadDir(t *testing.T, dir string) *manifests {
	t.Helper()
	m := &manifests{objects: decodeAll(t, renderWithLibrary(t, dir))}
	seen := map[string]int{}
	for _, obj := range m.objects {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployment = o
		case *corev1.Service:
			if o.Name == "cbkgate-redis" {
				m.redisService = o
			} else {
				m.service = o
			}
		case *appsv1.StatefulSet:
			m.redis = o
		case *corev1.ServiceAccount:
			m.serviceAccount = o
		case *policyv1.PodDisruptionBudget:
			m.pdb = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpa = o
		default:
			// A Secret in particular: credentials are never committed.
			t.Fatalf("unexpected object in the base: %s", obj.GetObjectKind().GroupVersionKind())
		}
		seen[fmt.Sprintf("%T %s", obj, objectName(t, obj))]++
	}
	for kind, n := range seen {
		if n != 1 {
			t.Errorf("%d objects of %s, want 1", n, kind)
		}
	}
	if m.deployment == nil || m.service == nil || m.serviceAccount == nil || m.pdb == nil || m.hpa == nil {
		t.Fatalf("the base lacks a kind: deployment %v, service %v, service account %v, PDB %v, HPA %v",
			m.deployment != nil, m.service != nil, m.serviceAccount != nil, m.pdb != nil, m.hpa != nil)
	}
	return m
}

// TestRenders: the base, and the base with the TLS component, render with
// kustomize's library, every object decodes strictly, and `kubectl
// kustomize`, the command the README gives, renders the same objects.
func TestRenders(t *testing.T) {
	kubectl, kubectlErr := exec.LookPath("kubectl")
	for name, dir := range variants(t) {
		t.Run(name, func(t *testing.T) {
			m := loadDir(t, dir)
			if kubectlErr != nil {
				// The library rendering above is the same kustomize;
				// kubectl is an operator's tool, not a CI requirement.
				// Said, not hidden.
				t.Log("kubectl not installed: rendered with kustomize's Go library only")
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v", err)
			}
			// The same objects; the order may differ (kubectl sorts by kind).
			viaKubectl, viaLibrary := byKindAndName(t, decodeAll(t, out)), byKindAndName(t, m.objects)
			if !reflect.DeepEqual(viaKubectl, viaLibrary) {
				t.Errorf("kubectl kustomize renders other objects than kustomize's library:\n%s", out)
			}
		})
	}
}

func objectName(t *testing.T, obj runtime.Object) string {
	t.Helper()
	meta, err := apimeta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	return meta.GetName()
}

func byKindAndName(t *testing.T, objs []runtime.Object) map[string]runtime.Object {
	t.Helper()
	out := map[string]runtime.Object{}
	for _, obj := range objs {
		meta, err := apimeta.Accessor(obj)
		if err != nil {
			t.Fatal(err)
		}
		out[obj.GetObjectKind().GroupVersionKind().String()+"/"+meta.GetName()] = obj
	}
	return out
}

// TestSecretExampleDecodes: the documented Secret is a valid Secret too.
func TestSecretExampleDecodes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(baseDir, "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeAll(t, b)
	if len(objs) != 1 {
		t.Fatalf("secret.example.yaml holds %d objects, want 1", len(objs))
	}
	if _, ok := objs[0].(*corev1.Secret); !ok {
		t.Fatalf("secret.example.yaml holds a %T, want a Secret", objs[0])
	}
}

// TestStrictDecodingCatchesMistakes: the decoder used above does fail on a
// misspelt field and on a field in the wrong place, which a lax decoder
// would drop.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	dec := strictDecoder(t)
	for name, doc := range map[string]string{
		"misspelt": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\nautomountServiceAcountToken: false\n",
		"misplaced": "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: x\n" +
			"maxUnavailable: 1\nspec:\n  selector: {}\n",
		"duplicate": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  name: y\n",
	} {
		if _, _, err := dec.Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
