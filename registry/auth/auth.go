// Package auth authenticates registry requests and authorizes them by
// policy. Identities come from OIDC bearer tokens of one or more trusted
// issuers (verified with go-oidc: signature, issuer, audience, expiry), from
// a Kubernetes service-account issuer the same way, or from static robot
// tokens stored hashed. A policy grants pull, push, delete or admin on
// repository globs.
package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"sigs.k8s.io/yaml"
)

// Identity is who made a request.
type Identity struct {
	// Name is the user name claim, "system:serviceaccount:NS:NAME" for a
	// Kubernetes service account, or "robot:NAME".
	Name string
	// Groups are the groups claim's values (or a robot's groups).
	Groups []string
	// Issuer is the token's issuer; empty for robots.
	Issuer string
}

// ServiceAccount returns "NAMESPACE/NAME" for a Kubernetes service account, else "".
func (id *Identity) ServiceAccount() string {
	if rest, ok := strings.CutPrefix(id.Name, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return ns + "/" + name
		}
	}
	return ""
}

// Robot returns the robot's name, or "".
func (id *Identity) Robot() string {
	name, _ := strings.CutPrefix(id.Name, "robot:")
	if name == id.Name {
		return ""
	}
	return name
}

// ErrInvalidToken means a bearer token was presented but is not valid:
// malformed, badly signed, expired, of an untrusted issuer or audience.
var ErrInvalidToken = errors.New("invalid token")

// IssuerConfig trusts one OIDC issuer.
type IssuerConfig struct {
	// Issuer is the issuer URL, exactly as in the tokens' "iss".
	Issuer string `json:"issuer"`
	// Audience is the expected "aud": the OAuth client ID for people, the
	// token audience for pods.
	Audience string `json:"audience"`
	// UsernameClaim names the claim used as identity; default "email", or
	// "sub" when the issuer is a Kubernetes cluster.
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// GroupsClaim names the claim holding groups; default "groups".
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// JWKSFile verifies with these keys instead of discovery, for clusters
	// whose discovery endpoint is not reachable.
	JWKSFile string `json:"jwksFile,omitempty"`
	// CAFile is a PEM bundle to trust for discovery, e.g. a cluster's CA.
	CAFile string `json:"caFile,omitempty"`
	// Login marks the issuer `modelx login` uses (the device flow). The
	// first issuer is the login issuer when none is marked.
	Login bool `json:"login,omitempty"`
}

// Robot is a static token for CI systems without OIDC.
type Robot struct {
	Name string `json:"name"`
	// TokenSHA256 is the hex sha256 of the token; the token itself is never stored.
	TokenSHA256 string   `json:"tokenSHA256"`
	Groups      []string `json:"groups,omitempty"`
}

// Config lists who can authenticate.
type Config struct {
	Issuers []IssuerConfig `json:"issuers,omitempty"`
	Robots  []Robot        `json:"robots,omitempty"`
}

// LoadConfig reads an auth config file (YAML).
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Enabled reports whether any way to authenticate is configured.
func (c Config) Enabled() bool { return len(c.Issuers) > 0 || len(c.Robots) > 0 }

// LoginIssuer returns the issuer `modelx login` should use, if any.
func (c Config) LoginIssuer() (IssuerConfig, bool) {
	for _, is := range c.Issuers {
		if is.Login {
			return is, true
		}
	}
	for _, is := range c.Issuers {
		if is.JWKSFile == "" && !strings.HasPrefix(is.UsernameClaim, "sub") {
			return is, true
		}
	}
	return IssuerConfig{}, false
}

// Authenticator verifies bearer tokens.
type Authenticator struct {
	issuers map[string]*issuer
	robots  map[[32]byte]Robot
}

