package auth

import (
	"strings"
	"testing"
)

func TestPolicyAllowed(t *testing.T) {
	p := &Policy{
		AnonymousRepositories: []string{"public/*"},
		Rules: []Rule{
			{Repositories: []string{"nlp/*"}, Actions: []Action{Push}, Users: []string{"alice"}},
			{Repositories: []string{"nlp/bert"}, Actions: []Action{Delete}, Groups: []string{"ml"}},
			{Repositories: []string{"*"}, Actions: []Action{Admin}, Groups: []string{"admins"}},
			{Repositories: []string{"serving/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/*"}},
			{Repositories: []string{"ci/*"}, Actions: []Action{Push}, Robots: []string{"ci"}},
		},
	}
	alice := &Identity{Name: "alice"}
	ml := &Identity{Name: "bob", Groups: []string{"ml"}}
	admin := &Identity{Name: "root", Groups: []string{"admins"}}
	sa := &Identity{Name: "system:serviceaccount:prod:puller"}
	otherSA := &Identity{Name: "system:serviceaccount:dev:puller"}
	robot := &Identity{Name: "robot:ci"}
	for _, tc := range []struct {
		id     *Identity
		action Action
		model  string
		want   bool
	}{
		{nil, Pull, "public/x", true},
		{nil, Push, "public/x", false},
		{nil, Pull, "nlp/bert", false},
		{alice, Push, "nlp/bert", true},
		{alice, Pull, "nlp/bert", true}, // push implies pull
		{alice, Delete, "nlp/bert", false},
		{alice, Push, "cv/resnet", false},
		{alice, Pull, "public/x", false}, // anonymous repositories are for anonymous requests
		{ml, Delete, "nlp/bert", true},
		{ml, Pull, "nlp/bert", true}, // delete implies pull
		{ml, Push, "nlp/bert", false},
		{ml, Delete, "nlp/gpt", false},
		{admin, Delete, "any/thing", true},
		{admin, Push, "any/thing", true},
		{sa, Pull, "serving/bert", true},
		{sa, Push, "serving/bert", false},
		{otherSA, Pull, "serving/bert", false},
		{robot, Push, "ci/nightly", true},
		{robot, Push, "nlp/bert", false},
	} {
		name := "anonymous"
		if tc.id != nil {
			name = tc.id.Name
		}
		if got := p.Allowed(tc.id, tc.action, tc.model); got != tc.want {
			t.Errorf("%s %s %s = %v, want %v", name, tc.action, tc.model, got, tc.want)
		}
	}
	def := DefaultPolicy(false)
	if !def.Allowed(alice, Push, "a/b") || def.Allowed(alice, Delete, "a/b") || def.Allowed(nil, Pull, "a/b") {
		t.Error("default policy: authenticated pull+push, no delete, no anonymous")
	}
	if !DefaultPolicy(true).Allowed(nil, Pull, "a/b") {
		t.Error("--anonymous-pull does not let anonymous requests pull")
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{"write"}, Users: []string{"x"}}}}, `"write"`},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}}}}, "names no users"},
		{Policy{Rules: []Rule{{Actions: []Action{Pull}, Users: []string{"x"}}}}, "needs repositories"},
		{Policy{Rules: []Rule{{Repositories: []string{"a/["}, Actions: []Action{Pull}, Users: []string{"x"}}}}, "bad glob"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestIdentityKinds(t *testing.T) {
	if sa := (&Identity{Name: "system:serviceaccount:ns:name"}).ServiceAccount(); sa != "ns/name" {
		t.Errorf("ServiceAccount() = %q", sa)
	}
	if r := (&Identity{Name: "robot:ci"}).Robot(); r != "ci" {
		t.Errorf("Robot() = %q", r)
	}
	if (&Identity{Name: "alice"}).Robot() != "" || (&Identity{Name: "alice"}).ServiceAccount() != "" {
		t.Error("a user is neither a robot nor a service account")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Issuers: []IssuerConfig{{Issuer: "https://x"}}},
		{Issuers: []IssuerConfig{{Issuer: "https://x", Audience: "a"}, {Issuer: "https://x", Audience: "b"}}},
		{Robots: []Robot{{Name: "ci", TokenSHA256: "abc"}}},
		{Issuers: []IssuerConfig{{Issuer: "https://x", Audience: "a", JWKSFile: "/nonexistent.json"}}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
