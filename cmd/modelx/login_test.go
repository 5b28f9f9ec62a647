package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/fs"
)

func startAuthRegistry(t *testing.T, dex *testenv.Dex) string {
	t.Helper()
	authn, err := auth.New(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: dex.Issuer, Audience: "modelx", Login: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authenticator: authn, Policy: auth.DefaultPolicy(false),
		Login: &spec.OIDCLogin{Issuer: dex.Issuer, ClientID: "modelx", Scopes: []string{"openid", "email", "profile", "offline_access"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDeviceLogin runs `modelx login` against a registry that trusts Dex,
// approves the code the way a person in a browser would, then pushes with
// the stored credential; with short-lived tokens, the refresh token keeps
// the login working.
func TestDeviceLogin(t *testing.T) {
	dex := testenv.StartDex(t, testenv.DexOptions{IDTokenExpiry: 2 * time.Second})
	url := startAuthRegistry(t, dex)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	t.Setenv("MODELX_CONFIG", cfgPath)
	t.Setenv("MODELX_TOKEN", "")

	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: login\n"), 0o644)
	if _, _, err := run(t, "", "push", url+"/nlp/bert:v1", model); err == nil || !strings.Contains(err.Error(), "modelx login "+url) {
		t.Fatalf("push before login: %v", err)
	}

	pr, pw := io.Pipe()
	var out bytes.Buffer
	cmd := newRootCommand(strings.NewReader(""), &out, pw)
	cmd.SetArgs([]string{"login", url})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(context.Background()); pw.Close() }()
	// Read the prompt for the code, then approve it as alice.
	var prompt bytes.Buffer
	code := regexp.MustCompile(`code ([A-Z]{4}-[A-Z]{4})`)
	buf := make([]byte, 512)
	for !code.Match(prompt.Bytes()) {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("login printed no code: %q (%v)", prompt.String(), err)
		}
		prompt.Write(buf[:n])
	}
	go io.Copy(io.Discard, pr)
	if !strings.Contains(prompt.String(), dex.Issuer+"/device") {
		t.Fatalf("the prompt names no verification URL: %q", prompt.String())
	}
	if err := dex.ApproveDevice(code.FindStringSubmatch(prompt.String())[1], "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("login: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("login did not finish after approval")
	}
	if !strings.Contains(out.String(), "logged in to "+url) {
		t.Fatalf("login output %q", out.String())
	}
	cfg, err := credentials.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cred := cfg.Credentials[url]
	if cred.Token == "" || cred.RefreshToken == "" || cred.TokenURL == "" {
		t.Fatalf("stored credential lacks a token or refresh token: %+v", cred.Expiry)
	}
	mustRun(t, "push", url+"/nlp/bert:v1", model)

	// The ID token expires; the next command refreshes it and saves the new
	// one. Dex issues it and the registry checks it by the wall clock, so
	// the test waits out its short lifetime.
	time.Sleep(time.Until(cred.Expiry) + 500*time.Millisecond)
	mustRun(t, "push", url+"/nlp/bert:v2", model)
	cfg, _ = credentials.LoadConfig(cfgPath)
	if cfg.Credentials[url].Token == cred.Token || !cfg.Credentials[url].Expiry.After(cred.Expiry) {
		t.Fatal("the expired token was not refreshed")
	}
}
