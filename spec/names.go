package spec

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/opencontainers/go-digest"
)

var (
	componentPattern = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)
	tagPattern       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// MaxComponentLength bounds a repository or model name.
const MaxComponentLength = 128

// ValidateComponent checks a repository or model name: lowercase letters and
// digits, separated by single '.', '_' or '-'. what names the field in the error.
func ValidateComponent(what, s string) error {
	if s == "" {
		return Errorf(ErrorNameInvalid, "%s is empty", what)
	}
	if len(s) > MaxComponentLength || !componentPattern.MatchString(s) {
		return Errorf(ErrorNameInvalid, "%s %q is invalid: use lowercase letters and digits, separated by single '.', '_' or '-' (at most %d characters)", what, s, MaxComponentLength)
	}
	return nil
}

// ValidateTag checks a tag: letters, digits, '_', '.', '-', not starting with
// '.' or '-', at most 128 characters.
func ValidateTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return Errorf(ErrorReferenceInvalid, "tag %q is invalid: use letters, digits, '_', '.' and '-', not starting with '.' or '-' (at most 128 characters)", tag)
	}
	return nil
}

// ValidateDigest checks that d is a well-formed sha256 digest, the only
// algorithm the registry stores by.
func ValidateDigest(d digest.Digest) error {
	hex, ok := strings.CutPrefix(string(d), "sha256:")
	if !ok || len(hex) != 64 || strings.IndexFunc(hex, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) >= 0 {
		return Errorf(ErrorDigestInvalid, "digest %q is invalid: want sha256:<64 lowercase hex digits>", string(d))
	}
	return nil
}

// Reference is the last path element of a manifest URL: a tag or a digest.
type Reference struct {
	Tag    string
	Digest digest.Digest
}

// ParseReference parses a tag or a "sha256:" digest.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d := digest.Digest(s)
		if err := ValidateDigest(d); err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}

// String returns the tag or the digest.
func (r Reference) String() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// ValidatePath checks that p is a clean relative slash-separated path inside a
// model directory: not empty, not absolute, no "." or ".." element, no empty
// element, no backslash or control character.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case strings.ContainsAny(p, "\\"):
		return fmt.Errorf("path %q contains a backslash", p)
	}
	// unicode.IsControl covers C0, DEL and the C1 controls U+0080-U+009F
	// (U+009B is a terminal's CSI, U+0085 a line break), which r < 0x20
	// alone let through.
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return fmt.Errorf("path %q contains a control character", p)
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "":
			return fmt.Errorf("path %q has an empty element", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q element", p, elem)
		}
	}
	return nil
}
