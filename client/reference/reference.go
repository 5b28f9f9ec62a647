// Package reference parses what names a model version on a registry,
// http(s)://HOST[:PORT]/REPOSITORY/NAME[:TAG|@sha256:HEX],
// modelx://HOST[:PORT]/REPOSITORY/NAME[?insecure=true] or
// ALIAS/REPOSITORY/NAME, and a registry given alone. Errors wrap
// ErrInvalidReference and never repeat credentials or query strings.
package reference

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// DefaultTag is the tag a reference without a tag or digest names.
const DefaultTag = "latest"

// ErrInvalidReference is wrapped by every error of ParseReference and
// ParseRegistry, so callers can tell a malformed argument from other failures.
var ErrInvalidReference = errors.New("invalid reference")

// ErrUnknownAlias is wrapped when a registry alias is not defined.
var ErrUnknownAlias = errors.New("unknown registry alias")

// usage is the syntax hint that error messages end with.
const usage = `use http(s)://HOST[:PORT]/REPOSITORY/NAME[:TAG], ALIAS/REPOSITORY/NAME[:TAG] or modelx://HOST[:PORT]/REPOSITORY/NAME[:TAG][?insecure=true]`

// Reference names a model version on a registry.
type Reference struct {
	// Registry is the registry's base URL, "http(s)://HOST[:PORT]", with a
	// lowercase host, no default port and no trailing slash.
	Registry   string
	Repository string
	Name       string
	// Tag is the version's tag; empty when Digest is set.
	Tag string
	// Digest pins the version by manifest digest, for "@sha256:..." references.
	Digest digest.Digest
	// Files and ModelFiles select what a pull writes. They come from the
	// query of a modelx:// URI (file=GLOB, repeatable; model-files=true or
	// auto, auto meaning modelFiles when modelx.yaml lists any), so the
	// storage-initializer form can carry the selection.
	Files      []string
	ModelFiles string
	// ServiceAccount is set by modelx://serviceaccount@HOST/...: the pull
	// authenticates with the pod's projected service-account token
	// (MODELX_TOKEN_FILE). The user information is a marker, never a
	// credential; on KServe it selects the ClusterStorageContainer that
	// mounts the token.
	ServiceAccount bool
}

// ServiceAccountUserInfo is the one user information a modelx:// URI may
// carry: modelx://serviceaccount@HOST/... (Reference.ServiceAccount).
const ServiceAccountUserInfo = "serviceaccount"

// ParseReference parses a model reference. It accepts
//
//	http(s)://HOST[:PORT]/REPOSITORY/NAME[VERSION]
//	modelx://[serviceaccount@]HOST[:PORT]/REPOSITORY/NAME[VERSION][?insecure=true]
//	ALIAS/REPOSITORY/NAME[VERSION]
//
// where VERSION is ":TAG", "@TAG" or "@sha256:HEX" and defaults to ":latest",
// modelx:// means https (http with insecure=true), and ALIAS is a registry
// alias that aliases resolves (aliases may be nil: none is defined). Every
// error wraps ErrInvalidReference and never repeats credentials or query
// strings found in s.
func ParseReference(s string, aliases Aliases) (Reference, error) {
	if s == "" {
		return Reference{}, errorf(nil, "reference is empty: %s", usage)
	}
	var (
		ref  Reference
		path string
	)
	if parts, ok := splitURL(s); ok {
		if rest, found := strings.CutPrefix(parts.authority, ServiceAccountUserInfo+"@"); found && parts.scheme == "modelx" {
			parts.authority, ref.ServiceAccount = rest, true
		}
		base, err := registryFromParts(parts, true)
		if err != nil {
			return Reference{}, err
		}
		ref.Registry = base
		if parts.scheme == "modelx" {
			q, _ := url.ParseQuery(parts.query) // validated by registryFromParts
			ref.Files, ref.ModelFiles = q["file"], q.Get("model-files")
		}
		path = strings.TrimPrefix(parts.path, "/")
		if path == "" {
			return Reference{}, errorf(nil, "reference %q names no model: %s", s, usage)
		}
	} else {
		if err := checkNoSecrets(s); err != nil {
			return Reference{}, err
		}
		alias, rest, found := strings.Cut(s, "/")
		base, err := resolveAlias(aliases, alias)
		if !found || (errors.Is(err, ErrUnknownAlias) && !strings.Contains(rest, "/")) {
			// "bert" or "nlp/bert:v1": most likely the registry was left out.
			return Reference{}, errorf(nil, "reference %q has no registry: use http(s)://HOST[:PORT]/REPOSITORY/NAME[:TAG] or add an alias with \"modelx repo add NAME URL\"", s)
		}
		if err != nil {
			return Reference{}, err
		}
		ref.Registry = base
		path = rest
	}
	if err := ref.setPath(s, path); err != nil {
		return Reference{}, err
	}
	return ref, nil
}

