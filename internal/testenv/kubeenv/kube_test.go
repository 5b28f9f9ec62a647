package kubeenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// jwk is the part of a JSON Web Key the test needs (RFC 7517, 7518).
type jwk struct {
	KeyID string `json:"kid"`
	Type  string `json:"kty"`
	Alg   string `json:"alg"`
	Curve string `json:"crv"`
	N     string `json:"n"`
	E     string `json:"e"`
	X     string `json:"x"`
	Y     string `json:"y"`
}

type jwtHeader struct {
	Alg   string `json:"alg"`
	KeyID string `json:"kid"`
}

type jwtClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  []string `json:"aud"`
	Expiry    int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
}

func TestKubeServiceAccountToken(t *testing.T) {
	kube := StartKube(t)
	const ns, name = "team-a", "puller"
	token := kube.ServiceAccountToken(t, ns, name, "modelx", time.Hour)

	var keys struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(kube.JWKS(t), &keys); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	claims := verifyJWT(t, token, keys.Keys)

	if claims.Issuer != kube.Issuer {
		t.Errorf("iss = %q, want %q", claims.Issuer, kube.Issuer)
	}
	if !slices.Equal(claims.Audience, []string{"modelx"}) {
		t.Errorf("aud = %q, want [modelx]", claims.Audience)
	}
	if want := "system:serviceaccount:" + ns + ":" + name; claims.Subject != want {
		t.Errorf("sub = %q, want %q", claims.Subject, want)
	}
	now := time.Now()
	if exp := time.Unix(claims.Expiry, 0); exp.Before(now.Add(50*time.Minute)) || exp.After(now.Add(70*time.Minute)) {
		t.Errorf("exp = %v, want about an hour from %v", exp, now)
	}

	// A second token for the same account reuses the namespace and account.
	if again := kube.ServiceAccountToken(t, ns, name, "other", 10*time.Minute); again == token {
		t.Error("second token equals the first")
	}

	t.Run("AnonymousDiscovery", func(t *testing.T) {
		kube.AllowAnonymousDiscovery(t)
		kube.AllowAnonymousDiscovery(t) // idempotent
		hc := kube.HTTPClient()
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(getOK(t, hc, kube.DiscoveryURL()), &doc); err != nil {
			t.Fatalf("discovery document: %v", err)
		}
		if doc.Issuer != kube.Issuer {
			t.Errorf("discovery issuer = %q, want %q", doc.Issuer, kube.Issuer)
		}
		if want := kube.Issuer + "/openid/v1/jwks"; doc.JWKSURI != want {
			t.Errorf("jwks_uri = %q, want %q", doc.JWKSURI, want)
		}
		var anonKeys struct {
			Keys []jwk `json:"keys"`
		}
		if err := json.Unmarshal(getOK(t, hc, doc.JWKSURI), &anonKeys); err != nil {
			t.Fatalf("anonymous JWKS: %v", err)
		}
		verifyJWT(t, token, anonKeys.Keys)
	})
}

// verifyJWT checks a compact JWS signature (RS256 or ES256) against the key
// set and returns the claims.
func verifyJWT(t *testing.T, token string, keys []jwk) jwtClaims {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	var header jwtHeader
	decodeSegment(t, parts[0], &header)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	i := slices.IndexFunc(keys, func(k jwk) bool { return k.KeyID == header.KeyID })
	if i < 0 {
		t.Fatalf("no key %q in the JWKS", header.KeyID)
	}
	key := keys[i]
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))

	switch header.Alg {
	case "RS256":
		if key.Type != "RSA" {
			t.Fatalf("RS256 token, key type %q", key.Type)
		}
		pub := &rsa.PublicKey{
			N: new(big.Int).SetBytes(decodeB64(t, key.N)),
			E: int(new(big.Int).SetBytes(decodeB64(t, key.E)).Int64()),
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("RS256 signature: %v", err)
		}
	case "ES256":
		if key.Type != "EC" || key.Curve != "P-256" {
			t.Fatalf("ES256 token, key %s/%s", key.Type, key.Curve)
		}
		point := append([]byte{4}, leftPad(decodeB64(t, key.X), 32)...)
		point = append(point, leftPad(decodeB64(t, key.Y), 32)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			t.Fatalf("EC key: %v", err)
		}
		if len(sig) != 64 {
			t.Fatalf("ES256 signature is %d bytes, want 64", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, digest[:], r, s) {
			t.Fatal("ES256 signature does not verify")
		}
	default:
		t.Fatalf("unexpected alg %q", header.Alg)
	}

	var claims jwtClaims
	decodeSegment(t, parts[1], &claims)
	return claims
}

func decodeB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

func decodeSegment(t *testing.T, segment string, v any) {
	t.Helper()
	if err := json.Unmarshal(decodeB64(t, segment), v); err != nil {
		t.Fatalf("JWT segment: %v", err)
	}
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}
