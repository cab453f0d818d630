package clustertest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCIImageMatchesDockerfile: CI cannot pull the Dockerfile's base images,
// so the image test builds deploy/image/Containerfile.ci instead. That is
// only evidence for the real image while the two final stages say the same
// thing: the same USER, ENV, EXPOSE, HEALTHCHECK and ENTRYPOINT, in the same
// order (their FROM and COPY lines differ by design).
func TestCIImageMatchesDockerfile(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	real := finalStage(t, filepath.Join(root, "Dockerfile"))
	ci := finalStage(t, filepath.Join(root, "deploy/image/Containerfile.ci"))
	if !slices.Equal(real, ci) {
		t.Errorf("final stages differ:\nDockerfile:        %q\nContainerfile.ci:  %q", real, ci)
	}
	for _, want := range []string{"USER 65532:65532", `ENTRYPOINT ["/cbkgate"]`} {
		if !slices.Contains(real, want) {
			t.Errorf("Dockerfile's final stage lacks %s: %q", want, real)
		}
	}
}

// finalStage returns the instructions after the last FROM, continuation
// lines joined and whitespace collapsed, without COPY, ARG and comments.
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var instrs []string
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		instrs = append(instrs, strings.Join(strings.Fields(cur+trimmed), " "))
		cur = ""
	}
	last := -1
	for i, in := range instrs {
		if strings.HasPrefix(strings.ToUpper(in), "FROM ") {
			last = i
		}
	}
	if last < 0 {
		t.Fatalf("%s has no FROM", path)
	}
	var out []string
	for _, in := range instrs[last+1:] {
		kw := strings.ToUpper(strings.Fields(in)[0])
		if kw != "COPY" && kw != "ARG" {
			out = append(out, in)
		}
	}
	return out
}
