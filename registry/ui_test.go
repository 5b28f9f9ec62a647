package registry

import (
	"net/http/httptest"
	"testing"
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

func TestIsUIRequest(t *testing.T) {
	const browser = "text/html,*/*;q=0.8"
	for _, c := range []struct {
		method, path, accept string
		want                 bool
	}{
		{"GET", "/ui", "", true},
		{"GET", "/ui/", "", true},
		{"GET", "/ui/-/style.css", "text/css,*/*;q=0.1", true},
		{"POST", "/ui/login", "", true},
		{"GET", "/ui/nlp/bert", "", true},
		{"GET", "/ui/nlp/bert/v1", "", true},
		{"GET", "/", browser, false},
		{"GET", "/nlp/bert/index", browser, false},
		{"GET", "/uix/bert/index", browser, false},
		// The API of a repository called "ui" stays the API ...
		{"GET", "/ui/bert/index", "", false},
		{"GET", "/ui/bert/index", "application/json", false},
		{"DELETE", "/ui/bert/index", "", false},
		{"HEAD", "/ui/bert/manifests/v1", "", false},
		{"PUT", "/ui/bert/manifests/v1", "", false},
		{"GET", "/ui/bert/blobs/sha256:abc", "*/*", false},
		{"PUT", "/ui/bert/blobs/sha256:abc", browser, false},
		{"POST", "/ui/bert/garbage-collect", browser, false},
		{"GET", "/ui/bert/holds", "", false},
		{"PUT", "/ui/bert/holds/ctl", browser, false},
		{"DELETE", "/ui/bert/holds/ctl", "", false},
		// ... unless a browser asks for the page of the model bert/index.
		{"GET", "/ui/bert/index", browser, true},
		{"GET", "/ui/nlp/manifests/v1", browser, true},
		{"GET", "/ui/nlp/blobs", "", true}, // not an API path: the model nlp/blobs
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		if got := isUIRequest(r); got != c.want {
			t.Errorf("%s %s (Accept %q): UI %v, want %v", c.method, c.path, c.accept, got, c.want)
		}
	}
}
