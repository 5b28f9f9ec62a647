package auth

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Action is what a request does to a repository.
type Action string

// The actions a policy grants. admin implies every other action; push and
// delete imply hold; push, delete and hold imply pull.
const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
	// Hold puts and releases holds, which keep versions from garbage
	// collection (a deploy controller's right).
	Hold  Action = "hold"
	Admin Action = "admin"
)

// Rule grants actions on repositories to subjects.
type Rule struct {
	// Repositories are globs over "REPOSITORY/NAME" (path.Match; "*" alone
	// means every model).
	Repositories []string `json:"repositories"`
	Actions      []Action `json:"actions"`
	// Users are user names (with their issuer's usernamePrefix); they match
	// users only, except "*", which is any authenticated identity.
	Users []string `json:"users,omitempty"`
	// Groups match the groups of users and robots.
	Groups []string `json:"groups,omitempty"`
	// ServiceAccounts are "CLUSTER/NAMESPACE/NAME" globs (path.Match) of
	// Kubernetes service accounts; CLUSTER is an issuer's cluster name,
	// written out. They match service accounts only.
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// Robots are robot names; they match robots only.
	Robots []string `json:"robots,omitempty"`
}

// Policy decides what an identity may do.
type Policy struct {
	// AnonymousPull lets requests without a token pull every model, and so
	// every authenticated identity too.
	AnonymousPull bool `json:"anonymousPull,omitempty"`
	// AnonymousRepositories lets requests without a token, and so every
	// authenticated identity, pull these globs.
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
			case Pull, Push, Delete, Hold, Admin:
			default:
				return fmt.Errorf("%s: action %q is not one of pull, push, delete, hold, admin", f, a)
			}
		}
		if err := check(f+".repositories", r.Repositories); err != nil {
			return err
		}
		if err := check(f+".serviceAccounts", r.ServiceAccounts); err != nil {
			return err
		}
		for _, sa := range r.ServiceAccounts {
			if err := checkServiceAccountEntry(sa); err != nil {
				return fmt.Errorf("%s.serviceAccounts: %w", f, err)
			}
		}
	}
	return nil
}

// checkServiceAccountEntry refuses a serviceAccounts entry that is not
// CLUSTER/NAMESPACE/NAME with the cluster written out, such as the
// NAMESPACE/NAME entries of earlier versions.
func checkServiceAccountEntry(entry string) error {
	parts := strings.Split(entry, "/")
	if len(parts) == 2 {
		return fmt.Errorf("%q names no cluster: write CLUSTER/%s, where CLUSTER is the cluster name (cluster:) of the issuer in --auth-config whose service accounts it means", entry, entry)
	}
	if len(parts) != 3 {
		return fmt.Errorf("%q is not CLUSTER/NAMESPACE/NAME (e.g. prod/serving/* for every service account of namespace serving in cluster prod)", entry)
	}
	if !validClusterName.MatchString(parts[0]) {
		return fmt.Errorf("%q: write the cluster out (a cluster name as in the auth config, no glob); list one entry per cluster", entry)
	}
	return nil
}

// CheckClusters refuses serviceAccounts entries whose cluster is not one of
// clusters, the cluster names of the auth config's issuers: such a rule
// could never match.
func (p *Policy) CheckClusters(clusters []string) error {
	for i, r := range p.Rules {
		for _, sa := range r.ServiceAccounts {
			cluster, _, _ := strings.Cut(sa, "/")
			if !slices.Contains(clusters, cluster) {
				return fmt.Errorf("rules[%d].serviceAccounts: %q names cluster %q, but no issuer in the auth config has `cluster: %s`; mark that cluster's service-account issuer in --auth-config with it", i, sa, cluster, cluster)
			}
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

// grants reports whether a rule's actions include want, directly or by
// implication.
func grants(have []Action, want Action) bool {
	for _, a := range have {
		switch {
		case a == want || a == Admin:
			return true
		case want == Pull && (a == Push || a == Delete || a == Hold):
			return true
		case want == Hold && (a == Push || a == Delete):
			return true
		}
	}
	return false
}

// Allowed reports whether id (nil: anonymous) may do action on the model
// "REPOSITORY/NAME". Every identity may do what anonymous requests may.
func (p *Policy) Allowed(id *Identity, action Action, model string) bool {
	if action == Pull && (p.AnonymousPull || matchAny(p.AnonymousRepositories, model)) {
		return true
	}
	if id == nil {
		return false
	}
	for _, r := range p.Rules {
		if !grants(r.Actions, action) || !matchAny(r.Repositories, model) {
			continue
		}
		if subjectMatches(r, id) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether a rule names the identity: each field
// matches only its own kind of identity.
func subjectMatches(r Rule, id *Identity) bool {
	if slices.Contains(r.Users, "*") {
		return true
	}
	switch id.Kind {
	case KindUser:
		if slices.Contains(r.Users, id.Name) {
			return true
		}
	case KindRobot:
		if slices.Contains(r.Robots, id.Name) {
			return true
		}
	case KindServiceAccount:
		for _, g := range r.ServiceAccounts {
			if ok, _ := path.Match(g, id.Name); ok {
				return true
			}
		}
		return false // service accounts have no groups
	default:
		return false
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