type issuer struct {
	cfg      IssuerConfig
	client   *http.Client
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// New validates cfg and returns an authenticator. Issuers are discovered
// lazily, so modelxd starts even while an identity provider is down.
func New(cfg Config, httpClient *http.Client) (*Authenticator, error) {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	a := &Authenticator{issuers: map[string]*issuer{}, robots: map[[32]byte]Robot{}}
	var err error
	for i, is := range cfg.Issuers {
		if is.Issuer == "" || is.Audience == "" {
			return nil, fmt.Errorf("issuers[%d]: issuer and audience are both required", i)
		}
		if _, dup := a.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("issuers[%d]: issuer %s is listed twice", i, is.Issuer)
		}
		if is.GroupsClaim == "" {
			is.GroupsClaim = "groups"
		}
		iss := &issuer{cfg: is, client: httpClient}
		if is.CAFile != "" {
			if iss.client, err = clientTrusting(is.CAFile); err != nil {
				return nil, fmt.Errorf("issuers[%d] (%s): %w", i, is.Issuer, err)
			}
		}
		if is.JWKSFile != "" {
			keys, err := loadJWKS(is.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("issuers[%d] (%s): %w", i, is.Issuer, err)
			}
			iss.verifier = oidc.NewVerifier(is.Issuer, &oidc.StaticKeySet{PublicKeys: keys}, &oidc.Config{ClientID: is.Audience, SupportedSigningAlgs: asymmetricAlgs})
		}
		a.issuers[is.Issuer] = iss
	}
	for i, r := range cfg.Robots {
		sum, err := hex.DecodeString(r.TokenSHA256)
		if err != nil || len(sum) != 32 || r.Name == "" {
			return nil, fmt.Errorf("robots[%d]: want a name and tokenSHA256 (64 hex digits: `printf %%s TOKEN | sha256sum`)", i)
		}
		a.robots[[32]byte(sum)] = r
	}
	return a, nil
}

// asymmetricAlgs are the signing algorithms accepted with a JWKS file
// (discovery tells them otherwise); the key set itself decides which verify.
var asymmetricAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// clientTrusting returns an HTTP client that trusts the CAs in a PEM file
// besides the system's.
func clientTrusting(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}, nil
}

func loadJWKS(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s is not a JWKS document: %w", path, err)
	}
	var keys []crypto.PublicKey
	for _, k := range set.Keys {
		if k.Use == "" || k.Use == "sig" {
			keys = append(keys, k.Key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no signing keys", path)
	}
	return keys, nil
}

func (is *issuer) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	ctx = oidc.ClientContext(context.WithoutCancel(ctx), is.client)
	p, err := oidc.NewProvider(ctx, is.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OIDC issuer %s: %w", is.cfg.Issuer, err)
	}
	is.verifier = p.Verifier(&oidc.Config{ClientID: is.cfg.Audience})
	return is.verifier, nil
}

// BearerToken returns the token of an "Authorization: Bearer" header, or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Authenticate returns the request's identity, nil for an anonymous
// request, or an error wrapping ErrInvalidToken. Tokens are read only from
// the Authorization header.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) (*Identity, error) {
	raw := BearerToken(r)
	if raw == "" {
		if r.Header.Get("Authorization") != "" {
			return nil, fmt.Errorf("%w: only Bearer tokens are accepted", ErrInvalidToken)
		}
		return nil, nil
	}
	sum := sha256.Sum256([]byte(raw))
	for h, robot := range a.robots {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			return &Identity{Name: "robot:" + robot.Name, Groups: robot.Groups}, nil
		}
	}
	iss, err := unverifiedIssuer(raw)
	if err != nil {
		return nil, err
	}
	is, ok := a.issuers[iss]
	if !ok {
		return nil, fmt.Errorf("%w: issuer %q is not trusted", ErrInvalidToken, iss)
	}
	v, err := is.get(ctx)
	if err != nil {
		return nil, err // the IdP is unreachable: not the client's fault
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	claim := is.cfg.UsernameClaim
	if claim == "" {
		claim = "email"
		if sub, _ := claims["sub"].(string); strings.HasPrefix(sub, "system:serviceaccount:") {
			claim = "sub"
		}
	}
	name, _ := claims[claim].(string)
	if name == "" {
		return nil, fmt.Errorf("%w: the token has no %q claim", ErrInvalidToken, claim)
	}
	id := &Identity{Name: name, Issuer: iss}
	if groups, ok := claims[is.cfg.GroupsClaim].([]any); ok {
		for _, g := range groups {
			if s, ok := g.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	}
	return id, nil
}

// unverifiedIssuer reads "iss" from a JWT without verifying it, only to
// choose the verifier.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: not a JWT", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: malformed JWT payload", ErrInvalidToken)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Iss == "" {
		return "", fmt.Errorf("%w: the JWT names no issuer", ErrInvalidToken)
	}
	return claims.Iss, nil
}
