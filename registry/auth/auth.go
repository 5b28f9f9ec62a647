// Package auth authenticates registry requests and authorizes them by
// policy. Identities are typed by how they were proven: users come from OIDC
// bearer tokens of trusted people issuers (verified with go-oidc: signature,
// issuer, audience, expiry), service accounts from the service-account
// issuers of named Kubernetes clusters the same way, and robots from static
// tokens stored hashed. A policy grants pull, push, delete or admin on
// repository globs to users, robots, service accounts and groups, each
// field matching only its own kind.
package auth

import (
	"cmp"
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
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"sigs.k8s.io/yaml"
)

// Kind is how an identity was proven. Only the authenticator sets it, from
// the way a request authenticated (a robot token, a people issuer, a
// Kubernetes cluster's issuer), never from a claim's value, so no token can
// pass for another kind.
type Kind string

// The kinds of identity.
const (
	// KindUser is a person, vouched for by a people OIDC issuer.
	KindUser Kind = "user"
	// KindRobot holds one of the robot tokens of the auth config.
	KindRobot Kind = "robot"
	// KindServiceAccount is a Kubernetes service account, vouched for by the
	// service-account issuer of a cluster named in the auth config.
	KindServiceAccount Kind = "service account"
)

// Identity is who made a request.
type Identity struct {
	// Kind is how the identity was proven.
	Kind Kind
	// Name is, for a user, the issuer's usernamePrefix and the username
	// claim; for a robot, its name; for a service account,
	// "CLUSTER/NAMESPACE/NAME".
	Name string
	// Groups are a user's groups claim (with the issuer's groupsPrefix) or a
	// robot's groups; service accounts have none.
	Groups []string
	// Issuer is the token's issuer; empty for robots.
	Issuer string
}

// String names the identity with its kind, e.g. "robot ci", "user
// alice@example.com", "service account prod/serving/puller": what messages
// and logs show, and a key that keeps identities of different kinds apart.
func (id *Identity) String() string { return string(id.Kind) + " " + id.Name }

// ErrInvalidToken means a bearer token was presented but is not valid:
// malformed, badly signed, expired, of an untrusted issuer or audience, an
// email username whose email_verified is not true, or a cluster issuer's
// token that is not a service account's.
var ErrInvalidToken = errors.New("invalid token")

// IssuerConfig trusts one OIDC issuer: a people issuer (an identity
// provider), whose tokens are users, or, with Cluster set, a Kubernetes
// cluster's service-account issuer, whose tokens are service accounts.
type IssuerConfig struct {
	// Issuer is the issuer URL, exactly as in the tokens' "iss".
	Issuer string `json:"issuer"`
	// Audience is the expected "aud": the OAuth client ID for people, the
	// token audience for pods.
	Audience string `json:"audience"`
	// Cluster marks a Kubernetes cluster's service-account issuer and names
	// the cluster, as policies' serviceAccounts entries CLUSTER/NAMESPACE/NAME
	// do. Its tokens' sub must be system:serviceaccount:NAMESPACE:NAME.
	// Several issuers may share a name (a cluster whose issuer URL changes).
	Cluster string `json:"cluster,omitempty"`
	// UsernameClaim names the claim that names a user; default "email".
	// A cluster issuer always uses "sub".
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// UsernamePrefix is put before every username of a people issuer, e.g.
	// "partner:", so that two identity providers cannot claim each other's
	// users.
	UsernamePrefix string `json:"usernamePrefix,omitempty"`
	// GroupsClaim names the claim holding a user's groups; default "groups".
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// GroupsPrefix is put before every group of a people issuer's users.
	GroupsPrefix string `json:"groupsPrefix,omitempty"`
	// AllowUnverifiedEmail accepts tokens whose email_verified is not true
	// when the username claim is email, for identity providers that never
	// send that claim. Otherwise such tokens are refused.
	AllowUnverifiedEmail bool `json:"allowUnverifiedEmail,omitempty"`
	// JWKSFile verifies with these keys instead of discovery, for clusters
	// whose discovery endpoint is not reachable.
	JWKSFile string `json:"jwksFile,omitempty"`
	// CAFile is a PEM bundle to trust for discovery, e.g. a cluster's CA.
	CAFile string `json:"caFile,omitempty"`
	// Login marks the issuer `modelx login` uses (the device flow). The
	// first people issuer is the login issuer when none is marked.
	Login bool `json:"login,omitempty"`
}

