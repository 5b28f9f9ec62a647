package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"modelx.io/modelx/client/transport"
	"modelx.io/modelx/spec"
)

// DeviceCode is what the user must do to finish a device-flow login.
type DeviceCode struct {
	// VerificationURI is where to go; VerificationURIComplete has the code in it.
	VerificationURI         string
	VerificationURIComplete string
	UserCode                string
	ExpiresAt               time.Time
}

// oidcEndpoints are the parts of an issuer's discovery document we use.
type oidcEndpoints struct {
	Issuer                      string `json:"issuer"`
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

func discover(ctx context.Context, hc *http.Client, issuer string) (*oidcEndpoints, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("identity provider %s is unreachable: %w", issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("identity provider %s: discovery answered HTTP %d", issuer, resp.StatusCode)
	}
	var e oidcEndpoints
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil {
		return nil, fmt.Errorf("identity provider %s: bad discovery document: %w", issuer, err)
	}
	if e.Issuer != issuer {
		return nil, fmt.Errorf("identity provider %s calls itself %q; the registry's issuer setting is wrong", issuer, e.Issuer)
	}
	return &e, nil
}

// ErrNoDeviceFlow reports an identity provider that does not offer the
// OAuth device authorization flow: log in with a static token instead.
var ErrNoDeviceFlow = errors.New("does not offer the device flow")

// DeviceLogin runs the OAuth device authorization flow against the
// registry's identity provider: show is called once with the URL and code
// for the user; the call returns when the user has approved (or the code
// expired, or ctx ended).
func DeviceLogin(ctx context.Context, hc *http.Client, login spec.OIDCLogin, show func(DeviceCode)) (Credential, error) {
	if hc == nil {
		hc = transport.DefaultHTTPClient()
	}
	ep, err := discover(ctx, hc, login.Issuer)
	if err != nil {
		return Credential{}, err
	}
	if ep.DeviceAuthorizationEndpoint == "" {
		return Credential{}, fmt.Errorf("identity provider %s %w", login.Issuer, ErrNoDeviceFlow)
	}
	cfg := &oauth2.Config{ClientID: login.ClientID, Scopes: login.Scopes,
		Endpoint: oauth2.Endpoint{DeviceAuthURL: ep.DeviceAuthorizationEndpoint, TokenURL: ep.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return Credential{}, fmt.Errorf("start device login: %w", err)
	}
	show(DeviceCode{VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete, UserCode: da.UserCode, ExpiresAt: da.Expiry})
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return Credential{}, fmt.Errorf("device login: %w", err)
	}
	return credentialOf(tok, ep.TokenEndpoint, login.ClientID)
}

// credentialOf keeps the ID token (its audience is the client ID the
// registry checks) with what refreshing it needs.
func credentialOf(tok *oauth2.Token, tokenURL, clientID string) (Credential, error) {
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		return Credential{}, errors.New("the identity provider returned no ID token; is the openid scope allowed for this client?")
	}
	return Credential{Token: id, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, TokenURL: tokenURL, ClientID: clientID}, nil
}

// refresh trades a credential's refresh token for a new ID token.
func refresh(ctx context.Context, hc *http.Client, c Credential) (Credential, error) {
	cfg := &oauth2.Config{ClientID: c.ClientID, Endpoint: oauth2.Endpoint{TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: c.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return Credential{}, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = c.RefreshToken
	}
	return credentialOf(tok, c.TokenURL, c.ClientID)
}
