package reference

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Aliases resolves registry aliases, the ALIAS of ALIAS/REPOSITORY/NAME;
// modelx's configuration file is one (credentials.Config).
type Aliases interface {
	// ResolveAlias returns the canonical base URL of the registry alias
	// names. Every error wraps ErrInvalidReference, and ErrUnknownAlias
	// when no alias has that name.
	ResolveAlias(alias string) (string, error)
}

// AliasTable is Aliases from a table: each alias and the registry URL it
// names, as written in Source (a file name for messages, or "").
type AliasTable struct {
	URLs   map[string]string
	Source string
}

// ResolveAlias implements Aliases: an undefined alias's error lists the
// defined ones and says how to define it or write a URL instead; an alias
// whose URL is invalid names Source.
func (t AliasTable) ResolveAlias(alias string) (string, error) {
	raw, ok := t.URLs[alias]
	if !ok {
		fix := fmt.Sprintf("add it with \"modelx repo add %s URL\", or write the registry as a URL, http(s)://HOST[:PORT]", alias)
		if strings.ContainsAny(alias, ".:") {
			fix = fmt.Sprintf("to name the host %s, write the registry as a URL, https://%s or http://%s", alias, alias, alias)
			if ValidateAlias(alias) == nil {
				fix += fmt.Sprintf(", or add the alias with \"modelx repo add %s URL\"", alias)
			}
		}
		return "", errorf(ErrUnknownAlias, "unknown registry alias %q: %s; %s", alias, t.Describe(), fix)
	}
	base, err := CanonicalURL(raw)
	if err != nil {
		where := "the configuration"
		if t.Source != "" {
			where = t.Source
		}
		return "", errorf(err, "registry alias %q in %s has an invalid URL: %v; fix it with \"modelx repo add %s URL\"", alias, where, err, alias)
	}
	return base, nil
}

// Describe lists the defined aliases for an error message.
func (t AliasTable) Describe() string {
	if len(t.URLs) == 0 {
		return `no aliases are defined (see "modelx repo add")`
	}
	return "known aliases are " + strings.Join(slices.Sorted(maps.Keys(t.URLs)), ", ")
}

// resolveAlias resolves alias with aliases, which may be nil (none defined).
func resolveAlias(aliases Aliases, alias string) (string, error) {
	if aliases == nil {
		aliases = AliasTable{}
	}
	return aliases.ResolveAlias(alias)
}

// aliasPattern is the syntax of a registry alias.
var aliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidateAlias checks the syntax of a registry alias: lowercase letters,
// digits, '.', '_' and '-', starting with a letter or digit, at most 64
// characters.
func ValidateAlias(alias string) error {
	switch {
	case alias == "":
		return errors.New("registry alias is empty: use \"modelx repo add NAME URL\"")
	case strings.Contains(alias, "/") || strings.Contains(alias, ":"):
		return fmt.Errorf("registry alias %q looks like a URL: the alias is a short name and the URL comes second, \"modelx repo add NAME URL\"", alias)
	case !aliasPattern.MatchString(alias):
		return fmt.Errorf("registry alias %q is invalid: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64 characters)", alias)
	}
	return nil
}

// CanonicalURL checks a registry URL given alone, http(s)://HOST[:PORT]
// with at most a trailing "/", and returns its canonical form (lowercase
// host, no default port, no trailing slash). Errors wrap
// ErrInvalidReference.
func CanonicalURL(raw string) (string, error) {
	parts, ok := splitURL(raw)
	if !ok {
		if err := checkNoSecrets(raw); err != nil {
			return "", err
		}
		return "", errorf(nil, "registry URL %q has no scheme: use http://HOST[:PORT] or https://HOST[:PORT]", raw)
	}
	base, err := registryFromParts(parts, false)
	if err != nil {
		return "", err
	}
	if parts.path != "" && parts.path != "/" {
		return "", errorf(nil, "registry URL %q has a path: use %s, without a path", raw, base)
	}
	return base, nil
}
