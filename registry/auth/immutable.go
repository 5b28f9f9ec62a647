package auth

import (
	"fmt"
	"strings"
)

// ImmutableTags makes tags of some repositories immutable: once such a tag
// names a version it names it for ever; it can be neither moved nor
// deleted, by anyone, while the rule stands.
type ImmutableTags struct {
	// Repositories are globs over "REPOSITORY/NAME", as in Rule.
	Repositories []string `json:"repositories"`
	// Tags are globs over tag names (path.Match), e.g. "v*".
	Tags []string `json:"tags"`
}

// String describes the rule for messages, e.g. `tags ["v*"] of ["prod/*"]`.
func (r ImmutableTags) String() string {
	return fmt.Sprintf("tags [%s] of [%s]", quoteAll(r.Tags), quoteAll(r.Repositories))
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// ImmutableTag returns the rule that makes tag of model ("REPOSITORY/NAME")
// immutable, if any.
func (p *Policy) ImmutableTag(model, tag string) (ImmutableTags, bool) {
	if p == nil {
		return ImmutableTags{}, false
	}
	for _, r := range p.ImmutableTags {
		if matchAny(r.Repositories, model) && matchAny(r.Tags, tag) {
			return r, true
		}
	}
	return ImmutableTags{}, false
}

// validateImmutableTags checks the globs of the immutableTags rules.
func (p *Policy) validateImmutableTags(check func(field string, globs []string) error) error {
	for i, r := range p.ImmutableTags {
		f := fmt.Sprintf("immutableTags[%d]", i)
		if len(r.Repositories) == 0 || len(r.Tags) == 0 {
			return fmt.Errorf("%s: needs repositories and tags", f)
		}
		if err := check(f+".repositories", r.Repositories); err != nil {
			return err
		}
		if err := check(f+".tags", r.Tags); err != nil {
			return err
		}
	}
	return nil
}
