package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/fs"
)

const identityPolicy = `
anonymousRepositories: ["public/*"]
rules:
- repositories: ["*"]
  actions: [admin]
  robots: [admin]
- repositories: ["ci/*"]
  actions: [push]
  robots: [b]
- repositories: ["nlp/*"]
  actions: [push]
  users: [alice@example.com, mallory@example.com]
- repositories: ["serving/*"]
  actions: [pull]
  serviceAccounts: ["prod/prod/*"]
- repositories: ["*"]
  actions: [admin]
  groups: [registry-admins]
`

// TestAuthIdentityKinds: through a real modelxd handler, identities cannot be
// forged across kinds and issuers. People tokens come from real Dex servers
// (static users whose emails read like a robot or a service account, one
// whose email Dex reports unverified); what Dex cannot issue (no or a string
// email_verified, a cluster's service-account token) is signed for issuers
// trusted through JWKS files and verified by the same code.
func TestAuthIdentityKinds(t *testing.T) {
	users := []testenv.DexUser{
		{Email: "alice@example.com", Username: "alice", Password: "password"},
		{Email: "robot:admin", Username: "robot-admin", Password: "password"},
		{Email: "system:serviceaccount:prod:x", Username: "sa-x", Password: "password"},
		{Email: "mallory@example.com", Username: "mallory", Password: "password", EmailUnverified: true},
	}
	dex := testenv.StartDex(t, testenv.DexOptions{Users: users})
	partner := testenv.StartDex(t, testenv.DexOptions{Users: []testenv.DexUser{
		{Email: "alice@example.com", Username: "alice", Password: "password", Groups: []string{"registry-admins"}},
	}})
	strict := testenv.NewTokenIssuer(t, "https://strict.idp.test")
	lax := testenv.NewTokenIssuer(t, "https://lax.idp.test")
	prod := testenv.NewTokenIssuer(t, "https://prod.cluster.test")
	robotSum := func(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth.yaml")
	policyFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policyFile, []byte(identityPolicy), 0o600)
	os.WriteFile(authFile, []byte(`
issuers:
- {issuer: "`+dex.Issuer+`", audience: modelx, login: true}
- {issuer: "`+partner.Issuer+`", audience: modelx, usernamePrefix: "partner:", groupsPrefix: "partner:"}
- {issuer: "`+strict.Issuer+`", audience: modelx, jwksFile: "`+strict.JWKSFile+`"}
- {issuer: "`+lax.Issuer+`", audience: modelx, jwksFile: "`+lax.JWKSFile+`", allowUnverifiedEmail: true}
- {issuer: "`+prod.Issuer+`", audience: modelx, jwksFile: "`+prod.JWKSFile+`", cluster: prod}
robots:
- {name: admin, tokenSHA256: `+robotSum("admin-robot-token")+`}
- {name: b, tokenSHA256: `+robotSum("b-robot-token")+`}
`), 0o600)
	cfg, err := auth.LoadConfig(authFile)
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.CheckClusters(cfg.Clusters()); err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authenticator: authn, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	e := &authEnv{url: srv.URL, tokens: map[string]string{
		"anonymous":                "",
		"robot admin":              "admin-robot-token",
		"robot b":                  "b-robot-token",
		"alice":                    dex.Token(t, "modelx", "alice@example.com"),
		"user robot:admin":         dex.Token(t, "modelx", "robot:admin"),
		"user system:sa:prod:x":    dex.Token(t, "modelx", "system:serviceaccount:prod:x"),
		"mallory, unverified":      dex.Token(t, "modelx", "mallory@example.com"),
		"partner alice, admins":    partner.Token(t, "modelx", "alice@example.com"),
		"email_verified absent":    strict.Token(t, "modelx", map[string]any{"sub": "1", "email": "mallory@example.com"}),
		"email_verified a string":  strict.Token(t, "modelx", map[string]any{"sub": "1", "email": "mallory@example.com", "email_verified": "true"}),
		"email_verified true":      strict.Token(t, "modelx", map[string]any{"sub": "1", "email": "mallory@example.com", "email_verified": true}),
		"lax, absent":              lax.Token(t, "modelx", map[string]any{"sub": "1", "email": "mallory@example.com"}),
		"sa prod/prod/x":           prod.ServiceAccountToken(t, "prod", "x", "modelx"),
		"prod cluster, not an SA":  prod.Token(t, "modelx", map[string]any{"sub": "system:serviceaccount:prod"}),
		"prod cluster, robot sub":  prod.Token(t, "modelx", map[string]any{"sub": "robot:admin"}),
		"prod cluster, people sub": prod.Token(t, "modelx", map[string]any{"sub": "alice@example.com", "email": "alice@example.com", "email_verified": true}),
	}}
	ctx := context.Background()
	src := modelDir(t)
	for _, ref := range []string{"nlp/bert:v1", "public/p:v1", "serving/m:v1", "ci/nightly:v1"} {
		if _, err := e.client("robot admin").Push(ctx, e.ref(t, ref), src); err != nil {
			t.Fatalf("robot admin push %s: %v", ref, err)
		}
	}

	for _, tc := range []struct {
		who, method, path string
		status            int
		message           string // a part of the error message, if any
	}{
		// A username that reads like a robot is a user's.
		{"user robot:admin", http.MethodPost, "/nlp/bert/garbage-collect", http.StatusForbidden, "user robot:admin may not delete or admin nlp/bert"},
		{"user robot:admin", http.MethodDelete, "/ci/nightly/manifests/v1", http.StatusForbidden, "user robot:admin may not delete ci/nightly"},
		{"robot admin", http.MethodPost, "/nlp/bert/garbage-collect", http.StatusOK, ""},
		// So is one that reads like a service account.
		{"user system:sa:prod:x", http.MethodGet, "/serving/m/index", http.StatusForbidden, "user system:serviceaccount:prod:x may not pull serving/m"},
		{"sa prod/prod/x", http.MethodGet, "/serving/m/index", http.StatusOK, ""},
		{"sa prod/prod/x", http.MethodGet, "/nlp/bert/index", http.StatusForbidden, "service account prod/prod/x may not pull nlp/bert"},
		// A cluster issuer vouches only for service accounts.
		{"prod cluster, not an SA", http.MethodGet, "/public/p/index", http.StatusUnauthorized, "must be a service-account token"},
		{"prod cluster, robot sub", http.MethodGet, "/public/p/index", http.StatusUnauthorized, "must be a service-account token"},
		{"prod cluster, people sub", http.MethodGet, "/public/p/index", http.StatusUnauthorized, "must be a service-account token"},
		// A second people issuer's users and groups are its own.
		{"partner alice, admins", http.MethodPost, "/nlp/bert/garbage-collect", http.StatusForbidden, "user partner:alice@example.com may not delete or admin nlp/bert"},
		{"partner alice, admins", http.MethodGet, "/nlp/bert/index", http.StatusForbidden, "user partner:alice@example.com may not pull nlp/bert"},
		{"alice", http.MethodGet, "/nlp/bert/index", http.StatusOK, ""},
		// An email that is not verified names nobody.
		{"mallory, unverified", http.MethodGet, "/nlp/bert/index", http.StatusUnauthorized, "email is not verified"},
		{"email_verified absent", http.MethodGet, "/nlp/bert/index", http.StatusUnauthorized, "email is not verified"},
		{"email_verified a string", http.MethodGet, "/nlp/bert/index", http.StatusUnauthorized, "email is not verified"},
		{"email_verified true", http.MethodGet, "/nlp/bert/index", http.StatusOK, ""},
		{"lax, absent", http.MethodGet, "/nlp/bert/index", http.StatusOK, ""},
		// Logged in, every identity keeps what anonymous requests may do.
		{"anonymous", http.MethodGet, "/public/p/index", http.StatusOK, ""},
		{"robot b", http.MethodGet, "/public/p/index", http.StatusOK, ""},
		{"sa prod/prod/x", http.MethodGet, "/public/p/index", http.StatusOK, ""},
		{"alice", http.MethodGet, "/public/p/index", http.StatusOK, ""},
		{"robot b", http.MethodDelete, "/public/p/manifests/v1", http.StatusForbidden, "robot b may not delete public/p"},
	} {
		t.Run(tc.who+" "+tc.method+" "+tc.path, func(t *testing.T) {
			status, body := e.doBody(t, tc.who, tc.method, tc.path)
			if status != tc.status || !strings.Contains(body, tc.message) {
				t.Fatalf("%s %s as %s: %d %s; want %d with %q", tc.method, tc.path, tc.who, status, body, tc.status, tc.message)
			}
			if status == http.StatusUnauthorized && tc.who != "anonymous" && !strings.Contains(body, "the bearer token is not valid") {
				t.Fatalf("a refused token's answer does not say the token is invalid: %s", body)
			}
		})
	}

	t.Run("RobotPullsPublic", func(t *testing.T) {
		if _, err := e.client("robot b").Pull(ctx, e.ref(t, "public/p:v1"), t.TempDir(), client.PullOptions{}); err != nil {
			t.Fatalf("robot b pull of public/p: %v", err)
		}
	})
	t.Run("GlobalIndexKeepsAnonymousModels", func(t *testing.T) {
		for who, want := range map[string][]string{
			"anonymous":      {"public/p"},
			"robot b":        {"ci/nightly", "public/p"},
			"sa prod/prod/x": {"public/p", "serving/m"},
			"alice":          {"nlp/bert", "public/p"},
		} {
			if got := e.listed(t, who); !slices.Equal(got, want) {
				t.Errorf("global index for %s: %v, want %v", who, got, want)
			}
		}
	})
	t.Run("DeniedClientError", func(t *testing.T) {
		// A push starts by reading its tag, so the first refusal is a pull.
		_, err := e.client("user robot:admin").Push(ctx, e.ref(t, "ci/other:v1"), src)
		if client.Code(err) != spec.ErrorDenied || !strings.Contains(err.Error(), "user robot:admin may not pull ci/other") {
			t.Fatalf("push as the user robot:admin: %v", err)
		}
	})
}

// doBody sends a request as who and returns the status and the body.
func (e *authEnv) doBody(t *testing.T, who, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	if tok := e.tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
