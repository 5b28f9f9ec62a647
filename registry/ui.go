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

	"modelx.io/modelx/content"
	"modelx.io/modelx/registry/ui"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// webUI returns middleware that serves the web UI, everything under
// ui.Prefix, and passes every other request on to the API. No path of
// the API is under ui.Prefix ("-" is not a repository name), so the UI
// never takes a request from the API, whatever it accepts.
func (reg *Registry) webUI() func(http.Handler) http.Handler {
	pages := ui.New(ui.Options{
		Source:        uiSource{reg},
		Authenticator: reg.opts.Authenticator,
		Policy:        reg.opts.Policy,
		Logger:        reg.log,
	})
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isUIPath(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			if rc := chi.RouteContext(r.Context()); rc != nil {
				rc.RoutePatterns = append(rc.RoutePatterns, uiRoutePattern) // one label for metrics and traces
			}
			pages.ServeHTTP(w, r)
		})
	}
}

// isUIPath says whether a path is the web UI's.
func isUIPath(path string) bool {
	return path == strings.TrimSuffix(ui.Prefix, "/") || strings.HasPrefix(path, ui.Prefix)
}

// legacyUIPrefix is where the web UI was served before ui.Prefix: the
// pages of a browser's bookmarks and history.
const legacyUIPrefix = "/ui/"

// legacyUIRedirect answers a request that no API route takes and whose
// path was the web UI's (legacyUIPrefix) with a redirect to the same page
// under ui.Prefix. A request that an API route takes (a repository called
// "ui") never gets here.
func (reg *Registry) legacyUIRedirect(w http.ResponseWriter, r *http.Request) bool {
	if reg.opts.DisableUI {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, legacyUIPrefix)
	if !ok {
		if r.URL.Path != strings.TrimSuffix(legacyUIPrefix, "/") {
			return false
		}
		rest = ""
	}
	target := ui.Prefix + rest
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusPermanentRedirect) // 308 keeps the method of a login form
	return true
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

// root answers GET /: browsers (which rank HTML above JSON) are sent to
// the web UI, with their search; everyone else gets the global index.
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
	if err := content.VerifyBytes(data, int64(len(data)), d); err != nil {
		return nil, fmt.Errorf("manifest %s of %s/%s: %w", d, repo, name, err)
	}
	if spec.IsOCIManifestType(manifestMediaType(data)) {
		// An OCI artifact shows as its modelx view: its files.
		if _, data, err = s.reg.modelxView(ctx, repo, name, d, data); err != nil {
			return nil, err
		}
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
		// A file of a view (an OCI artifact's tar layer, say) is made
		// on its first read, as for a pull.
		if _, made, err := s.reg.materialize(ctx, repo, name, d); err != nil {
			return nil, err
		} else if !made {
			return nil, fmt.Errorf("blob %s of %s/%s: %w", d, repo, name, storage.ErrNotFound)
		}
	}
	rc, _, err := s.reg.store.Reader(ctx, blobKey(d), offset, length)
	return rc, err
}
