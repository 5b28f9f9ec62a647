// Package credentials finds the bearer token a registry request carries.
// A Keychain resolves a registry's token: from the environment
// (MODELX_TOKEN, MODELX_TOKEN_FILE), from the credentials stored in the
// configuration file (refreshing an OIDC login about to expire), a static
// token, or a Chain of those. The configuration file also holds registry
// aliases, which reference.ParseReference resolves through it.
package credentials
