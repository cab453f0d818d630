// Package version says which build of cbkgate is running: the version and
// VCS revision, for --version, the User-Agent sent upstream and the
// cbkgate_build_info metric.
//
// Both come from the linker when given (the image build passes them, since
// a build from a source tree without .git, or with -buildvcs=false, records
// no revision):
//
//	go build -ldflags "-X github.com/cbkgate/cbkgate/internal/version.version=v1.2.3 \
//	    -X github.com/cbkgate/cbkgate/internal/version.revision=$(git rev-parse HEAD)" ./cmd/server
//
// Otherwise from what the Go toolchain recorded in the binary: the module
// version ("(devel)" for a build from a work tree) and vcs.revision.
package version

import (
	"runtime/debug"
	"sync"
)

// Set with -ldflags -X; empty means "ask the build info".
var (
	version  string
	revision string
)

// unknown stands for a revision the build did not record.
const unknown = "unknown"

var info = sync.OnceValues(func() (string, string) {
	v, r := version, revision
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		if r == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					r = s.Value
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if r == "" {
		r = unknown
	}
	return v, r
})

// Version is cbkgate's version, e.g. "v1.2.3", or "(devel)".
func Version() string { v, _ := info(); return v }

// Revision is the VCS revision the binary was built from, or "unknown".
func Revision() string { _, r := info(); return r }

// String is the --version line: "cbkgate VERSION (REVISION)".
func String() string { return "cbkgate " + Version() + " (" + Revision() + ")" }
