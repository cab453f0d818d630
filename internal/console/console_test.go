package console

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Register(mux, func(next http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			next(w, r)
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestServesPageAndFiles: the page and each of its files, with the type
// and the headers that keep the page to its own origin; nothing else.
func TestServesPageAndFiles(t *testing.T) {
	srv := serve(t)
	for path, ctype := range map[string]string{
		"/console/":            "text/html; charset=utf-8",
		"/console/console.js":  "text/javascript; charset=utf-8",
		"/console/console.css": "text/css; charset=utf-8",
		"/console/favicon.svg": "image/svg+xml",
	} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d with %d bytes, want 200 with the file", path, resp.StatusCode, len(body))
			continue
		}
		for k, want := range map[string]string{
			"Content-Type":            ctype,
			"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-cache",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, k, got, want)
			}
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", path)
			continue
		}
		if again, body := get(t, srv.URL+path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("GET %s with its ETag: %d with %d bytes, want 304 with none", path, again.StatusCode, len(body))
		}
	}

	resp, _ := get(t, srv.URL+"/console")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d to %q, want 302 to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/console/index.html", "/console/nope.js", "/console/assets/console.js", "/console/u1/tokens"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	post, err := http.Post(srv.URL+"/console/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d, want 405", post.StatusCode)
	}
}

// TestPageLoadsOnlyItsOwnFiles: the page has no inline script, style or
// event handler (the policy would block them) and refers only to its own
// files, by relative paths: its icon too, so the browser does not ask for
// /favicon.ico.
func TestPageLoadsOnlyItsOwnFiles(t *testing.T) {
	page, err := assets.ReadFile("assets/index.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{"console.js": true, "console.css": true, "favicon.svg": true}
	refs := map[string]bool{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "style":
				t.Error("the page has a <style> element")
			case "script":
				if attr(n, "src") == "" || n.FirstChild != nil {
					t.Error("the page has an inline <script>")
				}
			}
			for _, a := range n.Attr {
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s> has a %s attribute", n.Data, a.Key)
				}
				if a.Key == "src" || a.Key == "href" {
					if !files[a.Val] {
						t.Errorf("<%s %s=%q>: not one of the console's own files", n.Data, a.Key, a.Val)
					}
					refs[a.Val] = true
				}
			}
			if n.Data == "link" && attr(n, "rel") == "icon" && attr(n, "href") != "favicon.svg" {
				t.Errorf("the icon is %q, want favicon.svg", attr(n, "href"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for f := range files {
		if !refs[f] {
			t.Errorf("the page does not load %s", f)
		}
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// TestScriptStoresNothingAndWritesNoHTML: the bundle (the console and the
// libraries in it) never parses a string as HTML, and never touches
// cookies, Web Storage or IndexedDB. The browser test checks the same
// from the outside; this catches it without a browser.
func TestScriptStoresNothingAndWritesNoHTML(t *testing.T) {
	js, err := assets.ReadFile("assets/console.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
		"DOMParser", "cookie", "localStorage", "sessionStorage", "indexedDB", "caches.open", "eval(", "new Function"} {
		if bytes.Contains(js, []byte(s)) {
			t.Errorf("console.js contains %q", s)
		}
	}
}

// TestAssetsMatchSources: the files the build copies are the sources as
// they are now (CI rebuilds the script too, with npm; this needs neither).
func TestAssetsMatchSources(t *testing.T) {
	for _, name := range []string{"index.html", "console.css", "favicon.svg"} {
		src, err := os.ReadFile(filepath.Join("..", "..", "web", "console", "src", name))
		if err != nil {
			t.Fatal(err)
		}
		built, err := assets.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src, built) {
			t.Errorf("internal/console/assets/%s differs from web/console/src/%s: run scripts/build-console.sh", name, name)
		}
	}
}
