package spec

// ConfigurationPath is where a registry tells clients how to log in.
const ConfigurationPath = "/.well-known/modelx-configuration"

// RegistryConfiguration is what ConfigurationPath answers.
type RegistryConfiguration struct {
	// AuthRequired says whether some requests need a token.
	AuthRequired bool `json:"authRequired"`
	// OIDC names the identity provider of `modelx login`'s device flow.
	OIDC *OIDCLogin `json:"oidc,omitempty"`
}

// OIDCLogin is the identity provider clients log in with.
type OIDCLogin struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"clientID"`
	Scopes   []string `json:"scopes"`
}
