// Package ui is the registry's web UI: server-rendered pages to browse the
// models a viewer may pull — the model list, a model's tags, and one
// version's metadata, files and README. It reads what it shows through a
// small Source, authorizes with the same authenticator and policy as the
// API, and runs no inline script (a strict Content-Security-Policy is set on
// every answer).
package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
)

// Prefix is the path under which the UI is served. "-" is not a valid
// repository name, so no path of the API is ever under it.
const Prefix = "/-/ui/"

// DefaultPageSize is how many models or tags a page lists by default.
const DefaultPageSize = 50

// contentSecurityPolicy allows only the UI's own stylesheet and script, and
// images from the registry or https (READMEs link images); no inline
// script or style, no frames, forms only to the registry.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Source is what the UI reads from the registry's storage. A missing
// object is an error wrapping storage.ErrNotFound.
type Source interface {
	// GlobalIndex returns the index of every model ("REPOSITORY/NAME").
	GlobalIndex(ctx context.Context) (spec.Index, error)
	// ModelIndex returns a model's tags; an empty index when it has none.
	ModelIndex(ctx context.Context, repo, name string) (spec.Index, error)
	// Manifest returns the model's manifest with digest d, verified against it.
	Manifest(ctx context.Context, repo, name string, d digest.Digest) (*spec.Manifest, error)
	// ReadBlob opens length bytes of the model's blob d from offset; a blob
	// the model does not hold is not found.
	ReadBlob(ctx context.Context, repo, name string, d digest.Digest, offset, length int64) (io.ReadCloser, error)
}

// Options configure a UI.
type Options struct {
	// Source is where models are read from; required.
	Source Source
	// Authenticator verifies the tokens pasted into the login page (and
	// bearer headers); nil means nobody can log in.
	Authenticator *auth.Authenticator
	// Policy decides what a viewer may see: what they may pull. Nil shows everything.
	Policy *auth.Policy
	// Logger receives errors; default slog.Default().
	Logger *slog.Logger
	// PageSize is how many models or tags a page lists; default DefaultPageSize.
	PageSize int
	// FilesPerPage is how many files a version page lists; default
	// DefaultFilesPerPage.
	FilesPerPage int
	// CacheBytes bounds the estimated memory of the versions kept
	// prepared; default DefaultCacheBytes.
	CacheBytes int64
}

// UI serves the web pages under Prefix.
type UI struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	versions *versionCache
}

// New returns the UI.
func New(opts Options) *UI {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.FilesPerPage <= 0 {
		opts.FilesPerPage = DefaultFilesPerPage
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	u := &UI{opts: opts, log: opts.Logger, mux: http.NewServeMux(), versions: newVersionCache(opts.CacheBytes)}
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.writeError(w, r, viewer{}, &pageError{status: http.StatusForbidden, msg: "This form was sent from another site, and was refused."})
	}))
	u.mux.HandleFunc("GET "+strings.TrimSuffix(Prefix, "/"), func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusMovedPermanently) })
	u.mux.Handle("GET "+Prefix+"{$}", u.handle(u.listPage))
	u.mux.Handle("GET "+Prefix+"login", u.handle(u.loginPage))
	u.mux.Handle("POST "+Prefix+"login", csrf.Handler(u.handle(u.login)))
	u.mux.Handle("POST "+Prefix+"logout", csrf.Handler(u.handle(u.logout)))
	// "-" is not a repository name, so static files never shadow a model.
	u.mux.HandleFunc("GET "+Prefix+"-/{file}", serveStatic)
	u.mux.Handle("GET "+Prefix+"{repo}/{name}", u.handle(u.modelPage))
	u.mux.Handle("GET "+Prefix+"{repo}/{name}/{ref}", u.handle(u.versionPage))
	u.mux.Handle(Prefix, u.handle(func(w http.ResponseWriter, r *http.Request, v viewer) error {
		return notFound("There is no such page.")
	}))
	return u
}

// ServeHTTP serves a request under Prefix.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	u.mux.ServeHTTP(w, r)
}

// pageFunc renders one page for a viewer, returning its error for handle to write.
type pageFunc func(w http.ResponseWriter, r *http.Request, v viewer) error

// handle adapts a pageFunc: it finds the viewer, runs the page, and writes
// any error as an HTML error page — a pageError with its status, a missing
// object as 404, anything else logged and answered 500 without its text.
func (u *UI) handle(p pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		v, err := u.viewer(r)
		if err == nil {
			if v.stale {
				clearSession(w, r)
			}
			err = p(w, r, v)
		}
		if err != nil {
			u.writeError(w, r, v, err)
		}
	})
}

// pageError is an error page with a status and a message for people.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func notFound(msg string) error { return &pageError{status: http.StatusNotFound, msg: msg} }

func (u *UI) writeError(w http.ResponseWriter, r *http.Request, v viewer, err error) {
	var pe *pageError
	switch {
	case errors.As(err, &pe):
		if pe.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
	case errors.Is(err, storage.ErrNotFound):
		pe = &pageError{status: http.StatusNotFound, msg: "There is no such model or version, or you may not see it."}
	case r.Context().Err() != nil:
		return // the browser went away
	default:
		reqID := middleware.GetReqID(r.Context())
		u.log.ErrorContext(r.Context(), "ui request failed", "method", r.Method, "path", r.URL.Path, "request_id", reqID, "error", err)
		pe = &pageError{status: http.StatusInternalServerError, msg: "Something went wrong; the registry log has details."}
		if reqID != "" {
			pe.msg += " Request ID: " + reqID + "."
		}
	}
	data := errorData{Status: pe.status, StatusText: http.StatusText(pe.status), Message: pe.msg}
	if pe.status == http.StatusNotFound && v.id == nil && u.opts.Authenticator != nil {
		data.SuggestLogin = true
	}
	u.render(w, r, v, pe.status, "error", http.StatusText(pe.status), data)
}

// errorData is what the error page shows.
type errorData struct {
	Status       int
	StatusText   string
	Message      string
	SuggestLogin bool
}

// layoutData is what every page's frame shows around its content.
type layoutData struct {
	Title    string
	Viewer   *auth.Identity
	AuthOn   bool
	CanLogIn bool
	Stale    bool
	Query    string
	Here     string
	Data     any
}

// render executes a page into a buffer and writes it with status, so a
// template failure never sends half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, v viewer, status int, page, title string, data any) {
	ld := layoutData{
		Title: title, Viewer: v.id, AuthOn: u.opts.Policy != nil, CanLogIn: u.opts.Authenticator != nil,
		Stale: v.stale, Query: r.URL.Query().Get("q"), Here: r.URL.RequestURI(), Data: data,
	}
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", ld); err != nil {
		u.log.ErrorContext(r.Context(), "ui template failed", "page", page, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// registryURL is the base URL clients reach this registry at, as the
// browser addressed it.
func registryURL(r *http.Request) string {
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s", scheme, r.Host)
}

func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
