package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/internal/testenv/kubeenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// TestKeylessPodPull plays an init container: a projected service-account
// token issued by a real kube-apiserver (TokenRequest API, audience modelx)
// in a file named by MODELX_TOKEN_FILE, and no Secret. modelxd trusts the
// cluster's issuer, named prod, through discovery, or through a JWKS file.
// The same namespace and name vouched for by another cluster's issuer (dev,
// tokens signed by the test), or written as a person's email at a real Dex,
// are other identities: the prod rule does not let them pull.
func TestKeylessPodPull(t *testing.T) {
	kube := kubeenv.StartKube(t)
	kube.AllowAnonymousDiscovery(t)
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(jwks, kube.JWKS(t), 0o600)
	os.WriteFile(ca, kube.CA, 0o600)
	dev := testenv.NewTokenIssuer(t, "https://dev.cluster.test")
	dex := testenv.StartDex(t, testenv.DexOptions{Users: []testenv.DexUser{
		{Email: "system:serviceaccount:serving:puller", Username: "puller", Password: "password"},
	}})
	robotSum := sha256.Sum256([]byte("pusher-token"))
	policy := &auth.Policy{Rules: []auth.Rule{
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push}, Robots: []string{"ci"}},
		{Repositories: []string{"nlp/*"}, Actions: []auth.Action{auth.Pull}, ServiceAccounts: []string{"prod/serving/*"}},
	}}
	if err := policy.Validate(); err != nil {
		t.Fatal(err)
	}

	for name, issuer := range map[string]auth.IssuerConfig{
		"discovery": {Issuer: kube.Issuer, Audience: "modelx", Cluster: "prod", CAFile: ca},
		"jwks-file": {Issuer: kube.Issuer, Audience: "modelx", Cluster: "prod", UsernameClaim: "sub", JWKSFile: jwks},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := auth.Config{
				Issuers: []auth.IssuerConfig{
					issuer,
					{Issuer: dev.Issuer, Audience: "modelx", Cluster: "dev", JWKSFile: dev.JWKSFile},
					{Issuer: dex.Issuer, Audience: "modelx"},
				},
				Robots: []auth.Robot{{Name: "ci", TokenSHA256: hex.EncodeToString(robotSum[:])}},
			}
			if err := policy.CheckClusters(cfg.Clusters()); err != nil {
				t.Fatal(err)
			}
			authn, err := auth.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Authenticator: authn, Policy: policy})
			srv := httptest.NewServer(reg.Handler())
			defer srv.Close()
			t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "c.yaml"))

			model := t.TempDir()
			os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: served\n"), 0o644)
			os.WriteFile(filepath.Join(model, "model.onnx"), []byte("onnx bytes"), 0o644)
			t.Setenv("MODELX_TOKEN", "pusher-token")
			mustRun(t, "push", srv.URL+"/nlp/bert:prod", model)
			t.Setenv("MODELX_TOKEN", "")

			tokenFile := filepath.Join(t.TempDir(), "token")
			t.Setenv("MODELX_TOKEN_FILE", tokenFile)
			host := strings.TrimPrefix(srv.URL, "http://")
			uri := "modelx://" + host + "/nlp/bert@prod?insecure=true"
			for _, tc := range []struct {
				who   string
				token string
				want  string // "" for success, else a substring of the error
			}{
				{"prod serving/puller", kube.ServiceAccountToken(t, "serving", "puller", "modelx", time.Hour), ""},
				{"prod dev/puller", kube.ServiceAccountToken(t, "dev", "puller", "modelx", time.Hour), "service account prod/dev/puller may not pull nlp/bert"},
				{"prod serving/puller, another audience", kube.ServiceAccountToken(t, "serving", "puller", "another-audience", time.Hour), "not valid"},
				{"dev serving/puller", dev.ServiceAccountToken(t, "serving", "puller", "modelx"), "service account dev/serving/puller may not pull nlp/bert"},
				{"a person named like it", dex.Token(t, "modelx", "system:serviceaccount:serving:puller"), "user system:serviceaccount:serving:puller may not pull nlp/bert"},
			} {
				os.WriteFile(tokenFile, []byte(tc.token), 0o600)
				mnt := filepath.Join(t.TempDir(), "models")
				_, _, err := run(t, "", "pull", uri, mnt)
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("%s pull: %v", tc.who, err)
				case tc.want == "":
					if data, err := os.ReadFile(filepath.Join(mnt, "model.onnx")); err != nil || string(data) != "onnx bytes" {
						t.Fatalf("pulled model.onnx: %q %v", data, err)
					}
				case err == nil || !strings.Contains(err.Error(), tc.want):
					t.Fatalf("%s pull: %v, want an error with %q", tc.who, err, tc.want)
				}
			}
		})
	}
}
