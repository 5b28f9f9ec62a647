package credentials

import (
	"context"
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
