package credentials

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/client/reference"
)

// clearEnv unsets the variables the configuration reads, for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{EnvConfig, EnvToken, EnvTokenFile} {
		t.Setenv(k, "")
	}
}

func TestConfigDefaultPath(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("HOME", dir)
	t.Setenv("AppData", dir) // Windows
	want, err := os.UserConfigDir()
	if err != nil {
		t.Fatal(err)
	}
	want = filepath.Join(want, "modelx", "config.yaml")
	got, err := DefaultConfigPath()
	if err != nil || got != want {
		t.Fatalf("DefaultConfigPath() = %q, %v; want %q", got, err, want)
	}

	t.Setenv(EnvConfig, "/etc/modelx/config.yaml")
	got, err = DefaultConfigPath()
	if err != nil || got != "/etc/modelx/config.yaml" {
		t.Fatalf("with %s set: DefaultConfigPath() = %q, %v", EnvConfig, got, err)
	}
}

func TestConfigLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "config.yaml")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if len(c.Registries) != 0 || len(c.Credentials) != 0 || c.Path() != path {
		t.Fatalf("got %+v, want an empty configuration at %s", c, path)
	}
	if _, err := LoadConfig(""); err == nil {
		t.Fatal("LoadConfig(\"\") succeeded")
	}
}

func TestConfigLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(bad, []byte("registries: [1, 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(bad)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("LoadConfig(bad YAML) error %v does not name %s", err, bad)
	}

	wrongType := filepath.Join(dir, "wrong.yaml")
	if err := os.WriteFile(wrongType, []byte("registries:\n  local: http://h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadConfig(wrongType); err == nil || !strings.Contains(err.Error(), wrongType) {
		t.Fatalf("LoadConfig(wrong type) error %v does not name %s", err, wrongType)
	}

	// A directory where the file should be is not a missing file.
	if _, err = LoadConfig(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("LoadConfig(directory) error %v does not name %s", err, dir)
	}
}

func TestConfigLoadOpenModeAndUnknownFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	data := "registries:\n  local:\n    url: http://127.0.0.1:8080\nfutureField: 1\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if got := c.Registries["local"].URL; got != "http://127.0.0.1:8080" {
		t.Fatalf("local URL = %q", got)
	}
	if err := c.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	checkMode(t, path, 0o600)
}

func TestConfigRoundTrip(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "a", "b", "config.yaml")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddRegistry("local", "http://127.0.0.1:8080/"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRegistry("prod", "https://Models.Example.com"); err != nil {
		t.Fatal(err)
	}
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c.SetCredential("https://models.example.com", Credential{Token: "tok", RefreshToken: "refresh", Expiry: expiry})
	c.SetCredential("http://127.0.0.1:8080", Credential{Token: "local-tok"})
	if err := c.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	checkMode(t, path, 0o600)
	checkMode(t, filepath.Dir(path), 0o700|os.ModeDir)
	checkMode(t, filepath.Dir(filepath.Dir(path)), 0o700|os.ModeDir)

	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only config.yaml (no temp files left)", len(entries))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "expiry: null") || strings.Count(string(raw), "expiry") != 1 {
		t.Fatalf("a zero expiry was written:\n%s", raw)
	}

	loaded, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if !loaded.Credentials["https://models.example.com"].Expiry.Equal(expiry) {
		t.Fatalf("expiry = %v, want %v", loaded.Credentials["https://models.example.com"].Expiry, expiry)
	}
	want := &Config{
		Registries: map[string]RegistryConfig{
			"local": {URL: "http://127.0.0.1:8080"},
			"prod":  {URL: "https://models.example.com"},
		},
		Credentials: map[string]Credential{
			"https://models.example.com": {Token: "tok", RefreshToken: "refresh", Expiry: expiry},
			"http://127.0.0.1:8080":      {Token: "local-tok"},
		},
		path: path,
	}
	// Compare times with Equal, the rest with DeepEqual.
	for _, m := range []map[string]Credential{loaded.Credentials, want.Credentials} {
		for k, cred := range m {
			cred.Expiry = time.Time{}
			m[k] = cred
		}
	}
	if !reflect.DeepEqual(loaded, want) {
		t.Fatalf("loaded %+v, want %+v", loaded, want)
	}

	// The saved aliases resolve.
	ref, err := reference.ParseReference("prod/nlp/bert:v1", loaded)
	if err != nil || ref.Registry != "https://models.example.com" {
		t.Fatalf("ParseReference through saved alias = %+v, %v", ref, err)
	}

	// Saving again replaces the file and keeps it private.
	if err := loaded.RemoveRegistry("local"); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Save(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
	again, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again.Registries["local"]; ok || len(again.Registries) != 1 {
		t.Fatalf("after RemoveRegistry and Save: registries %v", again.Registries)
	}
}

func TestConfigSaveThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "dotfiles", "modelx.yaml")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
	c, err := LoadConfig(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddRegistry("local", "http://h"); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symbolic link was replaced: %v, %v", fi, err)
	}
	checkMode(t, target, 0o600)
	loaded, err := LoadConfig(target)
	if err != nil || loaded.Registries["local"].URL != "http://h" {
		t.Fatalf("target holds %+v, %v", loaded, err)
	}
}

func TestConfigSaveWithoutPath(t *testing.T) {
	var c Config
	if err := c.Save(); err == nil || !strings.Contains(err.Error(), "LoadConfig") {
		t.Fatalf("Save without a path: %v", err)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

func TestConfigAddRegistry(t *testing.T) {
	tests := []struct {
		alias, url string
		want       string // stored URL; "" when an error is expected
		err        string
		unwant     string
	}{
		{alias: "local", url: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{alias: "local", url: "http://127.0.0.1:8080/", want: "http://127.0.0.1:8080"},
		{alias: "prod", url: "HTTPS://Models.Example.com:443/", want: "https://models.example.com"},
		{alias: "a.b_c-1", url: "http://[::1]:80", want: "http://[::1]"},
		{alias: "9lives", url: "https://h:8443", want: "https://h:8443"},
		{alias: "", url: "http://h", err: "alias is empty"},
		{alias: "Local", url: "http://h", err: `alias "Local" is invalid`},
		{alias: "-x", url: "http://h", err: "starting with a letter or digit"},
		{alias: ".x", url: "http://h", err: "starting with a letter or digit"},
		{alias: "a b", url: "http://h", err: "is invalid"},
		{alias: strings.Repeat("a", 65), url: "http://h", err: "at most 64"},
		{alias: "http://h", url: "local", err: "looks like a URL"},
		{alias: "a/b", url: "http://h", err: "looks like a URL"},
		{alias: "host:8080", url: "http://h", err: "looks like a URL"},
		{alias: "x", url: "127.0.0.1:8080", err: "has no scheme"},
		{alias: "x", url: "", err: "has no scheme"},
		{alias: "x", url: "ftp://h", err: "use http:// or https://"},
		{alias: "x", url: "modelx://h", err: "use http:// or https://"},
		{alias: "x", url: "https://h/v2", err: "has a path"},
		{alias: "x", url: "https://h/repo/name", err: "has a path"},
		{alias: "x", url: "https://h?x=1", err: "has a query"},
		{alias: "x", url: "https://h#f", err: "has a fragment"},
		{alias: "x", url: "https://alice:s3cret@h", err: "credentials", unwant: "s3cret"},
		{alias: "x", url: "alice:s3cret@h", err: "credentials", unwant: "s3cret"},
		{alias: "x", url: "https://", err: "has no host"},
		{alias: "x", url: "https://h:70000", err: "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.alias+" "+tt.url, func(t *testing.T) {
			c := &Config{}
			err := c.AddRegistry(tt.alias, tt.url)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("AddRegistry succeeded, stored %v", c.Registries)
				}
				if !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %q does not contain %q", err, tt.err)
				}
				if tt.unwant != "" && strings.Contains(err.Error(), tt.unwant) {
					t.Fatalf("error %q repeats the secret %q", err, tt.unwant)
				}
				if len(c.Registries) != 0 {
					t.Fatalf("a failed AddRegistry stored %v", c.Registries)
				}
				return
			}
			if err != nil {
				t.Fatalf("AddRegistry: %v", err)
			}
			if got := c.Registries[tt.alias].URL; got != tt.want {
				t.Fatalf("stored %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigAddRegistryReplaces(t *testing.T) {
	c := &Config{}
	if err := c.AddRegistry("r", "http://a"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRegistry("r", "https://b"); err != nil {
		t.Fatal(err)
	}
	if got := c.Registries["r"].URL; got != "https://b" || len(c.Registries) != 1 {
		t.Fatalf("registries %v", c.Registries)
	}
}

func TestConfigRemoveRegistry(t *testing.T) {
	c := &Config{}
	for _, a := range []string{"zeta", "alpha"} {
		if err := c.AddRegistry(a, "http://"+a); err != nil {
			t.Fatal(err)
		}
	}
	c.SetCredential("http://alpha", Credential{Token: "t"})

	err := c.RemoveRegistry("beta")
	if !errors.Is(err, reference.ErrUnknownAlias) || !strings.Contains(err.Error(), `"beta"`) || !strings.Contains(err.Error(), "known aliases are alpha, zeta") {
		t.Fatalf("RemoveRegistry(unknown) = %v", err)
	}
	if err := c.RemoveRegistry("alpha"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Registries["alpha"]; ok {
		t.Fatal("alias still present")
	}
	if c.Credentials["http://alpha"].Token != "t" {
		t.Fatal("RemoveRegistry dropped the registry's credential")
	}
	if err := c.RemoveRegistry("alpha"); !errors.Is(err, reference.ErrUnknownAlias) || !strings.Contains(err.Error(), "known aliases are zeta") {
		t.Fatalf("second RemoveRegistry = %v", err)
	}

	empty := &Config{}
	if err := empty.RemoveRegistry("x"); !errors.Is(err, reference.ErrUnknownAlias) || !strings.Contains(err.Error(), "no aliases are defined") {
		t.Fatalf("RemoveRegistry on empty config = %v", err)
	}
}

func TestConfigCredentials(t *testing.T) {
	clearEnv(t)
	c := &Config{}
	c.SetCredential("HTTPS://Models.Example.com:443/", Credential{Token: "tok"})
	if _, ok := c.Credentials["https://models.example.com"]; !ok {
		t.Fatalf("credential not stored under the canonical URL: %v", c.Credentials)
	}
	if tok, err := token(c, "https://models.example.com"); err != nil || tok != "tok" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if tok, err := token(c, "https://other.example.com"); err != nil || tok != "" {
		t.Fatalf("Token(other) = %q, %v", tok, err)
	}
	if !c.DeleteCredential("https://models.example.com/") {
		t.Fatal("DeleteCredential = false, want true")
	}
	if c.DeleteCredential("https://models.example.com") {
		t.Fatal("second DeleteCredential = true, want false")
	}
	if tok, err := token(c, "https://models.example.com"); err != nil || tok != "" {
		t.Fatalf("Token after delete = %q, %v", tok, err)
	}
}

func TestCredentialExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		expiry time.Time
		want   bool
	}{
		{time.Time{}, false},
		{now.Add(time.Second), false},
		{now, true},
		{now.Add(-time.Second), true},
	}
	for _, tt := range tests {
		if got := (Credential{Token: "t", Expiry: tt.expiry}).Expired(now); got != tt.want {
			t.Errorf("Expired with expiry %v = %v, want %v", tt.expiry, got, tt.want)
		}
	}
}

func TestConfigTokenPrecedence(t *testing.T) {
	const reg = "https://h"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  file-tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stored := &Config{}
	stored.SetCredential(reg, Credential{Token: "stored-tok"})

	tests := []struct {
		name      string
		cfg       *Config
		env, file string
		want      string
		err       string
	}{
		{name: "nothing", cfg: &Config{}, want: ""},
		{name: "nil config", cfg: nil, want: ""},
		{name: "stored", cfg: stored, want: "stored-tok"},
		{name: "env over stored", cfg: stored, env: "env-tok", want: "env-tok"},
		{name: "env over file", cfg: stored, env: "env-tok", file: tokenFile, want: "env-tok"},
		{name: "env over unreadable file", cfg: stored, env: "env-tok", file: filepath.Join(dir, "missing"), want: "env-tok"},
		{name: "file over stored", cfg: stored, file: tokenFile, want: "file-tok"},
		{name: "file with nil config", cfg: nil, file: tokenFile, want: "file-tok"},
		{name: "unreadable file", cfg: stored, file: filepath.Join(dir, "missing"), err: "missing"},
		{name: "file is a directory", cfg: stored, file: dir, err: EnvTokenFile},
		{name: "empty file", cfg: stored, file: emptyFile, err: "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvToken, tt.env)
			t.Setenv(EnvTokenFile, tt.file)
			got, err := token(tt.cfg, reg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Token = %q, %v; want an error containing %q", got, err, tt.err)
				}
				if strings.Contains(err.Error(), "stored-tok") {
					t.Fatalf("error %q repeats a token", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Token = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigTokenFileRereads(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	t.Setenv(EnvTokenFile, file)
	c := &Config{}

	if err := os.WriteFile(file, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := token(c, "http://h"); err != nil || tok != "first" {
		t.Fatalf("Token = %q, %v; want first", tok, err)
	}
	// Rewritten in place.
	if err := os.WriteFile(file, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := token(c, "http://h"); err != nil || tok != "second" {
		t.Fatalf("Token = %q, %v; want second", tok, err)
	}
	// Replaced by rename, as the kubelet rotates a projected token.
	next := filepath.Join(dir, "token.next")
	if err := os.WriteFile(next, []byte("third\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, file); err != nil {
		t.Fatal(err)
	}
	if tok, err := token(c, "http://h"); err != nil || tok != "third" {
		t.Fatalf("Token = %q, %v; want third", tok, err)
	}
	// Gone: an error, not a silent fallback.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if tok, err := token(c, "http://h"); err == nil {
		t.Fatalf("Token = %q after the file was removed, want an error", tok)
	}
}

func TestConfigTokenFileTooLarge(t *testing.T) {
	clearEnv(t)
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, make([]byte, maxTokenFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvTokenFile, file)
	if _, err := token(&Config{}, "http://h"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Token with a huge file: %v", err)
	}
}

// token resolves reg's token as the CLI does: Default's keychain over cfg.
func token(cfg *Config, reg string) (string, error) {
	return Default(cfg, nil).Resolve(context.Background(), reg)
}
