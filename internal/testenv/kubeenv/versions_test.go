package kubeenv

import (
	"os"
	"regexp"
	"testing"
)

// TestToolVersionsInStep checks that the binaries the tests look for are
// the ones tools/kube.mk builds, from the versions the tools modules pin.
func TestToolVersionsInStep(t *testing.T) {
	for _, c := range []struct{ file, pattern, want string }{
		{"../../../tools/kube.mk", `(?m)^ETCD_VERSION := (\S+)$`, EtcdVersion},
		{"../../../tools/kube.mk", `(?m)^KUBE_VERSION := (\S+)$`, KubeVersion},
		{"../../../tools/kube.mk", `(?m)^KWOK_VERSION := (\S+)$`, KwokVersion},
		{"../../../tools/kube.mk", `(?m)^SELDON_VERSION := (\S+)$`, SeldonVersion},
		{"../../../tools/kube.mk", `(?m)^KSERVE_VERSION := (\S+)$`, KServeVersion},
		{"../../../tools/etcd/go.mod", `(?m)^\s*go\.etcd\.io/etcd/server/v3 (\S+)`, EtcdVersion},
		{"../../../tools/kube-apiserver/go.mod", `(?m)^\s*(?:require )?k8s\.io/kubernetes (\S+)`, KubeVersion},
		{"../../../tools/kube-apiserver/go.mod", `(?m)^\s*sigs\.k8s\.io/kwok (\S+)`, KwokVersion},
		{"../../../tools/seldon-operator/go.mod", `(?m)^\s*github\.com/seldonio/seldon-core/operator (\S+)`, SeldonVersion},
		{"../../../tools/kserve/go.mod", `(?m)^\s*github\.com/kserve/kserve (\S+)`, KServeVersion},
	} {
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(c.pattern).FindSubmatch(data)
		if m == nil {
			t.Errorf("%s: no match for %s", c.file, c.pattern)
			continue
		}
		if string(m[1]) != c.want {
			t.Errorf("%s pins %s, the tests want %s", c.file, m[1], c.want)
		}
	}
}
