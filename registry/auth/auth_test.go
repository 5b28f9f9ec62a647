package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv"
)

// TestAuthenticateKinds: the kind of an identity follows from how its token
// was proven (robot table, cluster issuer, people issuer), never from what
// its claims read. Tokens are signed for issuers trusted through JWKS files
// and verified by go-oidc as any other.
func TestAuthenticateKinds(t *testing.T) {
	people := testenv.NewTokenIssuer(t, "https://idp.example.com")
	partner := testenv.NewTokenIssuer(t, "https://partner.example.com")
	lax := testenv.NewTokenIssuer(t, "https://lax.example.com")
	byName := testenv.NewTokenIssuer(t, "https://names.example.com")
	prod := testenv.NewTokenIssuer(t, "https://prod.k8s.example.com")
	prodOld := testenv.NewTokenIssuer(t, "https://old.prod.k8s.example.com")
	dev := testenv.NewTokenIssuer(t, "https://dev.k8s.example.com")
	sum := sha256.Sum256([]byte("robot-token"))
	a, err := New(Config{
		Issuers: []IssuerConfig{
			{Issuer: people.Issuer, Audience: "modelx", JWKSFile: people.JWKSFile},
			{Issuer: partner.Issuer, Audience: "modelx", JWKSFile: partner.JWKSFile, UsernamePrefix: "partner:", GroupsPrefix: "partner:"},
			{Issuer: lax.Issuer, Audience: "modelx", JWKSFile: lax.JWKSFile, AllowUnverifiedEmail: true},
			{Issuer: byName.Issuer, Audience: "modelx", JWKSFile: byName.JWKSFile, UsernameClaim: "preferred_username"},
			{Issuer: prod.Issuer, Audience: "modelx", JWKSFile: prod.JWKSFile, Cluster: "prod", UsernameClaim: "sub"},
			{Issuer: prodOld.Issuer, Audience: "modelx", JWKSFile: prodOld.JWKSFile, Cluster: "prod"},
			{Issuer: dev.Issuer, Audience: "modelx", JWKSFile: dev.JWKSFile, Cluster: "dev"},
		},
		Robots: []Robot{{Name: "admin", TokenSHA256: hex.EncodeToString(sum[:]), Groups: []string{"ci"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	verified := func(email string, more ...any) map[string]any {
		c := map[string]any{"sub": "u-" + email, "email": email, "email_verified": true}
		for i := 0; i+1 < len(more); i += 2 {
			c[more[i].(string)] = more[i+1]
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		token string
		want  string   // the identity's String(); "" for an invalid token
		err   string   // a part of the error
		group []string // the identity's groups
	}{
		{"robot", "robot-token", "robot admin", "", []string{"ci"}},
		{"user", people.Token(t, "modelx", verified("alice@example.com", "groups", []any{"ml"})), "user alice@example.com", "", []string{"ml"}},
		{"user named like a robot", people.Token(t, "modelx", verified("robot:admin")), "user robot:admin", "", nil},
		{"user named like a service account", people.Token(t, "modelx", verified("system:serviceaccount:prod:x")), "user system:serviceaccount:prod:x", "", nil},
		{"people issuer, service-account sub", people.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod:x", "email": "x@example.com", "email_verified": true}), "user x@example.com", "", nil},
		{"people issuer, no email", people.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod:x"}), "", `no "email" claim`, nil},
		{"email_verified false", people.Token(t, "modelx", verified("mallory@example.com", "email_verified", false)), "", "email is not verified", nil},
		{"email_verified absent", people.Token(t, "modelx", map[string]any{"sub": "m", "email": "mallory@example.com"}), "", "email is not verified", nil},
		{"email_verified a string", people.Token(t, "modelx", verified("mallory@example.com", "email_verified", "true")), "", "email is not verified", nil},
		{"unverified email allowed", lax.Token(t, "modelx", map[string]any{"sub": "m", "email": "mallory@example.com"}), "user mallory@example.com", "", nil},
		{"other username claim, email unverified", byName.Token(t, "modelx", map[string]any{"sub": "m", "preferred_username": "mallory", "email_verified": false}), "user mallory", "", nil},
		{"prefixed issuer", partner.Token(t, "modelx", verified("alice@example.com", "groups", []any{"registry-admins"})), "user partner:alice@example.com", "", []string{"partner:registry-admins"}},
		{"service account", prod.ServiceAccountToken(t, "serving", "puller", "modelx"), "service account prod/serving/puller", "", nil},
		{"service account, second issuer of the cluster", prodOld.ServiceAccountToken(t, "serving", "puller", "modelx"), "service account prod/serving/puller", "", nil},
		{"service account of another cluster", dev.ServiceAccountToken(t, "serving", "puller", "modelx"), "service account dev/serving/puller", "", nil},
		{"cluster token with groups", dev.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:a:b", "groups": []any{"registry-admins"}}), "service account dev/a/b", "", nil},
		{"cluster token of a person", dev.Token(t, "modelx", verified("alice@example.com")), "", "must be a service-account token", nil},
		{"cluster token, sub robot", dev.Token(t, "modelx", map[string]any{"sub": "robot:admin"}), "", "must be a service-account token", nil},
		{"cluster token, no name", dev.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod:"}), "", "must be a service-account token", nil},
		{"cluster token, extra element", dev.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod:a:b"}), "", "must be a service-account token", nil},
		{"cluster token, slash", dev.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod/x:b"}), "", "must be a service-account token", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Authorization", "Bearer "+tc.token)
			id, err := a.Authenticate(context.Background(), req)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Authenticate = %v, %v; want an invalid token error with %q", id, err, tc.err)
				}
				return
			}
			if err != nil || id == nil || id.String() != tc.want || !slices.Equal(id.Groups, tc.group) {
				t.Fatalf("Authenticate = %v (groups %v), %v; want %s (groups %v)", id, idGroups(id), err, tc.want, tc.group)
			}
		})
	}
}

func idGroups(id *Identity) []string {
	if id == nil {
		return nil
	}
	return id.Groups
}

func TestConfigClustersAndLogin(t *testing.T) {
	c := Config{Issuers: []IssuerConfig{
		{Issuer: "https://prod", Audience: "modelx", Cluster: "prod"},
		{Issuer: "https://idp", Audience: "modelx"},
		{Issuer: "https://prod-old", Audience: "modelx", Cluster: "prod"},
		{Issuer: "https://dev", Audience: "modelx", Cluster: "dev"},
	}}
	if got := c.Clusters(); !slices.Equal(got, []string{"prod", "dev"}) {
		t.Errorf("Clusters() = %v", got)
	}
	if is, ok := c.LoginIssuer(); !ok || is.Issuer != "https://idp" {
		t.Errorf("LoginIssuer() = %v %v, want the people issuer, not a cluster", is, ok)
	}
}
