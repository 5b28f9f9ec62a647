package auth

import (
	"cmp"
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
			{Repositories: []string{"serving/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/serving/*"}},
			{Repositories: []string{"ci/*"}, Actions: []Action{Push}, Robots: []string{"ci"}},
			{Repositories: []string{"*"}, Actions: []Action{Admin}, Robots: []string{"admin"}},
			{Repositories: []string{"team/*"}, Actions: []Action{Pull}, Users: []string{"*"}},
			{Repositories: []string{"serving/*"}, Actions: []Action{Hold}, ServiceAccounts: []string{"prod/controllers/*"}},
		},
	}
	controller := &Identity{Kind: KindServiceAccount, Name: "prod/controllers/modelx"}
	alice := &Identity{Kind: KindUser, Name: "alice"}
	ml := &Identity{Kind: KindUser, Name: "bob", Groups: []string{"ml"}}
	admin := &Identity{Kind: KindUser, Name: "root", Groups: []string{"admins"}}
	sa := &Identity{Kind: KindServiceAccount, Name: "prod/serving/puller"}
	otherNamespace := &Identity{Kind: KindServiceAccount, Name: "prod/dev/puller"}
	otherCluster := &Identity{Kind: KindServiceAccount, Name: "dev/serving/puller"}
	saInAdmins := &Identity{Kind: KindServiceAccount, Name: "prod/serving/x", Groups: []string{"admins"}}
	robot := &Identity{Kind: KindRobot, Name: "ci"}
	robotInML := &Identity{Kind: KindRobot, Name: "builder", Groups: []string{"ml"}}
	// Names that read like another kind stay what they were proven to be.
	userNamedRobot := &Identity{Kind: KindUser, Name: "robot:admin"}
	userNamedAdmin := &Identity{Kind: KindUser, Name: "admin"}
	userNamedSA := &Identity{Kind: KindUser, Name: "system:serviceaccount:serving:puller"}
	userNamedSAPath := &Identity{Kind: KindUser, Name: "prod/serving/puller"}
	robotNamedAlice := &Identity{Kind: KindRobot, Name: "alice"}
	saNamedCI := &Identity{Kind: KindServiceAccount, Name: "ci"}
	noKind := &Identity{Name: "alice", Groups: []string{"admins"}}
	for _, tc := range []struct {
		id     *Identity
		action Action
		model  string
		want   bool
	}{
		{nil, Pull, "public/x", true},
		{nil, Push, "public/x", false},
		{nil, Pull, "nlp/bert", false},
		{nil, Pull, "team/x", false}, // users: ["*"] is any authenticated identity, not anonymous
		{alice, Push, "nlp/bert", true},
		{alice, Pull, "nlp/bert", true}, // push implies pull
		{alice, Delete, "nlp/bert", false},
		{alice, Push, "cv/resnet", false},
		{alice, Pull, "team/x", true},
		{ml, Delete, "nlp/bert", true},
		{ml, Pull, "nlp/bert", true}, // delete implies pull
		{ml, Push, "nlp/bert", false},
		{ml, Delete, "nlp/gpt", false},
		{admin, Delete, "any/thing", true},
		{admin, Push, "any/thing", true},
		{sa, Pull, "serving/bert", true},
		{sa, Push, "serving/bert", false},
		{sa, Pull, "team/x", true}, // users: ["*"]
		{otherNamespace, Pull, "serving/bert", false},
		{otherCluster, Pull, "serving/bert", false},
		{saInAdmins, Delete, "any/thing", false}, // groups never match service accounts
		{robot, Push, "ci/nightly", true},
		{robot, Push, "nlp/bert", false},
		{robotInML, Delete, "nlp/bert", true}, // groups match robots
		// Logged-in identities keep what anonymous requests may do.
		{alice, Pull, "public/x", true},
		{robot, Pull, "public/x", true},
		{sa, Pull, "public/x", true},
		{robot, Push, "public/x", false},
		// No claim value crosses kinds.
		{userNamedRobot, Push, "any/thing", false},
		{userNamedAdmin, Push, "any/thing", false},
		{userNamedSA, Pull, "serving/bert", false},
		{userNamedSAPath, Pull, "serving/bert", false},
		{robotNamedAlice, Push, "nlp/bert", false},
		{saNamedCI, Push, "ci/nightly", false},
		{noKind, Push, "nlp/bert", false},
		{noKind, Delete, "any/thing", false},
		// hold: implied by push, delete and admin; implies pull, and nothing else.
		{controller, Hold, "serving/bert", true},
		{controller, Pull, "serving/bert", true},
		{controller, Push, "serving/bert", false},
		{controller, Delete, "serving/bert", false},
		{controller, Hold, "nlp/bert", false},
		{alice, Hold, "nlp/bert", true},  // push implies hold
		{ml, Hold, "nlp/bert", true},     // delete implies hold
		{admin, Hold, "any/thing", true}, // admin implies everything
		{sa, Hold, "serving/bert", false},
		{nil, Hold, "public/x", false},
	} {
		name := "anonymous"
		if tc.id != nil {
			name = tc.id.String()
		}
		if got := p.Allowed(tc.id, tc.action, tc.model); got != tc.want {
			t.Errorf("%s %s %s = %v, want %v", name, tc.action, tc.model, got, tc.want)
		}
	}
	def := DefaultPolicy(false)
	if !def.Allowed(alice, Push, "a/b") || !def.Allowed(alice, Hold, "a/b") || def.Allowed(alice, Delete, "a/b") || def.Allowed(nil, Pull, "a/b") {
		t.Error("default policy: authenticated pull+push, no delete, no anonymous")
	}
	if !def.Allowed(sa, Push, "a/b") || !def.Allowed(robot, Push, "a/b") {
		t.Error("default policy: every kind of identity pulls and pushes")
	}
	if !DefaultPolicy(true).Allowed(nil, Pull, "a/b") || !DefaultPolicy(true).Allowed(robot, Pull, "a/b") {
		t.Error("--anonymous-pull does not let anonymous requests, and everyone else, pull")
	}
	everyProdSA := &Policy{Rules: []Rule{{Repositories: []string{"*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/*/*"}}}}
	if !everyProdSA.Allowed(sa, Pull, "a/b") || !everyProdSA.Allowed(otherNamespace, Pull, "a/b") || everyProdSA.Allowed(otherCluster, Pull, "a/b") {
		t.Error("prod/*/* is every service account of cluster prod, and only those")
	}
}

