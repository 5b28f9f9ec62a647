package client

import "modelx.io/modelx/client/reference"

// Reference names a model version on a registry; see reference.Reference.
type Reference = reference.Reference

// ParseReference parses a model reference; see reference.ParseReference.
func ParseReference(s string, aliases reference.Aliases) (Reference, error) {
	return reference.ParseReference(s, aliases)
}