// ParseRegistry parses a registry given alone, as "http(s)://HOST[:PORT]"
// (a trailing "/" is allowed), "modelx://HOST[:PORT][?insecure=true]" or an
// alias that aliases (which may be nil) resolves, and returns its canonical
// base URL. Every error wraps ErrInvalidReference.
func ParseRegistry(s string, aliases Aliases) (string, error) {
	if s == "" {
		return "", errorf(nil, "registry is empty: use http(s)://HOST[:PORT] or an alias added with \"modelx repo add NAME URL\"")
	}
	if parts, ok := splitURL(s); ok {
		base, err := registryFromParts(parts, true)
		if err != nil {
			return "", err
		}
		if parts.path != "" && parts.path != "/" {
			return "", errorf(nil, "registry %q has a path: a registry is only http(s)://HOST[:PORT], without /REPOSITORY/NAME", s)
		}
		return base, nil
	}
	if err := checkNoSecrets(s); err != nil {
		return "", err
	}
	if strings.Contains(s, "/") {
		return "", errorf(nil, "registry %q is neither a URL nor an alias: use http(s)://HOST[:PORT] or an alias added with \"modelx repo add NAME URL\"", s)
	}
	return resolveAlias(aliases, s)
}

// String returns the canonical form "REGISTRY/REPOSITORY/NAME@TAG" or
// "REGISTRY/REPOSITORY/NAME@sha256:HEX", which ParseReference accepts.
func (r Reference) String() string {
	return r.Registry + "/" + r.Model() + "@" + r.ManifestRef()
}

// Model returns "REPOSITORY/NAME".
func (r Reference) Model() string {
	return r.Repository + "/" + r.Name
}

// ManifestRef returns the digest if set, else the tag (DefaultTag if empty):
// the {reference} of /{repository}/{name}/manifests/{reference}.
func (r Reference) ManifestRef() string {
	switch {
	case r.Digest != "":
		return string(r.Digest)
	case r.Tag != "":
		return r.Tag
	}
	return DefaultTag
}

