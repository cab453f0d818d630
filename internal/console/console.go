// Package console serves the token console, a web page for a partner's
// operators at /console/ on the HTTP port: list a user's tokens as they
// stream in, search them, create one (its secret shown once), edit, revoke.
//
// The page is built from web/console by scripts/build-console.sh into
// assets/, committed and embedded here. It calls TokenService over Connect
// from the page itself, with the operator's API key as its Bearer, so the
// calls go through the same authentication, grants, limits, logs and
// metrics as any client's; the page and its files are public and need no
// key.
//
// Every answer carries a Content-Security-Policy that allows nothing but
// the page's own origin (no inline script or style, no framing, no form
// submission), nosniff, and no Referer; it is revalidated on each load
// (no-cache with an ETag), so a new binary's page is never mixed with an
// old cached script.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed assets
var assets embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// CSP is the Content-Security-Policy of every answer.
const CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	name, contentType, etag string
	body                    []byte
}

// contentTypes are the types of the files the build writes; a file of
// another kind would not be served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Register adds the console's routes to mux: /console/ and each of its
// files, and /console redirecting to /console/. Each is wrapped by get,
// which lets GET and HEAD through and answers any other method (the HTTP
// port's own 405). Any other path under /console/ is left to mux.
func Register(mux *http.ServeMux, get func(http.HandlerFunc) http.Handler) {
	for _, f := range load() {
		p := Prefix + f.name
		if f.name == "index.html" {
			p = Prefix + "{$}"
		}
		mux.Handle(p, get(f.ServeHTTP))
	}
	mux.Handle("/console", get(http.RedirectHandler(Prefix, http.StatusFound).ServeHTTP))
}

func load() []*file {
	entries, err := fs.ReadDir(assets, "assets")
	if err != nil {
		panic("console: the embedded assets cannot be read: " + err.Error())
	}
	var files []*file
	for _, e := range entries {
		ct, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			continue
		}
		body, err := assets.ReadFile("assets/" + e.Name())
		if err != nil {
			panic("console: the embedded assets cannot be read: " + err.Error())
		}
		sum := sha256.Sum256(body)
		files = append(files, &file{
			name: e.Name(), contentType: ct, body: body,
			etag: `"` + hex.EncodeToString(sum[:16]) + `"`,
		})
	}
	return files
}

func (f *file) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	// ServeContent answers If-None-Match with 304, HEAD and ranges.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
