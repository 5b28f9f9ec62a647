package auth

import (
	"fmt"
	"os"
	"path"
	"slices"

	"sigs.k8s.io/yaml"
)

// Action is what a request does to a repository.
type Action string

// The actions a policy grants. admin implies every other action; push and
// delete imply pull.
const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
	Admin  Action = "admin"
)

// Rule grants actions on repositories to subjects.
type Rule struct {
	// Repositories are globs over "REPOSITORY/NAME" (path.Match; "*" alone
	// means every model).
	Repositories []string `json:"repositories"`
	Actions      []Action `json:"actions"`
	// Users match the identity's name; "*" is any authenticated identity.
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// ServiceAccounts are "NAMESPACE/NAME" globs of Kubernetes service accounts.
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// Robots are robot token names.
	Robots []string `json:"robots,omitempty"`
}

// Policy decides what an identity may do.
type Policy struct {
	// AnonymousPull lets requests without a token pull every model.
	AnonymousPull bool `json:"anonymousPull,omitempty"`
	// AnonymousRepositories lets requests without a token pull these globs.
	AnonymousRepositories []string `json:"anonymousRepositories,omitempty"`
	Rules                 []Rule   `json:"rules,omitempty"`
	// ImmutableTags lists tags that cannot be moved or deleted (immutable.go).
	ImmutableTags []ImmutableTags `json:"immutableTags,omitempty"`
}

// DefaultPolicy applies without a policy file: authenticated identities
// may pull and push everything; anonymous requests may pull only when
// anonymousPull is set. Deleting and garbage collection need a policy.
func DefaultPolicy(anonymousPull bool) *Policy {
	return &Policy{AnonymousPull: anonymousPull, Rules: []Rule{{Repositories: []string{"*"}, Actions: []Action{Pull, Push}, Users: []string{"*"}}}}
}

// LoadPolicy reads and validates a policy file (YAML).
func LoadPolicy(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &p, nil
}

// Validate checks actions and globs.
func (p *Policy) Validate() error {
	check := func(field string, globs []string) error {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s: bad glob %q: %v", field, g, err)
			}
		}
		return nil
	}
	if err := check("anonymousRepositories", p.AnonymousRepositories); err != nil {
		return err
	}
	if err := p.validateImmutableTags(check); err != nil {
		return err
	}
	for i, r := range p.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		if len(r.Repositories) == 0 || len(r.Actions) == 0 {
			return fmt.Errorf("%s: needs repositories and actions", f)
		}
		if len(r.Users)+len(r.Groups)+len(r.ServiceAccounts)+len(r.Robots) == 0 {
			return fmt.Errorf("%s: names no users, groups, serviceAccounts or robots", f)
		}
		for _, a := range r.Actions {
			switch a {
			case Pull, Push, Delete, Admin:
			default:
				return fmt.Errorf("%s: action %q is not one of pull, push, delete, admin", f, a)
			}
		}
		if err := check(f+".repositories", r.Repositories); err != nil {
			return err
		}
		if err := check(f+".serviceAccounts", r.ServiceAccounts); err != nil {
			return err
		}
	}
	return nil
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if g == "*" || g == s {
			return true
		}
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

func grants(have []Action, want Action) bool {
	for _, a := range have {
		if a == want || a == Admin || (want == Pull && (a == Push || a == Delete)) {
			return true
		}
	}
	return false
}

// Allowed reports whether id (nil: anonymous) may do action on the model
// "REPOSITORY/NAME".
func (p *Policy) Allowed(id *Identity, action Action, model string) bool {
	if id == nil {
		return action == Pull && (p.AnonymousPull || matchAny(p.AnonymousRepositories, model))
	}
	for _, r := range p.Rules {
		if !grants(r.Actions, action) || !matchAny(r.Repositories, model) {
			continue
		}
		if p.subjectMatches(r, id) {
			return true
		}
	}
	return false
}

func (p *Policy) subjectMatches(r Rule, id *Identity) bool {
	if slices.Contains(r.Users, "*") || slices.Contains(r.Users, id.Name) {
		return true
	}
	if sa := id.ServiceAccount(); sa != "" && matchAny(r.ServiceAccounts, sa) {
		return true
	}
	if robot := id.Robot(); robot != "" && slices.Contains(r.Robots, robot) {
		return true
	}
	for _, g := range id.Groups {
		if slices.Contains(r.Groups, g) {
			return true
		}
	}
	return false
}

// AnyAnonymous reports whether anonymous requests may pull anything.
func (p *Policy) AnyAnonymous() bool { return p.AnonymousPull || len(p.AnonymousRepositories) > 0 }
