package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry/ui"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// webUI returns middleware that serves the web UI's requests (see
// isUIRequest) and passes every other request on to the API.
func (reg *Registry) webUI() func(http.Handler) http.Handler {
	pages := ui.New(ui.Options{
		Source:        uiSource{reg},
		Authenticator: reg.opts.Authenticator,
		Policy:        reg.opts.Policy,
		Logger:        reg.log,
	})
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isUIRequest(r) {
				if rc := chi.RouteContext(r.Context()); rc != nil {
					rc.RoutePatterns = append(rc.RoutePatterns, "/ui/*") // one label for metrics and traces
				}
				pages.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// isUIRequest says whether a request is for the web UI. Everything under
// /ui/ is, except what is also the API of a repository called "ui"
// (/ui/NAME/index, /ui/NAME/manifests/REF, /ui/NAME/blobs/DIGEST,
// /ui/NAME/holds, /ui/NAME/holds/HOLDER, /ui/NAME/garbage-collect): those
// go to the API unless a browser asks for a page (GET or HEAD preferring
// text/html), which is the UI page of the model NAME/index, NAME/manifests
// and so on.
func isUIRequest(r *http.Request) bool {
	if r.URL.Path == "/ui" {
		return true
	}
	rest, ok := strings.CutPrefix(r.URL.Path, ui.Prefix)
	if !ok {
		return false
	}
	if !apiShaped(rest) {
		return true
	}
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && prefersHTML(r.Header.Get("Accept"))
}

// apiShaped says whether a path below "/REPOSITORY/" is one of the API's.
func apiShaped(rest string) bool {
	parts := strings.Split(rest, "/")
	switch len(parts) {
	case 2:
		return parts[1] == "index" || parts[1] == "holds" || parts[1] == "garbage-collect"
	case 3:
		return parts[1] == "manifests" || parts[1] == "blobs" || parts[1] == "holds"
	}
	return false
}

// prefersHTML says whether an Accept header ranks an HTML page above JSON:
// true for browsers navigating, false for API clients (no Accept,
// application/json, */*). A tie goes to JSON.
func prefersHTML(accept string) bool {
	html, other := 0.0, 0.0
	for part := range strings.SplitSeq(accept, ",") {
		mediaType, params, _ := strings.Cut(part, ";")
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(p, "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(mediaType)) {
		case "text/html", "application/xhtml+xml":
			html = max(html, q)
		case "application/json", "application/*", "*/*":
			other = max(other, q)
		}
	}
	return html > 0 && html > other
}

// root answers GET /: browsers are sent to the web UI (with their search),
// everyone else gets the global index.
func (reg *Registry) root(w http.ResponseWriter, r *http.Request) error {
	w.Header().Add("Vary", "Accept")
	if !reg.opts.DisableUI && prefersHTML(r.Header.Get("Accept")) {
		target := ui.Prefix
		if s := r.URL.Query().Get("search"); s != "" {
			target += "?" + url.Values{"q": {s}}.Encode()
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return nil
	}
	return reg.getGlobalIndex(w, r)
}

// uiSource is the UI's read access to the registry's storage.
type uiSource struct{ reg *Registry }

func (s uiSource) GlobalIndex(ctx context.Context) (spec.Index, error) {
	return s.reg.viewIndex(ctx, globalIndexKey)
}

func (s uiSource) ModelIndex(ctx context.Context, repo, name string) (spec.Index, error) {
	return s.reg.viewIndex(ctx, modelIndexKey(repo, name))
}

func (s uiSource) Manifest(ctx context.Context, repo, name string, d digest.Digest) (*spec.Manifest, error) {
	if err := spec.ValidateDigest(d); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, storage.ErrNotFound)
	}
	data, _, err := storage.ReadAll(ctx, s.reg.store, manifestKey(repo, name, d), s.reg.opts.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	if digest.FromBytes(data) != d {
		return nil, fmt.Errorf("manifest %s of %s/%s does not match its digest", d, repo, name)
	}
	return spec.ParseManifest(data)
}

func (s uiSource) ReadBlob(ctx context.Context, repo, name string, d digest.Digest, offset, length int64) (io.ReadCloser, error) {
	if err := spec.ValidateDigest(d); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, storage.ErrNotFound)
	}
	if _, ok, err := s.reg.readLink(ctx, repo, name, d); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("blob %s of %s/%s: %w", d, repo, name, storage.ErrNotFound)
	}
	rc, _, err := s.reg.store.Reader(ctx, blobKey(d), offset, length)
	return rc, err
}
