package spec

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

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

// ReservedRepository is the repository name the registry keeps for the
// OCI distribution API, served under /v2/.
const ReservedRepository = "v2"

// ValidateRepository checks a model's repository: a component
// (ValidateComponent) other than ReservedRepository.
func ValidateRepository(s string) error {
	if s == ReservedRepository {
		return Errorf(ErrorNameInvalid, "repository %q is reserved: /%s/ is the registry's OCI distribution API; choose another repository name", s, s)
	}
	return ValidateComponent("repository", s)
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
	if !ok || len(hex) != 64 || !lowerHex(hex) {
		return Errorf(ErrorDigestInvalid, "digest %q is invalid: want sha256:<64 lowercase hex digits>", string(d))
	}
	return nil
}

// lowerHex reports whether s is all lowercase hex digits. A manifest PUT
// checks every file's digest; a table lookup per byte with no branch runs
// about ten times faster than comparing ranges, whose branches hex digits,
// a random mix of 0-9 and a-f, mispredict.
func lowerHex(s string) bool {
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= notLowerHex[s[i]]
	}
	return bad == 0
}

// notLowerHex is 1 for every byte that is not 0-9 or a-f.
var notLowerHex = func() (t [256]byte) {
	for i := range t {
		if (i < '0' || i > '9') && (i < 'a' || i > 'f') {
			t[i] = 1
		}
	}
	return t
}()

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

// PathError is a path ValidatePath refuses, and why.
type PathError struct {
	Path   string
	Reason string // what is wrong with it, e.g. "contains a control character"
}

// Error reads "path "P" REASON".
func (e *PathError) Error() string {
	if e.Path == "" {
		return "path " + e.Reason
	}
	return fmt.Sprintf("path %q %s", e.Path, e.Reason)
}

// ValidatePath checks that p is a clean relative slash-separated path inside a
// model directory: valid UTF-8, not empty, not absolute, no "." or ".."
// element, no empty element, no backslash, no control character, no
// bidirectional control character (see IsBidiControl), and no element that
// is or could stand for a reserved name (see ReservedPathElement).
//
// The registry checks every name of a manifest with it before storing the
// manifest, and a client before it writes a pulled file, so both refuse
// the same names. Its errors are *PathError.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return &PathError{Reason: "is empty"}
	case p[0] == '/':
		return &PathError{Path: p, Reason: "is absolute"}
	}
	// One pass over the runes. unicode.IsControl covers C0, DEL and the
	// C1 controls U+0080-U+009F (U+009B is a terminal's CSI, U+0085 a
	// line break), which r < 0x20 alone let through.
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\':
				return &PathError{Path: p, Reason: "contains a backslash"}
			case c < 0x20 || c == 0x7f:
				return &PathError{Path: p, Reason: "contains a control character"}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(p[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return &PathError{Path: p, Reason: "is not valid UTF-8"}
		case unicode.IsControl(r):
			return &PathError{Path: p, Reason: "contains a control character"}
		case IsBidiControl(r):
			return &PathError{Path: p, Reason: fmt.Sprintf("contains the bidirectional control character U+%04X, which makes text display in another order than it is read", r)}
		}
		i += n
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch elem {
		case "":
			return &PathError{Path: p, Reason: "has an empty element"}
		case ".", "..":
			return &PathError{Path: p, Reason: fmt.Sprintf("has a %q element", elem)}
		}
		if name, ok := ReservedPathElement(elem); ok {
			if elem == name {
				return &PathError{Path: p, Reason: fmt.Sprintf("has the element %q, which is reserved: %s", elem, reservedWhy(name))}
			}
			return &PathError{Path: p, Reason: fmt.Sprintf("has the element %q, which some filesystems treat as %q, a reserved name: %s", elem, name, reservedWhy(name))}
		}
	}
	return nil
}

// IsBidiControl reports whether r is a Unicode bidirectional control
// character, the set behind "Trojan Source" (CVE-2021-42574): the marks
// U+200E, U+200F and U+061C, the embeddings and overrides U+202A-U+202E,
// and the isolates U+2066-U+2069. In a name they make it display as
// another name; ValidatePath refuses them.
func IsBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F:
		return true
	case 0x202A <= r && r <= 0x202E, 0x2066 <= r && r <= 0x2069:
		return true
	}
	return false
}

