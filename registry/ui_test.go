package registry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"modelx.io/modelx/storage/fs"
)

func TestPrefersHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                  false,
		"*/*":                               false, // curl
		"application/json":                  false,
		"application/json, text/html":       false, // a tie goes to the API
		"text/html;q=0.5, application/json": false,
		"text/html;q=0":                     false,
		"text/plain":                        false,
		"text/html":                         true,
		"application/xhtml+xml":             true,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8":                       true, // Chrome, Firefox
		"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8": true,
		"TEXT/HTML ; Q=0.9 , application/json;q=0.8":                                            true,
		"application/json;q=0.9, text/html;q=0.95":                                              true,
		"text/html;level=1;q=0.4, */*;q=0.5":                                                    false,
	} {
		if got := prefersHTML(accept); got != want {
			t.Errorf("prefersHTML(%q) = %v, want %v", accept, got, want)
		}
	}
}

// TestUIRouting: the UI answers everything under its prefix; every path
// of the API under /ui/ (a repository called "ui") stays the API whatever
// the request accepts; any other path under /ui/, the UI's old place,
// redirects to the same page under the prefix.
func TestUIRouting(t *testing.T) {
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(st, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := reg.Handler()
	const browser = "text/html,*/*;q=0.8"
	const ui, api = "ui", "api"
	for _, c := range []struct {
		method, path, accept string
		want                 string // ui, api, or the redirect's Location
	}{
		{"GET", "/-/ui/", "", ui},
		{"GET", "/-/ui", "", ui},
		{"GET", "/-/ui/-/style.css", "text/css,*/*;q=0.1", ui},
		{"POST", "/-/ui/login", "", ui},
		{"GET", "/-/ui/nlp/bert", "", ui},
		{"GET", "/-/ui/nlp/bert/v1", "", ui},
		{"GET", "/-/ui/ui/bert", browser, ui},
		{"GET", "/nlp/bert/index", browser, api},
		{"GET", "/uix/bert/index", browser, api},
		// The API of a repository called "ui" is the API, for browsers too.
		{"GET", "/ui/bert/index", "", api},
		{"GET", "/ui/bert/index", browser, api},
		{"DELETE", "/ui/bert/index", "", api},
		{"HEAD", "/ui/bert/manifests/v1", "", api},
		{"GET", "/ui/nlp/manifests/v1", browser, api},
		{"PUT", "/ui/bert/manifests/v1", "", api},
		{"GET", "/ui/bert/blobs/sha256:abc", "*/*", api},
		{"PUT", "/ui/bert/blobs/sha256:abc", browser, api},
		{"POST", "/ui/bert/garbage-collect", browser, api},
		{"POST", "/ui/bert/index", browser, api}, // not allowed, says the API
		{"GET", "/ui/bert/holds", "", api},
		{"PUT", "/ui/bert/holds/ctl", browser, api},
		{"DELETE", "/ui/bert/holds/ctl", "", api},
		// The UI's old pages redirect, keeping method and query.
		{"GET", "/ui", browser, "/-/ui/"},
		{"GET", "/ui/", browser, "/-/ui/"},
		{"GET", "/ui/?q=bert&page=2", browser, "/-/ui/?q=bert&page=2"},
		{"GET", "/ui/nlp/bert", "", "/-/ui/nlp/bert"},
		{"GET", "/ui/nlp/bert/v1", browser, "/-/ui/nlp/bert/v1"},
		{"GET", "/ui/nlp/blobs", "", "/-/ui/nlp/blobs"}, // not an API path: the model nlp/blobs
		{"GET", "/ui/-/style.css", "", "/-/ui/-/style.css"},
		{"POST", "/ui/login", "", "/-/ui/login"},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := api
		switch {
		case w.Code == http.StatusPermanentRedirect:
			got = w.Header().Get("Location")
		case w.Header().Get("Content-Security-Policy") != "" || w.Code == http.StatusMovedPermanently:
			got = ui
		case !strings.HasPrefix(w.Header().Get("Content-Type"), "application/") && c.method != "HEAD":
			got = fmt.Sprintf("%d %s", w.Code, w.Header().Get("Content-Type"))
		}
		if got != c.want {
			t.Errorf("%s %s (Accept %q): %s, want %s", c.method, c.path, c.accept, got, c.want)
		}
	}
}
