package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TokenIssuer signs JWTs with claims a real identity provider will not
// issue (a cluster other than the test's kube-apiserver, a missing
// email_verified), for an issuer the registry trusts through the JWKS file
// at JWKSFile: the tokens go through the same verification as any other.
type TokenIssuer struct {
	// Issuer is the iss claim of every token.
	Issuer string
	// JWKSFile holds the public key, as an auth config's jwksFile names it.
	JWKSFile string
	signer   jose.Signer
}

// NewTokenIssuer makes a signing key for issuer and writes its JWKS file.
func NewTokenIssuer(t testing.TB, issuer string) *TokenIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyID := randomHex(8)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: keyID}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: keyID, Algorithm: string(jose.ES256), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return &TokenIssuer{Issuer: issuer, JWKSFile: file, signer: signer}
}

// Token signs claims for audience, valid for an hour. iss, aud, iat and exp
// are set; claims may override them.
func (ti *TokenIssuer) Token(t testing.TB, audience string, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	all := map[string]any{"iss": ti.Issuer, "aud": audience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	payload, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := ti.signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ServiceAccountToken signs a token shaped like a Kubernetes projected
// service-account token of namespace/name.
func (ti *TokenIssuer) ServiceAccountToken(t testing.TB, namespace, name, audience string) string {
	t.Helper()
	return ti.Token(t, audience, map[string]any{
		"sub": "system:serviceaccount:" + namespace + ":" + name,
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": name, "uid": randomHex(16)},
		},
	})
}
