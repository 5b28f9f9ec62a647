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

// dialect is how one of the registry's APIs answers errors and asks for
// credentials: modelx's own API (modelxAPI) or the OCI distribution API
// (ociAPI, oci.go).
type dialect struct {
	// writeError writes an API error in the API's envelope.
	writeError func(w http.ResponseWriter, e *spec.Error)
	// challenge sets WWW-Authenticate on an answer that asks for
	// credentials to do actions on model ("" for the whole registry);
	// extra is appended, e.g. error="invalid_token".
	challenge func(reg *Registry, w http.ResponseWriter, r *http.Request, model string, actions []auth.Action, extra string)
	// token returns the token a request carries, if any; ok is false for
	// an Authorization header the API does not accept.
	token func(r *http.Request) (token string, ok bool)
}

// modelxAPI is the dialect of modelx's own API: its JSON error envelope,
// a challenge naming where to learn how to log in, and Bearer tokens only.
var modelxAPI = dialect{
	writeError: writeError,
	challenge: func(reg *Registry, w http.ResponseWriter, r *http.Request, _ string, _ []auth.Action, extra string) {
		v := fmt.Sprintf(`Bearer realm="%s%s"`, externalURL(r), spec.ConfigurationPath)
		if extra != "" {
			v += ", " + extra
		}
		w.Header().Set("WWW-Authenticate", v)
	},
	token: func(r *http.Request) (string, bool) {
		if t := auth.BearerToken(r); t != "" || r.Header.Get("Authorization") == "" {
			return t, true
		}
		return "", false
	},
}

// externalURL is the scheme and host a client reached the registry at.
func externalURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// authenticate reads the bearer token into the request's context. A bad
// token is refused at once; a missing one is left to authorize.
func (reg *Registry) authenticate(next http.Handler) http.Handler {
	return reg.authenticateIn(modelxAPI)(next)
}

// authenticateIn is authenticate for the API of dialect d.
func (reg *Registry) authenticateIn(d dialect) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if reg.opts.Authenticator == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := d.token(r)
			if !ok {
				d.challenge(reg, w, r, "", nil, `error="invalid_token"`)
				d.writeError(w, spec.Errorf(spec.ErrorUnauthorized, "the Authorization header is not accepted: send a Bearer token"))
				return
			}
			if raw == "" {
				next.ServeHTTP(w, r)
				return
			}
			id, err := reg.opts.Authenticator.AuthenticateToken(r.Context(), raw)
			if err != nil {
				if errors.Is(err, auth.ErrInvalidToken) {
					d.challenge(reg, w, r, "", nil, `error="invalid_token"`)
					d.writeError(w, spec.Errorf(spec.ErrorUnauthorized, "the bearer token is not valid (%s); log in again", trimTokenError(err)))
					return
				}
				reg.log.ErrorContext(r.Context(), "authentication failed", "error", err)
				d.writeError(w, spec.Errorf(spec.ErrorUnavailable, "the identity provider cannot be reached to verify the token; retry later"))
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
		})
	}
}

func trimTokenError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// authorize refuses a request the policy does not allow with any of
// actions: 401 when it carries no identity, 403 DENIED when it does.
func (reg *Registry) authorize(actions ...auth.Action) func(http.Handler) http.Handler {
	return reg.authorizeIn(modelxAPI, actions...)
}

// authorizeIn is authorize for the API of dialect d.
func (reg *Registry) authorizeIn(d dialect, actions ...auth.Action) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if reg.opts.Policy == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			model := chi.URLParam(r, "repository") + "/" + chi.URLParam(r, "name")
			if err := reg.allowed(w, r, d, model, actions...); err != nil {
				d.writeError(w, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// allowed returns nil when the policy lets the request's identity do any
// of actions on model; else the error to answer (after setting the
// challenge of dialect d when the request carries no identity).
func (reg *Registry) allowed(w http.ResponseWriter, r *http.Request, d dialect, model string, actions ...auth.Action) *spec.Error {
	if reg.opts.Policy == nil {
		return nil
	}
	id := identityOf(r.Context())
	for _, a := range actions {
		if reg.opts.Policy.Allowed(id, a, model) {
			return nil
		}
	}
	what := string(actions[0])
	for _, a := range actions[1:] {
		what += " or " + string(a)
	}
	if id == nil {
		d.challenge(reg, w, r, model, actions, "")
		return spec.Errorf(spec.ErrorUnauthorized, "authentication required to %s %s", what, model)
	}
	return spec.Errorf(spec.ErrorDenied, "%s may not %s %s", id, what, model)
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
				modelxAPI.challenge(reg, w, r, "", nil, "")
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
