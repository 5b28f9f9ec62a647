package ui

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"modelx.io/modelx/registry/auth"
)

// sessionCookie holds the token a viewer pasted into the login page. It is
// HttpOnly (no script reads it), SameSite=Strict (no other site's page
// sends it), scoped to the UI's path, and Secure over https.
const sessionCookie = "modelx_ui_token"

// sessionMaxAge bounds how long a browser keeps the token; the token's
// own expiry applies too, since every request verifies it again.
const sessionMaxAge = 12 * time.Hour

// maxTokenSize bounds a pasted token: browsers drop cookies over about 4 KiB.
const maxTokenSize = 3800

// viewer is who is looking at a page.
type viewer struct {
	// id is the verified identity; nil when anonymous.
	id *auth.Identity
	// stale means the session cookie held a token that is no longer
	// valid (expired, revoked); the cookie is cleared.
	stale bool
}

// viewer finds the request's viewer: from an Authorization header if one
// is sent (scripts, tests), else from the session cookie. An invalid
// cookie makes an anonymous, stale viewer; an identity provider that
// cannot be reached is an error (503).
func (u *UI) viewer(r *http.Request) (viewer, error) {
	authn := u.opts.Authenticator
	if authn == nil {
		return viewer{}, nil
	}
	if r.Header.Get("Authorization") != "" {
		id, err := authn.Authenticate(r.Context(), r)
		if errors.Is(err, auth.ErrInvalidToken) {
			return viewer{}, &pageError{status: http.StatusUnauthorized, msg: "The bearer token is not valid."}
		}
		if err != nil {
			return viewer{}, u.unavailable(r.Context(), err)
		}
		return viewer{id: id}, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return viewer{}, nil
	}
	token, ok := decodeCookieToken(c.Value)
	if !ok {
		return viewer{stale: true}, nil
	}
	id, err := u.verify(r.Context(), token)
	if errors.Is(err, auth.ErrInvalidToken) {
		return viewer{stale: true}, nil
	}
	if err != nil {
		return viewer{}, u.unavailable(r.Context(), err)
	}
	return viewer{id: id}, nil
}

// verify checks a token with the API's authenticator, exactly as if it
// came in an Authorization header.
func (u *UI) verify(ctx context.Context, token string) (*auth.Identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	id, err := u.opts.Authenticator.Authenticate(ctx, req)
	if err == nil && id == nil {
		err = auth.ErrInvalidToken
	}
	return id, err
}

// unavailable logs why a token could not be checked (never the token) and
// answers 503.
func (u *UI) unavailable(ctx context.Context, err error) error {
	u.log.ErrorContext(ctx, "ui authentication failed", "error", err)
	return &pageError{status: http.StatusServiceUnavailable, msg: "The identity provider cannot be reached to check your token; try again later."}
}

// canSee reports whether the viewer may see a model: whether they may pull
// it, with their token or without one (what anyone may see, a logged-in
// viewer may see too).
func (u *UI) canSee(v viewer, model string) bool {
	p := u.opts.Policy
	return p == nil || p.Allowed(v.id, auth.Pull, model) || (v.id != nil && p.Allowed(nil, auth.Pull, model))
}

// loginData is what the login page shows.
type loginData struct {
	Next    string
	Error   string
	Enabled bool
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request, v viewer) error {
	next := safeNext(r.URL.Query().Get("next"))
	if v.id != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	status := http.StatusOK
	if u.opts.Authenticator == nil {
		status = http.StatusNotFound
	}
	u.render(w, r, v, status, "login", "Log in", loginData{Next: next, Enabled: u.opts.Authenticator != nil})
	return nil
}

// login checks a pasted token and keeps it in the session cookie. The
// token is never echoed, logged or put in a URL.
func (u *UI) login(w http.ResponseWriter, r *http.Request, v viewer) error {
	if u.opts.Authenticator == nil {
		return notFound("This registry has no login: authentication is off.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return &pageError{status: http.StatusBadRequest, msg: "The login form could not be read."}
	}
	next := safeNext(r.PostForm.Get("next"))
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		token = strings.TrimSpace(token[7:])
	}
	fail := func(status int, msg string) error {
		u.render(w, r, v, status, "login", "Log in", loginData{Next: next, Error: msg, Enabled: true})
		return nil
	}
	switch {
	case token == "":
		return fail(http.StatusBadRequest, "Paste a token to log in.")
	case len(encodeCookieToken(token)) > maxTokenSize:
		return fail(http.StatusBadRequest, "This token is too long to keep in a browser cookie.")
	}
	id, err := u.verify(r.Context(), token)
	if errors.Is(err, auth.ErrInvalidToken) {
		return fail(http.StatusUnauthorized, "The registry did not accept this token: it is not valid, has expired, or is not for this registry.")
	}
	if err != nil {
		return u.unavailable(r.Context(), err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: encodeCookieToken(token), Path: Prefix, MaxAge: int(sessionMaxAge.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isHTTPS(r),
	})
	u.log.InfoContext(r.Context(), "ui login", "identity", id.String())
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, v viewer) error {
	clearSession(w, r)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
	return nil
}

func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isHTTPS(r),
	})
}

// encodeCookieToken makes a token a cookie value: as it is when every byte
// may stand in a cookie unquoted (JWTs, most robot tokens), else "~" and
// its unpadded base64url.
func encodeCookieToken(token string) string {
	plain := !strings.HasPrefix(token, "~")
	for i := 0; i < len(token) && plain; i++ {
		b := token[i]
		plain = b > 0x20 && b < 0x7f && b != '"' && b != ';' && b != '\\' && b != ','
	}
	if plain {
		return token
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// decodeCookieToken undoes encodeCookieToken.
func decodeCookieToken(value string) (string, bool) {
	rest, encoded := strings.CutPrefix(value, "~")
	if !encoded {
		return value, true
	}
	data, err := base64.RawURLEncoding.DecodeString(rest)
	return string(data), err == nil
}

// safeNext returns next if it is a path within the UI, else the UI's
// start page, so a login link cannot send the browser to another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "//") {
		return Prefix
	}
	p, err := url.Parse(next)
	if err != nil || p.Scheme != "" || p.Host != "" || !strings.HasPrefix(p.Path, Prefix) {
		return Prefix
	}
	return p.RequestURI()
}
