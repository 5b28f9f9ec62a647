package client

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
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

// configMaxTokenFileSize bounds what Token reads from MODELX_TOKEN_FILE.
const configMaxTokenFileSize = 1 << 20

// configAliasPattern is the syntax of a registry alias.
var configAliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

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
	if err := configValidateAlias(alias); err != nil {
		return err
	}
	base, err := configCanonicalURL(registryURL)
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
		return fmt.Errorf("%w %q: %s", ErrUnknownAlias, alias, c.knownAliases())
	}
	delete(c.Registries, alias)
	return nil
}

// SetCredential stores the login for a registry base URL.
func (c *Config) SetCredential(registryURL string, cred Credential) {
	if c.Credentials == nil {
		c.Credentials = make(map[string]Credential)
	}
	c.Credentials[configCredentialKey(registryURL)] = cred
}

// DeleteCredential forgets the login for a registry base URL and reports
// whether there was one.
func (c *Config) DeleteCredential(registryURL string) bool {
	key := configCredentialKey(registryURL)
	if _, ok := c.Credentials[key]; !ok {
		return false
	}
	delete(c.Credentials, key)
	return true
}

// Token returns the bearer token for a registry base URL: $MODELX_TOKEN if
// set; else the trimmed content of the file $MODELX_TOKEN_FILE names, read
// afresh on every call; else the stored credential's token, expired or not;
// else "". An unreadable or empty token file is an error. c may be nil.
func (c *Config) Token(registryURL string) (string, error) {
	if tok := strings.TrimSpace(os.Getenv(EnvToken)); tok != "" {
		return tok, nil
	}
	if file := os.Getenv(EnvTokenFile); file != "" {
		return configReadTokenFile(file)
	}
	if c == nil {
		return "", nil
	}
	return c.Credentials[configCredentialKey(registryURL)].Token, nil
}

// configReadTokenFile reads a token file; messages name the file, never its content.
func configReadTokenFile(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read token from %s: %w", EnvTokenFile, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, configMaxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read token from %s: %w", EnvTokenFile, err)
	}
	if len(data) > configMaxTokenFileSize {
		return "", fmt.Errorf("token file %s (from %s) is larger than %d bytes: is it the right file?", file, EnvTokenFile, configMaxTokenFileSize)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token file %s (from %s) is empty: write the token there or unset %s", file, EnvTokenFile, EnvTokenFile)
	}
	return tok, nil
}

// hasAlias reports whether alias is defined; c may be nil.
func (c *Config) hasAlias(alias string) bool {
	if c == nil {
		return false
	}
	_, ok := c.Registries[alias]
	return ok
}

// resolveAlias returns the base URL an alias names; c may be nil. Errors
// wrap ErrInvalidReference, and ErrUnknownAlias for an undefined alias.
func (c *Config) resolveAlias(alias string) (string, error) {
	if !c.hasAlias(alias) {
		fix := fmt.Sprintf("add it with \"modelx repo add %s URL\", or write the registry as a URL, http(s)://HOST[:PORT]", alias)
		if strings.ContainsAny(alias, ".:") {
			fix = fmt.Sprintf("to name the host %s, write the registry as a URL, https://%s or http://%s", alias, alias, alias)
			if configValidateAlias(alias) == nil {
				fix += fmt.Sprintf(", or add the alias with \"modelx repo add %s URL\"", alias)
			}
		}
		return "", refErrorf(ErrUnknownAlias, "unknown registry alias %q: %s; %s", alias, c.knownAliases(), fix)
	}
	base, err := configCanonicalURL(c.Registries[alias].URL)
	if err != nil {
		where := "the configuration"
		if c.path != "" {
			where = c.path
		}
		return "", refErrorf(err, "registry alias %q in %s has an invalid URL: %v; fix it with \"modelx repo add %s URL\"", alias, where, err, alias)
	}
	return base, nil
}

// knownAliases lists the defined aliases for an error message; c may be nil.
func (c *Config) knownAliases() string {
	if c == nil || len(c.Registries) == 0 {
		return `no aliases are defined (see "modelx repo add")`
	}
	return "known aliases are " + strings.Join(slices.Sorted(maps.Keys(c.Registries)), ", ")
}

// configValidateAlias checks the syntax of a registry alias.
func configValidateAlias(alias string) error {
	switch {
	case alias == "":
		return errors.New("registry alias is empty: use \"modelx repo add NAME URL\"")
	case strings.Contains(alias, "/") || strings.Contains(alias, ":"):
		return fmt.Errorf("registry alias %q looks like a URL: the alias is a short name and the URL comes second, \"modelx repo add NAME URL\"", alias)
	case !configAliasPattern.MatchString(alias):
		return fmt.Errorf("registry alias %q is invalid: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64 characters)", alias)
	}
	return nil
}

// configCanonicalURL checks a registry URL given alone, http(s)://HOST[:PORT]
// with at most a trailing "/", and returns its canonical form.
func configCanonicalURL(raw string) (string, error) {
	parts, ok := refSplitURL(raw)
	if !ok {
		if err := refCheckNoSecrets(raw); err != nil {
			return "", err
		}
		return "", refErrorf(nil, "registry URL %q has no scheme: use http://HOST[:PORT] or https://HOST[:PORT]", raw)
	}
	base, err := refRegistryFromParts(parts, false)
	if err != nil {
		return "", err
	}
	if parts.path != "" && parts.path != "/" {
		return "", refErrorf(nil, "registry URL %q has a path: use %s, without a path", raw, base)
	}
	return base, nil
}

// configCredentialKey is the map key of a registry's credential: its
// canonical base URL when it parses, else the URL without a trailing slash.
func configCredentialKey(registryURL string) string {
	if base, err := configCanonicalURL(registryURL); err == nil {
		return base
	}
	return strings.TrimSuffix(registryURL, "/")
}
