// Package k8ssecret lays out files the way the kubelet mounts a Secret or
// ConfigMap volume, for tests of reloading: each version of the files lives
// in its own timestamped directory, "..data" is a symlink to the current
// one, and every file is a symlink through "..data". An update writes a new
// version directory and swaps "..data" with one rename, so a reader sees
// either every old file or every new one, and the paths it was given never
// change.
package k8ssecret

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir is one mounted volume.
type Dir struct {
	root    string
	version int
	current string // the version directory ..data points at
}

// New lays out files (name to content) in a new temporary directory.
func New(t testing.TB, files map[string]string) *Dir {
	t.Helper()
	d := &Dir{root: t.TempDir()}
	d.Update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d.root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Path is the path a program is given for the file name.
func (d *Dir) Path(name string) string { return filepath.Join(d.root, name) }

// Update puts a new version of the files in place as the kubelet does:
// write the version directory, point a temporary symlink at it, rename
// that over "..data", remove the old version. files must name the same
// files as New did.
func (d *Dir) Update(t testing.TB, files map[string]string) {
	t.Helper()
	d.version++
	next := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", d.version%60, d.version)
	if err := os.Mkdir(filepath.Join(d.root, next), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d.root, next, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.root, "..data_tmp")
	if err := os.Symlink(next, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.root, "..data")); err != nil {
		t.Fatal(err)
	}
	if d.current != "" {
		if err := os.RemoveAll(filepath.Join(d.root, d.current)); err != nil {
			t.Fatal(err)
		}
	}
	d.current = next
}
