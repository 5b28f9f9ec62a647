package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"modelx.io/modelx/client/reference"
)

// Environment variables the configuration reads.
const (
	// EnvConfig names the configuration file, instead of DefaultConfigPath's default.
	EnvConfig = "MODELX_CONFIG"
	// EnvToken is a bearer token used for every registry, before any other.
	EnvToken = "MODELX_TOKEN"
	// EnvTokenFile names a file holding the bearer token, re-read on every
	// request (a pod's projected service-account token rotates).
	EnvTokenFile = "MODELX_TOKEN_FILE"
)

// maxTokenFileSize bounds what Environment reads from MODELX_TOKEN_FILE.
const maxTokenFileSize = 1 << 20

// Config is the CLI's configuration: registry aliases and stored credentials.
// The zero value is an empty configuration that cannot be saved; use LoadConfig.
type Config struct {
	// Registries are the registry aliases, by alias.
	Registries map[string]RegistryConfig `json:"registries,omitempty"`
	// Credentials are the stored logins, by canonical registry base URL.
	Credentials map[string]Credential `json:"credentials,omitempty"`

	path string // where it was loaded from, and where Save writes
}

// RegistryConfig is one registry alias.
type RegistryConfig struct {
	// URL is the registry's canonical base URL, "http(s)://HOST[:PORT]".
	URL string `json:"url"`
}

// Credential is a stored login for one registry.
type Credential struct {
	Token        string    `json:"token,omitempty"`
	RefreshToken string    `json:"refreshToken,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// TokenURL and ClientID let the refresh token be used (OIDC logins).
	TokenURL string `json:"tokenURL,omitempty"`
	ClientID string `json:"clientID,omitempty"`
}

// Expired reports whether the credential has an expiry that is not after now.
func (c Credential) Expired(now time.Time) bool {
	return !c.Expiry.IsZero() && !c.Expiry.After(now)
}

// DefaultConfigPath returns $MODELX_CONFIG if set, else
// os.UserConfigDir()/modelx/config.yaml.
func DefaultConfigPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory: %w; set %s to the configuration file's path", err, EnvConfig)
	}
	return filepath.Join(dir, "modelx", "config.yaml"), nil
}

// LoadConfig reads the YAML configuration at path. A missing file is an
// empty configuration, not an error. A file readable by others is still
// loaded; Save rewrites it with mode 0600. Unknown fields are ignored, so
// an older modelx reads a newer file.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return nil, errors.New("configuration path is empty")
	}
	c := &Config{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err) // *PathError names the file
	}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("configuration %s is not valid YAML: %w; fix or remove the file", path, err)
	}
	return c, nil
}

// Path returns the file the configuration was loaded from and is saved to.
func (c *Config) Path() string { return c.path }

// Save writes the configuration as YAML to its path, atomically: a temp file
// in the same directory with mode 0600, fsynced, then renamed over the old
// file. A missing directory is created with mode 0700. If the path is a
// symbolic link, the file it points to is replaced.
func (c *Config) Save() error {
	if c.path == "" {
		return errors.New("configuration has no path: load it with LoadConfig")
	}
	path := c.path
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close() // may already be closed
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	committed = true
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// AddRegistry sets alias to name the registry at registryURL, replacing any
// registry the alias named. The alias is lowercase letters, digits, '.', '_'
// and '-', starting with a letter or digit; the URL is http(s)://HOST[:PORT]
// with at most a trailing "/", no query and no credentials. The URL is
// stored in canonical form (lowercase host, no default port, no trailing slash).
func (c *Config) AddRegistry(alias, registryURL string) error {
	if err := reference.ValidateAlias(alias); err != nil {
		return err
	}
	base, err := reference.CanonicalURL(registryURL)
	if err != nil {
		return err
	}
	if c.Registries == nil {
		c.Registries = make(map[string]RegistryConfig)
	}
	c.Registries[alias] = RegistryConfig{URL: base}
	return nil
}

// RemoveRegistry deletes an alias; an unknown alias is an error wrapping
// ErrUnknownAlias that lists the known ones. Stored credentials are kept:
// they belong to the registry URL, which other aliases may name.
func (c *Config) RemoveRegistry(alias string) error {
	if _, ok := c.Registries[alias]; !ok {
		return fmt.Errorf("%w %q: %s", reference.ErrUnknownAlias, alias, c.aliases().Describe())
	}
	delete(c.Registries, alias)
	return nil
}

// SetCredential stores the login for a registry base URL.
func (c *Config) SetCredential(registryURL string, cred Credential) {
	if c.Credentials == nil {
		c.Credentials = make(map[string]Credential)
	}
	c.Credentials[credentialKey(registryURL)] = cred
}

// DeleteCredential forgets the login for a registry base URL and reports
// whether there was one.
func (c *Config) DeleteCredential(registryURL string) bool {
	key := credentialKey(registryURL)
	if _, ok := c.Credentials[key]; !ok {
		return false
	}
	delete(c.Credentials, key)
	return true
}

// ResolveAlias implements reference.Aliases with the configuration's
// registry aliases; c may be nil (no alias is defined).
func (c *Config) ResolveAlias(alias string) (string, error) {
	return c.aliases().ResolveAlias(alias)
}

// aliases is the configuration's alias table; c may be nil.
func (c *Config) aliases() reference.AliasTable {
	if c == nil {
		return reference.AliasTable{}
	}
	t := reference.AliasTable{URLs: make(map[string]string, len(c.Registries)), Source: c.path}
	for alias, r := range c.Registries {
		t.URLs[alias] = r.URL
	}
	return t
}

// credentialKey is the map key of a registry's credential: its
// canonical base URL when it parses, else the URL without a trailing slash.
func credentialKey(registryURL string) string {
	if base, err := reference.CanonicalURL(registryURL); err == nil {
		return base
	}
	return strings.TrimSuffix(registryURL, "/")
}