// setPath parses "REPOSITORY/NAME[VERSION]" into r; s is the whole reference,
// for messages.
func (r *Reference) setPath(s, path string) error {
	elems := strings.Split(path, "/")
	if slices.Contains(elems, "") {
		return errorf(nil, "reference %q has an empty path element: %s", s, usage)
	}
	switch {
	case len(elems) < 2:
		return errorf(nil, "reference %q names no repository: REPOSITORY/NAME has exactly two parts; %s", s, usage)
	case len(elems) > 2:
		return errorf(nil, "reference %q has %d path elements after the registry, %q: REPOSITORY/NAME has exactly two parts", s, len(elems), path)
	}
	repo, last := elems[0], elems[1]

	// The version separator is looked for only in the last element, so a
	// port ("host:8080") is never taken for a tag.
	name, version, sep := last, "", ""
	if i := strings.IndexAny(last, ":@"); i >= 0 {
		name, version, sep = last[:i], last[i+1:], last[i:i+1]
	}
	if sep == ":" && strings.Contains(version, "@") {
		v := version[strings.Index(version, "@")+1:]
		if strings.Contains(v, ":") {
			return errorf(nil, "reference %q has both a tag and a digest: drop the tag, the digest alone names the version", s)
		}
		return errorf(nil, "reference %q has two tags: use NAME:TAG or NAME@TAG", s)
	}

	if err := spec.ValidateRepository(repo); err != nil {
		return errorf(err, "reference %q: %s", s, specMessage(err))
	}
	if err := spec.ValidateComponent("name", name); err != nil {
		return errorf(err, "reference %q: %s", s, specMessage(err))
	}
	r.Repository, r.Name = repo, name

	switch {
	case sep == "":
		r.Tag = DefaultTag
	case sep == "@" && strings.Contains(version, ":"):
		d := digest.Digest(version)
		if err := spec.ValidateDigest(d); err != nil {
			return errorf(err, "reference %q: %s", s, specMessage(err))
		}
		r.Digest = d
	case sep == ":" && strings.HasPrefix(version, string(digest.SHA256)+":"):
		return errorf(nil, "reference %q has a digest after ':': write NAME@sha256:HEX", s)
	default:
		if err := spec.ValidateTag(version); err != nil {
			return errorf(err, "reference %q: %s", s, specMessage(err))
		}
		r.Tag = version
	}
	return nil
}

// urlParts is a URL-shaped argument split by hand: net/url would take the
// '@' of "NAME@TAG" for user information and reject "NAME:TAG" in odd places.
type urlParts struct {
	scheme    string // lowercase
	authority string // HOST[:PORT], possibly with user information
	path      string // from the first '/', up to '?' or '#'
	query     string
	hasQuery  bool
	hasFrag   bool
}

// splitURL splits s if it has a "SCHEME://" prefix.
func splitURL(s string) (urlParts, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return urlParts{}, false
	}
	p := urlParts{scheme: strings.ToLower(scheme)}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest, p.hasFrag = rest[:i], true
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, p.query, p.hasQuery = rest[:i], rest[i+1:], true
	}
	p.authority, p.path = rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		p.authority, p.path = rest[:i], rest[i:]
	}
	return p, true
}

// registryFromParts checks the scheme, authority and query of a split URL
// and returns the canonical base URL. modelx:// is allowed if allowModelx.
// Messages never repeat the user information or the query.
func registryFromParts(p urlParts, allowModelx bool) (string, error) {
	if strings.Contains(p.authority, "@") {
		return "", errorf(nil, "registry URL contains credentials (USER@HOST): secrets never go in URLs; remove them and log in with \"modelx login REGISTRY\"")
	}
	if p.hasFrag {
		return "", errorf(nil, "registry URL %s://%s has a fragment (#...): remove it", p.scheme, p.authority)
	}
	scheme := p.scheme
	switch {
	case scheme == "http" || scheme == "https":
		if p.hasQuery {
			return "", errorf(nil, "registry URL %s://%s has a query (?...): remove it; only modelx:// takes ?insecure=true", scheme, p.authority)
		}
	case scheme == "modelx" && allowModelx:
		insecure, err := parseModelxQuery(p)
		if err != nil {
			return "", err
		}
		scheme = "https"
		if insecure {
			scheme = "http"
		}
	default:
		want := "http:// or https://"
		if allowModelx {
			want = "http://, https:// or modelx://"
		}
		return "", errorf(nil, "registry URL scheme %q is not supported: use %s", p.scheme, want)
	}
	return canonicalBase(scheme, p.authority)
}

