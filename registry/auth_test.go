package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/fs"
)

const robotToken = "robot-secret-token-0123456789"

const testPolicy = `
anonymousRepositories: ["public/*"]
rules:
- repositories: ["nlp/*"]
  actions: [push, delete]
  users: [alice@example.com]
- repositories: ["nlp/*", "public/*"]
  actions: [pull]
  users: [bob@example.com]
- repositories: ["public/*"]
  actions: [push]
  users: [alice@example.com]
- repositories: ["ci/*"]
  actions: [push]
  robots: [ci]
- repositories: ["*"]
  actions: [admin]
  groups: [registry-admins]
`

type authEnv struct {
	url    string
	logs   *testenv.LogBuffer
	tokens map[string]string // who → bearer token ("" for none)
}

func startAuthRegistry(t *testing.T) *authEnv {
	t.Helper()
	dex := testenv.StartDex(t, testenv.DexOptions{ClientIDs: []string{"modelx", "other"}})
	otherDex := testenv.StartDex(t, testenv.DexOptions{})
	shortDex := testenv.StartDex(t, testenv.DexOptions{IDTokenExpiry: time.Second})
	sum := sha256.Sum256([]byte(robotToken))
	clock := &testenv.Clock{}
	cfg := auth.Config{
		Clock: clock.Now,
		Issuers: []auth.IssuerConfig{
			{Issuer: dex.Issuer, Audience: "modelx", Login: true},
			{Issuer: shortDex.Issuer, Audience: "modelx"},
		},
		Robots: []auth.Robot{{Name: "ci", TokenSHA256: hex.EncodeToString(sum[:])}},
	}
	authn, err := auth.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte(testPolicy), 0o600)
	policy, err := auth.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	reg, err := registry.New(st, registry.Options{
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Authenticator: authn, Policy: policy,
		Login: &spec.OIDCLogin{Issuer: dex.Issuer, ClientID: "modelx", Scopes: []string{"openid", "email", "offline_access"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)

	expired := shortDex.Token(t, "modelx", "alice@example.com")
	alice := dex.Token(t, "modelx", "alice@example.com")
	parts := strings.Split(alice, ".")
	sig := []byte(parts[2])
	sig[10] ^= 1
	tampered := parts[0] + "." + parts[1] + "." + string(sig)
	env := &authEnv{url: srv.URL, logs: logs, tokens: map[string]string{
		"anonymous":      "",
		"garbage":        "not-a-jwt",
		"tampered":       tampered,
		"wrong-audience": dex.Token(t, "other", "alice@example.com"),
		"wrong-issuer":   otherDex.Token(t, "modelx", "alice@example.com"),
		"expired":        expired,
		"alice":          alice,
		"bob":            dex.Token(t, "modelx", "bob@example.com"),
		"carol":          dex.Token(t, "modelx", "carol@example.com"),
		"robot":          robotToken,
	}}
	clock.Advance(time.Minute) // past the short-lived token's expiry (1 s), and no other's
	return env
}

// listed returns the models the global index shows who.
func (e *authEnv) listed(t *testing.T, who string) []string {
	t.Helper()
	idx, err := e.client(who).API(e.url).Index(context.Background(), "", "", "")
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	return names(idx)
}

func (e *authEnv) client(who string) *client.Client {
	tok := e.tokens[who]
	return client.New(client.Options{Token: func(string) (string, error) { return tok, nil }})
}

func (e *authEnv) ref(t *testing.T, s string) client.Reference {
	r, err := client.ParseReference(e.url+"/"+s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func modelDir(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("description: auth test\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "weights.bin"), bytes.Repeat([]byte("w"), 2<<20), 0o644)
	return dir
}

func TestAuth(t *testing.T) {
	e := startAuthRegistry(t)
	ctx := context.Background()
	src := modelDir(t)
	if _, err := e.client("alice").Push(ctx, e.ref(t, "nlp/bert:v1"), src); err != nil {
		t.Fatalf("alice push: %v", err)
	}
	if _, err := e.client("alice").Push(ctx, e.ref(t, "public/demo:v1"), src); err != nil {
		t.Fatalf("alice push public: %v", err)
	}
	if _, err := e.client("robot").Push(ctx, e.ref(t, "ci/nightly:v1"), src); err != nil {
		t.Fatalf("robot push: %v", err)
	}
	m, _, md, err := e.client("alice").API(e.url).GetManifest(ctx, "nlp", "bert", "v1")
	if err != nil {
		t.Fatal(err)
	}
	blob := m.Config.Digest
	newBlob := []byte("fresh blob")
	newDigest := digest.FromBytes(newBlob)

	type endpoint struct {
		name, method, path string
		body               []byte
		action             auth.Action
	}
	endpoints := []endpoint{
		{"index", http.MethodGet, "/nlp/bert/index", nil, auth.Pull},
		{"manifest", http.MethodGet, "/nlp/bert/manifests/v1", nil, auth.Pull},
		{"manifest-head", http.MethodHead, "/nlp/bert/manifests/" + string(md), nil, auth.Pull},
		{"blob-head", http.MethodHead, "/nlp/bert/blobs/" + string(blob), nil, auth.Pull},
		{"blob-get", http.MethodGet, "/nlp/bert/blobs/" + string(blob), nil, auth.Pull},
		{"blob-put", http.MethodPut, "/nlp/bert/blobs/" + string(newDigest), newBlob, auth.Push},
		{"manifest-put", http.MethodPut, "/nlp/bert/manifests/v2", mustJSON(m), auth.Push},
		{"manifest-delete", http.MethodDelete, "/nlp/bert/manifests/nope", nil, auth.Delete},
		{"index-delete", http.MethodDelete, "/nlp/other/index", nil, auth.Delete},
		{"gc", http.MethodPost, "/nlp/bert/garbage-collect", nil, auth.Delete},
	}
	// Who may do what on nlp/*, per the policy above.
	allowed := map[string]map[auth.Action]bool{
		"alice": {auth.Pull: true, auth.Push: true, auth.Delete: true},
		"bob":   {auth.Pull: true},
	}
	unauthenticated := []string{"anonymous", "garbage", "tampered", "wrong-audience", "wrong-issuer", "expired"}
	for _, ep := range endpoints {
		for who := range e.tokens {
			t.Run(ep.name+"/"+who, func(t *testing.T) {
				status, header := e.do(t, who, ep.method, ep.path, ep.body)
				switch {
				case contains(unauthenticated, who):
					if status != http.StatusUnauthorized || !strings.HasPrefix(header.Get("WWW-Authenticate"), `Bearer realm="`+e.url+spec.ConfigurationPath) {
						t.Fatalf("%s %s as %s: %d %q, want 401 with a Bearer challenge", ep.method, ep.path, who, status, header.Get("WWW-Authenticate"))
					}
				case allowed[who][ep.action]:
					if status == http.StatusUnauthorized || status == http.StatusForbidden {
						t.Fatalf("%s %s as %s: %d, want it allowed", ep.method, ep.path, who, status)
					}
				default:
					if status != http.StatusForbidden {
						t.Fatalf("%s %s as %s: %d, want 403", ep.method, ep.path, who, status)
					}
				}
			})
		}
	}

	t.Run("AnonymousPullOfPublic", func(t *testing.T) {
		if _, err := e.client("anonymous").Pull(ctx, e.ref(t, "public/demo:v1"), t.TempDir(), client.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		if status, _ := e.do(t, "anonymous", http.MethodPut, "/public/demo/blobs/"+string(newDigest), newBlob); status != http.StatusUnauthorized {
			t.Fatalf("anonymous push to public: %d", status)
		}
	})
	t.Run("PullByAllowedUser", func(t *testing.T) {
		dst := t.TempDir()
		if _, err := e.client("bob").Pull(ctx, e.ref(t, "nlp/bert:v1"), dst, client.PullOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PullRefusedOutsidePolicy", func(t *testing.T) {
		_, err := e.client("carol").Pull(ctx, e.ref(t, "nlp/bert:v1"), t.TempDir(), client.PullOptions{})
		if err == nil || client.Code(err) != spec.ErrorDenied || !strings.Contains(err.Error(), "carol@example.com may not pull nlp/bert") {
			t.Fatalf("carol pull: %v", err)
		}
		_, err = e.client("expired").Pull(ctx, e.ref(t, "nlp/bert:v1"), t.TempDir(), client.PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "modelx login "+e.url) {
			t.Fatalf("expired token: %v", err)
		}
	})
	t.Run("GlobalIndexShowsOnlyWhatYouMayPull", func(t *testing.T) {
		// Every identity sees what anonymous requests may pull too.
		for who, want := range map[string]string{"alice": "nlp/bert,public/demo", "bob": "nlp/bert,public/demo", "carol": "public/demo", "anonymous": "public/demo", "robot": "ci/nightly,public/demo"} {
			if got := e.listed(t, who); strings.Join(got, ",") != want {
				t.Errorf("global index for %s: %v, want %s", who, got, want)
			}
		}
	})
	t.Run("LoginConfiguration", func(t *testing.T) {
		conf, err := client.NewAPI(e.url, nil, nil).Configuration(ctx)
		if err != nil || !conf.AuthRequired || conf.OIDC == nil || conf.OIDC.ClientID != "modelx" {
			t.Fatalf("configuration %+v %v", conf, err)
		}
	})
	t.Run("TokenOnlyInHeader", func(t *testing.T) {
		status, _ := e.do(t, "anonymous", http.MethodGet, "/nlp/bert/index?access_token="+e.tokens["alice"], nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("token in the query string: %d, want 401", status)
		}
	})
	t.Run("NoTokenInLogs", func(t *testing.T) {
		logs := e.logs.String()
		if !strings.Contains(logs, "/nlp/bert/index") {
			t.Fatal("the registry logged no requests; the check would be empty")
		}
		for who, tok := range e.tokens {
			if len(tok) > 8 && strings.Contains(logs, tok) {
				t.Fatalf("the %s token appears in the log", who)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mustJSON(m *spec.Manifest) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func (e *authEnv) do(t *testing.T, who, method, path string, body []byte) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if tok := e.tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestRedirectCarriesNoToken: with S3 redirects and auth on, the presigned
// URL is issued only to an allowed caller and never carries its token.
func TestRedirectCarriesNoToken(t *testing.T) {
	b := backends(t)
	sum := sha256.Sum256([]byte(robotToken))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{{Name: "ci", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, b[2], registry.Options{Authenticator: authn, Policy: auth.DefaultPolicy(false)})
	data := []byte("secret weights")
	d := digest.FromBytes(data)
	auth := http.Header{"Authorization": {"Bearer " + robotToken}}
	// Anonymous: refused before any URL is signed.
	r := h.do(http.MethodPut, "/ci/m/blobs/"+string(d), data, nil)
	if r.status != http.StatusUnauthorized || r.header.Get("Location") != "" {
		t.Fatalf("anonymous upload: %d Location %q", r.status, r.header.Get("Location"))
	}
	r = h.do(http.MethodPut, "/ci/m/blobs/"+string(d), data, auth)
	loc := r.header.Get("Location")
	if r.status != http.StatusFound || strings.Contains(loc, robotToken) || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("upload redirect: %d %q", r.status, loc)
	}
	c := client.New(client.Options{Token: func(string) (string, error) { return robotToken, nil }})
	if _, err := c.API(h.url).PutBlob(context.Background(), "ci", "m", d, int64(len(data)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }); err != nil {
		t.Fatal(err)
	}
	// Offered again, the uploaded blob is linked to the model.
	if _, err := c.API(h.url).PutBlob(context.Background(), "ci", "m", d, int64(len(data)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }); err != nil {
		t.Fatal(err)
	}
	r = h.do(http.MethodGet, "/ci/m/blobs/"+string(d), nil, auth)
	if loc := r.header.Get("Location"); r.status != http.StatusFound || strings.Contains(loc, robotToken) {
		t.Fatalf("download redirect: %d %q", r.status, loc)
	}
}
