package kubeenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// gcReadyLine is what the garbage collector logs once its resource monitors
// have synced (or the 30 s initial sync gave up) and its workers start.
const gcReadyLine = "Proceeding to collect garbage"

// StartGarbageCollector runs kube-controller-manager against the apiserver
// with only the garbage-collector and namespace controllers, so that
// dependents of a deleted owner are deleted (background and foreground
// propagation) and deleted namespaces are emptied and removed. It returns
// once the collector's workers run and stops it when the test ends.
// Install CRDs first (StartKube's crdPaths): the collector rediscovers
// resources only every 30 s, and cannot collect what it does not watch.
func (k *Kube) StartGarbageCollector(t testing.TB) {
	t.Helper()
	bin := testenv.RequireBinary(t, "kube-controller-manager", KubeVersion)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(k, kubeconfig); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	p := startProcess(t, "kube-controller-manager", bin, controllerManagerArgs(kubeconfig,
		"garbage-collector-controller", "namespace-controller"), nil)
	p.waitLogLine(t, gcReadyLine, 60*time.Second)
}

// controllerManagerArgs are the flags of a kube-controller-manager that runs
// the named controllers against the apiserver of kubeconfig.
func controllerManagerArgs(kubeconfig string, controllers ...string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		// One instance: no lease to win (and no 15 s wait to win it).
		"--leader-elect=false",
		// Serve nothing: no port to pick, no serving cert, and no
		// delegated authentication or authorization to look up.
		"--secure-port=0",
		// Run every controller as the admin user of the kubeconfig, not as
		// per-controller service accounts whose tokens need the
		// service-account-token controller and a signing key.
		"--use-service-account-credentials=false",
	}
}

// writeKubeconfig writes a kubeconfig with k.Config's server, CA and
// credentials (envtest's admin client certificate) to path, mode 0600.
func writeKubeconfig(k *Kube, path string) error {
	c := k.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{
		Server:                   c.Host,
		TLSServerName:            c.ServerName,
		CertificateAuthority:     c.CAFile,
		CertificateAuthorityData: c.CAData,
		InsecureSkipTLSVerify:    c.Insecure,
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificate:     c.CertFile,
		ClientCertificateData: c.CertData,
		ClientKey:             c.KeyFile,
		ClientKeyData:         c.KeyData,
		Token:                 c.BearerToken,
		TokenFile:             c.BearerTokenFile,
		Username:              c.Username,
		Password:              c.Password,
	}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*cfg, path)
}

// waitForLogLine waits until the log file at path contains line, the
// process exits, or the timeout passes.
func waitForLogLine(path, line string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(line)) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before logging %q", line)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in the log within %s", line, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