// parseModelxQuery checks the query of a modelx:// URI and reads insecure.
func parseModelxQuery(p urlParts) (insecure bool, err error) {
	const params = "insecure=true, file=GLOB and model-files=true|auto"
	q, err := url.ParseQuery(p.query)
	if err != nil {
		return false, errorf(nil, "modelx://%s has a malformed query: the parameters are %s", p.authority, params)
	}
	for key, values := range q {
		switch key {
		case "file":
			continue
		case "model-files":
			if len(values) != 1 || (values[0] != "true" && values[0] != "auto" && values[0] != "false") {
				return false, errorf(nil, "modelx://%s has model-files=%q: use model-files=true or model-files=auto, once", p.authority, values)
			}
			continue
		case "insecure":
		default:
			return false, errorf(nil, "modelx://%s has an unknown query parameter %q: the parameters are %s", p.authority, key, params)
		}
		if len(values) != 1 {
			return false, errorf(nil, "modelx://%s gives insecure more than once: give it once", p.authority)
		}
		if insecure, err = strconv.ParseBool(values[0]); err != nil {
			return false, errorf(nil, "modelx://%s has insecure=%q: use insecure=true or insecure=false", p.authority, values[0])
		}
	}
	return insecure, nil
}

// canonicalBase checks HOST[:PORT] and returns "scheme://host[:port]"
// with a lowercase host and without the scheme's default port.
func canonicalBase(scheme, authority string) (string, error) {
	if authority == "" {
		return "", errorf(nil, "registry URL %s:// has no host: use %s://HOST[:PORT]", scheme, scheme)
	}
	u, err := url.Parse(scheme + "://" + authority)
	if err != nil || u.Hostname() == "" || u.User != nil {
		return "", errorf(nil, "registry URL %s://%s has an invalid host: use %s://HOST[:PORT]", scheme, authority, scheme)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	// An IPv6 zone ("[fe80::1%25eth0]") comes back from Hostname unescaped,
	// and "http://[fe80::1%eth0]" does not parse again: write it escaped,
	// and as given (interface names are case-sensitive). A '%' anywhere
	// else ("a%25b") is not a host.
	if addr, zone, ok := strings.Cut(u.Hostname(), "%"); ok {
		if !strings.Contains(addr, ":") || zone == "" || strings.IndexFunc(zone, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-')
		}) >= 0 {
			return "", errorf(nil, "registry URL %s://%s has an invalid host: use %s://HOST[:PORT]", scheme, authority, scheme)
		}
		host = strings.ToLower(addr) + "%25" + zone
	}
	if strings.HasSuffix(u.Host, ":") {
		return "", errorf(nil, "registry URL %s://%s has an empty port: drop the ':' or give a port", scheme, authority)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", errorf(nil, "registry URL %s://%s has an invalid port: use 1 to 65535", scheme, authority)
		}
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = ""
		} else {
			port = strconv.Itoa(n)
		}
	}
	if port != "" {
		return scheme + "://" + net.JoinHostPort(host, port), nil
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6 literal
	}
	return scheme + "://" + host, nil
}

// checkNoSecrets rejects a scheme-less argument that carries user
// information or a query, before anything repeats it in a message.
func checkNoSecrets(s string) error {
	first, _, _ := strings.Cut(s, "/")
	switch {
	case strings.Contains(first, "@"):
		return errorf(nil, "reference contains credentials (USER@HOST): secrets never go in references; remove them and log in with \"modelx login REGISTRY\"")
	case strings.ContainsAny(s, "?#"):
		return errorf(nil, "reference has a query or fragment (?... or #...): only modelx://HOST/REPOSITORY/NAME?insecure=true takes one")
	}
	return nil
}

// specMessage returns the message of a spec validation error without its
// API error code, which means nothing to a CLI user.
func specMessage(err error) string {
	var e *spec.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// parseError is a parse error: its message, and the sentinels and cause it wraps.
type parseError struct {
	msg   string
	wraps []error
}

func (e *parseError) Error() string   { return e.msg }
func (e *parseError) Unwrap() []error { return e.wraps }

// errorf returns an error wrapping ErrInvalidReference and cause (if not nil).
func errorf(cause error, format string, args ...any) error {
	e := &parseError{msg: fmt.Sprintf(format, args...), wraps: []error{ErrInvalidReference}}
	if cause != nil {
		e.wraps = append(e.wraps, cause)
	}
	return e
}
