package reference

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"modelx.io/modelx/spec"
)

// ValidateTag checks a tag name; the error of an invalid one says what a
// tag may hold and suggests a valid one (see SuggestTag).
func ValidateTag(tag string) error {
	err := spec.ValidateTag(tag)
	if err == nil {
		return nil
	}
	msg := specMessage(err)
	if s := SuggestTag(tag); s != "" {
		msg += fmt.Sprintf(`; for example %q`, s)
	}
	return errorf(err, "%s", msg)
}

// SuggestTag turns s into a valid tag, or returns "" when nothing of s is
// left: each run of characters a tag may not hold becomes one '-', leading
// '.' and '-' are dropped, and the result is cut to 128 characters.
func SuggestTag(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		ok := r < utf8.RuneSelf && (r == '_' || r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r))
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimLeft(b.String(), ".-")
	out = strings.TrimRight(out[:min(len(out), 128)], "-")
	if spec.ValidateTag(out) != nil {
		return ""
	}
	return out
}
