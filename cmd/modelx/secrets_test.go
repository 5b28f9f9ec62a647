package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/s3"
)

// TestNoSecretsInLogsOrErrors runs a full push and pull with OIDC tokens
// against a redirecting registry on S3, plus the failures a user meets
// (denied, unknown tag, bad token), with the registry logging at debug
// level, and looks for the bearer tokens, the S3 secret key and presigned
// signatures in everything written: the registry's log and the CLI's
// output and errors.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	dex := testenv.StartDex(t, testenv.DexOptions{})
	s3srv := testenv.StartS3(t)
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{Endpoint: s3srv.URL, Bucket: "secrets", AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: dex.Issuer, Audience: "modelx", UsernameClaim: "email"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{Rules: []auth.Rule{
		{Repositories: []string{"*"}, Actions: []auth.Action{auth.Admin}, Users: []string{"alice@example.com"}},
		{Repositories: []string{"nlp/*"}, Actions: []auth.Action{auth.Pull}, Users: []string{"bob@example.com"}},
	}}
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := registry.New(st, registry.Options{Logger: logger, EnableRedirect: true, Authenticator: authn, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))

	alice, bob := dex.Token(t, "modelx", "alice@example.com"), dex.Token(t, "modelx", "bob@example.com")
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: secret test\n"), 0o644)
	os.WriteFile(filepath.Join(model, "weights.bin"), bytes.Repeat([]byte("weights "), 1<<18), 0o644)
	os.WriteFile(filepath.Join(model, "config.json"), []byte(`{"layers": 2}`), 0o644)

	var written strings.Builder
	step := func(token string, wantErr bool, args ...string) {
		t.Helper()
		t.Setenv("MODELX_TOKEN", token)
		out, errOut, err := run(t, "", args...)
		written.WriteString(out + errOut)
		if err != nil {
			written.WriteString(err.Error())
		}
		if (err != nil) != wantErr {
			t.Fatalf("modelx %s: error %v, want error: %v\n%s", strings.Join(args, " "), err, wantErr, errOut)
		}
	}
	step(alice, false, "push", srv.URL+"/nlp/bert:v1", model)
	step(alice, false, "push", srv.URL+"/nlp/bert:v1", model, "-o", "json")
	step(bob, false, "pull", srv.URL+"/nlp/bert:v1", filepath.Join(t.TempDir(), "out"))
	step(bob, false, "info", srv.URL+"/nlp/bert:v1")
	step(bob, true, "push", srv.URL+"/nlp/bert:v2", model)                                      // denied
	step(bob, true, "pull", srv.URL+"/nlp/bert:v9", t.TempDir())                                // unknown tag
	step(alice+"x", true, "pull", srv.URL+"/nlp/bert:v1", t.TempDir())                          // bad token
	step(alice, true, "pull", srv.URL+"/nlp/bert@sha256:"+strings.Repeat("0", 64), t.TempDir()) // unknown digest

	everything := logs.String() + written.String()
	if !strings.Contains(logs.String(), "/nlp/bert/blobs/") {
		t.Fatalf("the registry log shows no blob request; is it logging?\n%s", logs.String())
	}
	secrets := map[string]string{
		"alice's token":           alice,
		"bob's token":             bob,
		"a token's signature":     alice[strings.LastIndex(alice, ".")+1:],
		"the S3 secret key":       s3srv.SecretKey,
		"a presigned signature":   "X-Amz-Signature",
		"a presigned credential":  "X-Amz-Credential",
		"an authorization header": "Bearer ey",
	}
	for what, s := range secrets {
		if strings.Contains(everything, s) {
			t.Errorf("%s appears in the logs or the CLI's output", what)
		}
	}
}
