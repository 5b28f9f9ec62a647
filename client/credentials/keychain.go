package credentials

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"modelx.io/modelx/client/transport"
)

// Keychain finds the bearer token for a registry. Implementations are
// safe for concurrent use.
type Keychain interface {
	// Resolve returns the token for the registry at the base URL
	// registry, or "" when it has none for it (the request goes without
	// one). An error means a token should be there and could not be had.
	Resolve(ctx context.Context, registry string) (string, error)
}

// KeychainFunc adapts a function to a Keychain.
type KeychainFunc func(ctx context.Context, registry string) (string, error)

// Resolve calls f.
func (f KeychainFunc) Resolve(ctx context.Context, registry string) (string, error) {
	return f(ctx, registry)
}

// Static is a Keychain that has one token for every registry.
type Static string

// Resolve returns the token.
func (s Static) Resolve(context.Context, string) (string, error) { return string(s), nil }

// Chain is a Keychain that asks its keychains in order: the first token,
// or the first error, is the answer.
type Chain []Keychain

// Resolve asks each keychain in turn until one has a token or fails.
func (c Chain) Resolve(ctx context.Context, registry string) (string, error) {
	for _, k := range c {
		if tok, err := k.Resolve(ctx, registry); err != nil || tok != "" {
			return tok, err
		}
	}
	return "", nil
}

// Environment is the Keychain of the environment, the same token for
// every registry: $MODELX_TOKEN if set (trimmed, not blank); else the
// trimmed content of the file $MODELX_TOKEN_FILE names, read afresh on
// every call (a pod's projected service-account token rotates); else
// none. An unreadable, empty or oversized token file is an error.
type Environment struct{}

// Resolve reads the token from the environment.
func (Environment) Resolve(context.Context, string) (string, error) {
	if tok := strings.TrimSpace(os.Getenv(EnvToken)); tok != "" {
		return tok, nil
	}
	if file := os.Getenv(EnvTokenFile); file != "" {
		return readTokenFile(file)
	}
	return "", nil
}

// readTokenFile reads a token file; messages name the file, never its content.
func readTokenFile(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("read token from %s: %w", EnvTokenFile, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read token from %s: %w", EnvTokenFile, err)
	}
	if len(data) > maxTokenFileSize {
		return "", fmt.Errorf("token file %s (from %s) is larger than %d bytes: is it the right file?", file, EnvTokenFile, maxTokenFileSize)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token file %s (from %s) is empty: write the token there or unset %s", file, EnvTokenFile, EnvTokenFile)
	}
	return tok, nil
}

// Default is the CLI's keychain: the Environment first, then the
// credentials stored in cfg (which may be nil), refreshed through hc.
func Default(cfg *Config, hc *http.Client) Keychain {
	if cfg == nil {
		return Chain{Environment{}}
	}
	return Chain{Environment{}, cfg.Keychain(hc)}
}

// Keychain returns the Keychain of the credentials stored in c: a
// registry's stored token, expired or not, except that an OIDC login
// about to expire (within 30 seconds) is refreshed through hc
// (DefaultHTTPClient if nil) and the configuration saved with the new
// token.
func (c *Config) Keychain(hc *http.Client) Keychain {
	if hc == nil {
		hc = transport.DefaultHTTPClient()
	}
	return &stored{cfg: c, hc: hc}
}

// stored is the Keychain of a configuration's stored credentials.
type stored struct {
	cfg *Config
	hc  *http.Client
	mu  sync.Mutex // guards cfg.Credentials and the refresh
}

// Resolve returns the stored token, refreshed if it is about to expire.
func (s *stored) Resolve(ctx context.Context, registry string) (string, error) {
	if s.cfg == nil {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := credentialKey(registry)
	cred := s.cfg.Credentials[key]
	if cred.Token == "" || cred.RefreshToken == "" || cred.TokenURL == "" || !cred.Expired(time.Now().Add(30*time.Second)) {
		return cred.Token, nil
	}
	fresh, err := refresh(ctx, s.hc, cred)
	if err != nil {
		return "", fmt.Errorf("the login for %s expired and could not be refreshed (%v); run `modelx login %s`", registry, err, registry)
	}
	s.cfg.Credentials[key] = fresh
	if err := s.cfg.Save(); err != nil {
		return "", err
	}
	return fresh.Token, nil
}
