package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv"
)

// TestHelmVersionInStep checks that the helm the tests look for
// (testenv.HelmVersion) is the one the Makefile builds, from the version
// tools/helm/go.mod pins, stamped with the Kubernetes minor release of the
// client-go it builds with.
func TestHelmVersionInStep(t *testing.T) {
	makefile := readString(t, "../Makefile")
	gomod := readString(t, "../tools/helm/go.mod")
	match := func(text, pattern string) string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no match for %s", pattern)
		}
		return m[1]
	}
	if v := match(makefile, `(?m)^HELM_VERSION := (\S+)$`); v != testenv.HelmVersion {
		t.Errorf("Makefile HELM_VERSION %s, testenv.HelmVersion %s", v, testenv.HelmVersion)
	}
	if v := match(gomod, `(?m)^\s*helm\.sh/helm/v3 (\S+)`); v != testenv.HelmVersion {
		t.Errorf("tools/helm/go.mod pins helm %s, testenv.HelmVersion %s", v, testenv.HelmVersion)
	}
	clientGo := match(gomod, `(?m)^\s*k8s\.io/client-go v0\.(\d+)\.`)
	for _, pkg := range []string{"lint/rules", "chartutil"} {
		if v := match(makefile, `helm\.sh/helm/v3/pkg/`+pkg+`\.k8sVersionMinor=(\d+)`); v != clientGo {
			t.Errorf("Makefile stamps %s.k8sVersionMinor=%s, but helm builds with client-go v0.%s", pkg, v, clientGo)
		}
	}
}

func readString(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(data), "\\\n", " ")
}