// ClientStateDir is the directory a client keeps its hash cache and
// partial downloads in, inside a model directory. It is a reserved name.
const ClientStateDir = ".modelx"

// reservedNames are the path elements no manifest may name, with why. This
// table is the one list: ValidatePath refuses them (and what stands for
// them, see ReservedPathElement) for the registry and the client alike.
var reservedNames = []struct {
	name  string // as it appears in a path
	short string // its 8.3 short name on Windows (NTFS, FAT)
	why   string
}{
	{".git", "git~1", "a pulled .git/hooks or .git/config would run code at the next git command in the directory"},
	{ClientStateDir, "modelx~1", "it is the client's state directory (hash cache, partial downloads), which a pull must not overwrite"},
}

// reservedFirstByte marks the ASCII bytes a reserved name or its short
// name begins with, in either case.
var reservedFirstByte = func() (t [utf8.RuneSelf]bool) {
	for _, r := range reservedNames {
		for _, n := range []string{r.name, r.short} {
			t[unicode.ToLower(rune(n[0]))] = true
			t[unicode.ToUpper(rune(n[0]))] = true
		}
	}
	return t
}()

func reservedWhy(name string) string {
	for _, r := range reservedNames {
		if r.name == name {
			return r.why
		}
	}
	return ""
}

// ReservedPathElement reports whether the path element elem is, or on some
// filesystem a pull may write to would open, one of the reserved names
// ".git" and ".modelx" (ClientStateDir), and returns that name. Git refuses
// the same spellings for ".git" (its is_ntfs_dotgit and is_hfs_dotgit):
//
//   - any case: ".GIT", ".Git" (case-insensitive filesystems: Windows, macOS);
//   - trailing dots and spaces: ".git.", ".git " (Windows drops them);
//   - a stream suffix: ".git::$INDEX_ALLOCATION" (NTFS alternate data streams);
//   - the 8.3 short name: "git~1", "GIT~1" (and "modelx~1") on Windows;
//   - with characters HFS+ ignores in names mixed in: ".g\u200cit" (macOS).
func ReservedPathElement(elem string) (name string, reserved bool) {
	if elem != "" && elem[0] < utf8.RuneSelf && !reservedFirstByte[elem[0]] {
		// HFS+ ignores only non-ASCII runes, and no other rune folds to
		// the first letter of a reserved name: most elements stop here.
		return "", false
	}
	for _, r := range reservedNames {
		if sameFileName(elem, r.name) || sameFileName(elem, r.short) {
			return r.name, true
		}
	}
	return "", false
}

// sameFileName reports whether elem opens the file called name (ASCII) on
// some filesystem: case-insensitively, skipping what HFS+ ignores, and
// with trailing dots, spaces and an NTFS stream suffix (":...") dropped.
func sameFileName(elem, name string) bool {
	i := 0
	next := func() (rune, bool) { // the next rune of elem that HFS+ does not ignore
		for i < len(elem) {
			if c := elem[i]; c < utf8.RuneSelf {
				i++
				return rune(c), true
			}
			r, n := utf8.DecodeRuneInString(elem[i:])
			i += n
			if !hfsIgnorable(r) {
				return r, true
			}
		}
		return 0, false
	}
	for j := 0; j < len(name); j++ {
		r, ok := next()
		if !ok || !equalFoldRune(r, rune(name[j])) {
			return false
		}
	}
	for {
		r, ok := next()
		if !ok || r == ':' {
			return true
		}
		if r != '.' && r != ' ' {
			return false
		}
	}
}

// equalFoldRune reports whether r and s are equal under Unicode simple
// case folding, as strings.EqualFold compares them (so U+212A, the Kelvin
// sign, matches 'k').
func equalFoldRune(r, s rune) bool {
	if r == s {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f == s {
			return true
		}
	}
	return false
}

// hfsIgnorable reports whether HFS+ leaves r out when it compares names:
// the zero-width joiners and marks, the bidirectional embeddings, the
// deprecated format characters and the byte order mark (the list git's
// is_hfs_dotgit skips).
func hfsIgnorable(r rune) bool {
	switch {
	case 0x200C <= r && r <= 0x200F, 0x202A <= r && r <= 0x202E, 0x206A <= r && r <= 0x206F, r == 0xFEFF:
		return true
	}
	return false
}