// validClusterName is what a cluster may be called: it is one element of
// a serviceAccounts entry, so no '/' and no glob characters.
var validClusterName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// check refuses settings that do not fit the issuer's kind.
func (is IssuerConfig) check() error {
	if is.Issuer == "" || is.Audience == "" {
		return errors.New("issuer and audience are both required")
	}
	if is.Cluster == "" {
		return nil
	}
	if !validClusterName.MatchString(is.Cluster) {
		return fmt.Errorf("cluster %q: a cluster name is letters, digits, '-', '_' and '.' (it is the first element of serviceAccounts entries CLUSTER/NAMESPACE/NAME)", is.Cluster)
	}
	for _, s := range []struct {
		set  bool
		name string
	}{
		{is.UsernameClaim != "" && is.UsernameClaim != "sub", "usernameClaim"},
		{is.UsernamePrefix != "", "usernamePrefix"},
		{is.GroupsClaim != "", "groupsClaim"},
		{is.GroupsPrefix != "", "groupsPrefix"},
		{is.AllowUnverifiedEmail, "allowUnverifiedEmail"},
		{is.Login, "login"},
	} {
		if s.set {
			return fmt.Errorf("cluster %s: %s is for people issuers; a cluster's tokens are service accounts named by their sub (system:serviceaccount:NAMESPACE:NAME), without groups: remove %s", is.Cluster, s.name, s.name)
		}
	}
	return nil
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
	// Clock tells the time tokens' expiry is checked against; nil means
	// time.Now. It is for tests, which move it forward instead of
	// sleeping; a config file cannot set it.
	Clock func() time.Time `json:"-"`
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

// Clusters returns the cluster names the issuers carry.
func (c Config) Clusters() []string {
	var names []string
	for _, is := range c.Issuers {
		if is.Cluster != "" && !slices.Contains(names, is.Cluster) {
			names = append(names, is.Cluster)
		}
	}
	return names
}

// LoginIssuer returns the issuer `modelx login` should use, if any.
func (c Config) LoginIssuer() (IssuerConfig, bool) {
	for _, is := range c.Issuers {
		if is.Login {
			return is, true
		}
	}
	for _, is := range c.Issuers {
		if is.Cluster == "" && is.JWKSFile == "" && !strings.HasPrefix(is.UsernameClaim, "sub") {
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
	clock    func() time.Time // nil: time.Now
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
		if err := is.check(); err != nil {
			if is.Issuer == "" {
				return nil, fmt.Errorf("issuers[%d]: %w", i, err)
			}
			return nil, fmt.Errorf("issuers[%d] (%s): %w", i, is.Issuer, err)
		}
		if _, dup := a.issuers[is.Issuer]; dup {
			return nil, fmt.Errorf("issuers[%d]: issuer %s is listed twice", i, is.Issuer)
		}
		if is.Cluster == "" {
			is.UsernameClaim = cmp.Or(is.UsernameClaim, "email")
			is.GroupsClaim = cmp.Or(is.GroupsClaim, "groups")
		}
		iss := &issuer{cfg: is, client: httpClient, clock: cfg.Clock}
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
			iss.verifier = oidc.NewVerifier(is.Issuer, &oidc.StaticKeySet{PublicKeys: keys}, &oidc.Config{ClientID: is.Audience, SupportedSigningAlgs: asymmetricAlgs, Now: iss.clock})
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
	is.verifier = p.Verifier(&oidc.Config{ClientID: is.cfg.Audience, Now: is.clock})
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
	return a.AuthenticateToken(ctx, raw)
}

// AuthenticateToken returns the identity a token proves (an ID token of a
// trusted issuer, or a robot's token), or an error wrapping
// ErrInvalidToken; an empty token is invalid.
func (a *Authenticator) AuthenticateToken(ctx context.Context, raw string) (*Identity, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: the token is empty", ErrInvalidToken)
	}
	sum := sha256.Sum256([]byte(raw))
	for h, robot := range a.robots {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			return &Identity{Kind: KindRobot, Name: robot.Name, Groups: robot.Groups}, nil
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
	if is.cfg.Cluster != "" {
		return serviceAccount(is.cfg, claims)
	}
	return user(is.cfg, claims)
}

// serviceAccount is the identity of a verified token of a cluster issuer:
// always a service account, or no identity at all.
func serviceAccount(cfg IssuerConfig, claims map[string]any) (*Identity, error) {
	sub, _ := claims["sub"].(string)
	rest, ok := strings.CutPrefix(sub, "system:serviceaccount:")
	ns, name, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || name == "" || strings.ContainsAny(ns+name, ":/") {
		return nil, fmt.Errorf("%w: a token of cluster %s must be a service-account token (sub system:serviceaccount:NAMESPACE:NAME)", ErrInvalidToken, cfg.Cluster)
	}
	return &Identity{Kind: KindServiceAccount, Name: cfg.Cluster + "/" + ns + "/" + name, Issuer: cfg.Issuer}, nil
}

// user is the identity of a verified token of a people issuer: always a
// user, whatever its claims say.
func user(cfg IssuerConfig, claims map[string]any) (*Identity, error) {
	name, _ := claims[cfg.UsernameClaim].(string)
	if name == "" {
		return nil, fmt.Errorf("%w: the token has no %q claim", ErrInvalidToken, cfg.UsernameClaim)
	}
	if cfg.UsernameClaim == "email" && !cfg.AllowUnverifiedEmail {
		if verified, _ := claims["email_verified"].(bool); !verified {
			return nil, fmt.Errorf("%w: the token's email is not verified (email_verified is not true)", ErrInvalidToken)
		}
	}
	id := &Identity{Kind: KindUser, Name: cfg.UsernamePrefix + name, Issuer: cfg.Issuer}
	if groups, ok := claims[cfg.GroupsClaim].([]any); ok {
		for _, g := range groups {
			if s, ok := g.(string); ok {
				id.Groups = append(id.Groups, cfg.GroupsPrefix+s)
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