func TestIdentityString(t *testing.T) {
	for id, want := range map[*Identity]string{
		{Kind: KindUser, Name: "alice@example.com"}:        "user alice@example.com",
		{Kind: KindRobot, Name: "ci"}:                      "robot ci",
		{Kind: KindServiceAccount, Name: "prod/serving/x"}: "service account prod/serving/x",
		{Kind: KindUser, Name: "robot:admin"}:              "user robot:admin",
	} {
		if got := id.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{"write"}, Users: []string{"x"}}}}, `"write" is not one of pull, push, delete, hold, admin`},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}}}}, "names no users"},
		{Policy{Rules: []Rule{{Actions: []Action{Pull}, Users: []string{"x"}}}}, "needs repositories"},
		{Policy{Rules: []Rule{{Repositories: []string{"a/["}, Actions: []Action{Pull}, Users: []string{"x"}}}}, "bad glob"},
		// The NAMESPACE/NAME entries of earlier versions name no cluster.
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/*"}}}}, `rules[0].serviceAccounts: "prod/*" names no cluster: write CLUSTER/prod/*`},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"*"}}}}, "not CLUSTER/NAMESPACE/NAME"},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"a/b/c/d"}}}}, "not CLUSTER/NAMESPACE/NAME"},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"*/serving/*"}}}}, "write the cluster out"},
		{Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/[/x"}}}}, "bad glob"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.p, err, tc.want)
		}
	}
	ok := Policy{Rules: []Rule{{Repositories: []string{"a/*"}, Actions: []Action{Pull, Hold}, ServiceAccounts: []string{"prod/serving/*", "prod/*/*", "dev-2/ns/name"}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
}

func TestPolicyCheckClusters(t *testing.T) {
	p := &Policy{Rules: []Rule{
		{Repositories: []string{"a/*"}, Actions: []Action{Pull}, Users: []string{"x"}},
		{Repositories: []string{"a/*"}, Actions: []Action{Pull}, ServiceAccounts: []string{"prod/serving/*", "dev/*/*"}},
	}}
	if err := p.CheckClusters([]string{"prod", "dev"}); err != nil {
		t.Errorf("both clusters configured: %v", err)
	}
	err := p.CheckClusters([]string{"prod"})
	if err == nil || !strings.Contains(err.Error(), `rules[1].serviceAccounts: "dev/*/*" names cluster "dev"`) || !strings.Contains(err.Error(), "cluster: dev") {
		t.Errorf("cluster dev not configured: %v", err)
	}
	if err := p.CheckClusters(nil); err == nil {
		t.Error("no cluster configured, yet the policy names two")
	}
	if err := DefaultPolicy(false).CheckClusters(nil); err != nil {
		t.Errorf("the default policy names no cluster: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cluster := func(is IssuerConfig) Config {
		is.Issuer, is.Audience, is.Cluster = "https://x", "a", cmp.Or(is.Cluster, "prod")
		return Config{Issuers: []IssuerConfig{is}}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Issuers: []IssuerConfig{{Issuer: "https://x"}}}, "issuers[0] (https://x): issuer and audience are both required"},
		{Config{Issuers: []IssuerConfig{{Issuer: "https://x", Audience: "a"}, {Issuer: "https://x", Audience: "b"}}}, "listed twice"},
		{Config{Robots: []Robot{{Name: "ci", TokenSHA256: "abc"}}}, "robots[0]"},
		{Config{Issuers: []IssuerConfig{{Issuer: "https://x", Audience: "a", JWKSFile: "/nonexistent.json"}}}, "nonexistent.json"},
		{cluster(IssuerConfig{Cluster: "prod/eu"}), `cluster "prod/eu": a cluster name is`},
		{cluster(IssuerConfig{Cluster: "prod*"}), "a cluster name is"},
		{cluster(IssuerConfig{UsernameClaim: "email"}), "usernameClaim is for people issuers"},
		{cluster(IssuerConfig{GroupsClaim: "groups"}), "groupsClaim is for people issuers"},
		{cluster(IssuerConfig{UsernamePrefix: "k8s:"}), "usernamePrefix is for people issuers"},
		{cluster(IssuerConfig{GroupsPrefix: "k8s:"}), "groupsPrefix is for people issuers"},
		{cluster(IssuerConfig{AllowUnverifiedEmail: true}), "allowUnverifiedEmail is for people issuers"},
		{cluster(IssuerConfig{Login: true}), "login is for people issuers"},
	} {
		if _, err := New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(cluster(IssuerConfig{UsernameClaim: "sub"}), nil); err != nil {
		t.Errorf("a cluster issuer with usernameClaim: sub (what it uses anyway): %v", err)
	}
}
