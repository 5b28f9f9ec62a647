package credentials

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"modelx.io/modelx/client/reference"
)

func TestChain(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	failing := KeychainFunc(func(context.Context, string) (string, error) { return "", boom })
	for _, tc := range []struct {
		name  string
		chain Chain
		want  string
		err   error
	}{
		{"empty", Chain{}, "", nil},
		{"first token wins", Chain{Static(""), Static("a"), Static("b")}, "a", nil},
		{"error stops", Chain{Static(""), failing, Static("b")}, "", boom},
		{"token before error", Chain{Static("a"), failing}, "a", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.chain.Resolve(ctx, "https://h")
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Fatalf("Resolve = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// TestStoredKeychainRefreshes: a stored OIDC login about to expire is
// refreshed once, saved, and the new ID token used; a fresh one is not.
func TestStoredKeychainRefreshes(t *testing.T) {
	clearEnv(t)
	var refreshes atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refreshes.Add(1)
		r.ParseForm()
		if r.Form.Get("grant_type") != "refresh_token" || r.Form.Get("refresh_token") != "refresh-1" || r.Form.Get("client_id") != "modelx" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"access","token_type":"Bearer","expires_in":3600,"id_token":"id-2","refresh_token":"refresh-2"}`))
	}))
	defer idp.Close()

	const reg = "https://models.example.com"
	cfg, err := LoadConfig(filepath.Join(t.TempDir(), "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetCredential(reg, Credential{Token: "id-1", RefreshToken: "refresh-1", Expiry: time.Now().Add(10 * time.Second), TokenURL: idp.URL, ClientID: "modelx"})
	k := cfg.Keychain(nil)
	ctx := context.Background()
	if tok, err := k.Resolve(ctx, reg); err != nil || tok != "id-2" {
		t.Fatalf("Resolve = %q, %v; want the refreshed id-2", tok, err)
	}
	saved, err := LoadConfig(cfg.Path())
	if err != nil || saved.Credentials[reg].Token != "id-2" || saved.Credentials[reg].RefreshToken != "refresh-2" {
		t.Fatalf("saved credential %+v, %v", saved.Credentials[reg], err)
	}
	if tok, err := k.Resolve(ctx, reg); err != nil || tok != "id-2" || refreshes.Load() != 1 {
		t.Fatalf("second Resolve = %q, %v after %d refreshes; want id-2 after 1", tok, err, refreshes.Load())
	}

	// A refresh the provider refuses says to log in again, and repeats no token.
	cfg.SetCredential(reg, Credential{Token: "id-1", RefreshToken: "stale", Expiry: time.Now(), TokenURL: idp.URL, ClientID: "modelx"})
	if _, err := k.Resolve(ctx, reg); err == nil || !strings.Contains(err.Error(), "modelx login "+reg) || strings.Contains(err.Error(), "stale") {
		t.Fatalf("refused refresh: %v", err)
	}
	// The environment comes first and needs no refresh.
	t.Setenv(EnvToken, "env-tok")
	if tok, err := Default(cfg, nil).Resolve(ctx, reg); err != nil || tok != "env-tok" {
		t.Fatalf("Default with MODELX_TOKEN = %q, %v", tok, err)
	}
}

// TestConfigResolveAlias: the configuration's aliases resolve through
// reference.Aliases, and a broken one names the file.
func TestConfigResolveAlias(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registries = map[string]RegistryConfig{"local": {URL: "HTTP://LocalHost:80/"}, "broken": {URL: "ftp://h"}}
	if base, err := cfg.ResolveAlias("local"); err != nil || base != "http://localhost" {
		t.Fatalf("ResolveAlias(local) = %q, %v", base, err)
	}
	if _, err := cfg.ResolveAlias("broken"); err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, reference.ErrInvalidReference) {
		t.Fatalf("ResolveAlias(broken) = %v", err)
	}
	var none *Config
	if _, err := none.ResolveAlias("x"); !errors.Is(err, reference.ErrUnknownAlias) || !strings.Contains(err.Error(), "no aliases are defined") {
		t.Fatalf("nil config: %v", err)
	}
}
