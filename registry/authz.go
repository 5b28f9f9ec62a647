package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

type identityKey struct{}

// identityOf returns the authenticated identity of a request, or nil.
func identityOf(ctx context.Context) *auth.Identity {
	id, _ := ctx.Value(identityKey{}).(*auth.Identity)
	return id
}

// authenticate reads the bearer token into the request's context. A bad
// token is refused at once; a missing one is left to authorize.
func (reg *Registry) authenticate(next http.Handler) http.Handler {
	if reg.opts.Authenticator == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := reg.opts.Authenticator.Authenticate(r.Context(), r)
		if err != nil {
			if errors.Is(err, auth.ErrInvalidToken) {
				reg.challenge(w, r, `error="invalid_token"`)
				writeError(w, spec.Errorf(spec.ErrorUnauthorized, "the bearer token is not valid (%s); log in again", trimTokenError(err)))
				return
			}
			reg.log.ErrorContext(r.Context(), "authentication failed", "error", err)
			writeError(w, spec.Errorf(spec.ErrorUnavailable, "the identity provider cannot be reached to verify the token; retry later"))
			return
		}
		if id != nil {
			r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		}
		next.ServeHTTP(w, r)
	})
}

func trimTokenError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// challenge sets WWW-Authenticate: where to learn how to log in.
func (reg *Registry) challenge(w http.ResponseWriter, r *http.Request, extra string) {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	v := fmt.Sprintf(`Bearer realm="%s://%s%s"`, scheme, r.Host, spec.ConfigurationPath)
	if extra != "" {
		v += ", " + extra
	}
	w.Header().Set("WWW-Authenticate", v)
}

// authorize refuses a request the policy does not allow with any of
// actions: 401 when it carries no identity, 403 DENIED when it does.
func (reg *Registry) authorize(actions ...auth.Action) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if reg.opts.Policy == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			model := chi.URLParam(r, "repository") + "/" + chi.URLParam(r, "name")
			id := identityOf(r.Context())
			for _, a := range actions {
				if reg.opts.Policy.Allowed(id, a, model) {
					next.ServeHTTP(w, r)
					return
				}
			}
			what := string(actions[0])
			for _, a := range actions[1:] {
				what += " or " + string(a)
			}
			if id == nil {
				reg.challenge(w, r, "")
				writeError(w, spec.Errorf(spec.ErrorUnauthorized, "authentication required to %s %s", what, model))
				return
			}
			writeError(w, spec.Errorf(spec.ErrorDenied, "%s may not %s %s", id, what, model))
		})
	}
}

// authorizeRegistry refuses a request that acts on the whole registry
// unless the policy allows action on every model ("*").
func (reg *Registry) authorizeRegistry(action auth.Action) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if reg.opts.Policy == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := identityOf(r.Context())
			if reg.opts.Policy.Allowed(id, action, "*") {
				next.ServeHTTP(w, r)
				return
			}
			if id == nil {
				reg.challenge(w, r, "")
				writeError(w, spec.Errorf(spec.ErrorUnauthorized, "authentication required to %s the whole registry", action))
				return
			}
			writeError(w, spec.Errorf(spec.ErrorDenied, "%s may not %s the whole registry: that needs %s on \"*\"", id, action, action))
		})
	}
}

// canList says whether the identity may see a model in the global index.
func (reg *Registry) canList(id *auth.Identity, model string) bool {
	return reg.opts.Policy == nil || reg.opts.Policy.Allowed(id, auth.Pull, model)
}

func (reg *Registry) configuration(w http.ResponseWriter, r *http.Request) error {
	c := spec.RegistryConfiguration{AuthRequired: reg.opts.Policy != nil}
	if reg.opts.Login != nil {
		c.OIDC = reg.opts.Login
	}
	return writeJSON(w, http.StatusOK, c)
}
