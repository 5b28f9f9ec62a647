package kubeenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// SeldonVersion and IstioVersion are the releases of seldon-core/operator
// and istio.io/api whose CRDs SeldonCRD and IstioCRDs return. They are
// fetched into the module cache with `go mod download`; the main module
// does not require them. SeldonVersion is also the operator StartSeldon
// runs: keep it in step with tools/seldon-operator/go.mod and tools/kube.mk.
const (
	SeldonVersion = "v1.19.0"
	IstioVersion  = "v1.31.1"
)

const (
	seldonModule = "github.com/seldonio/seldon-core/operator"
	istioModule  = "istio.io/api"
)

// SeldonCRD returns the path of the SeldonDeployment CRD
// (machinelearning.seldon.io/v1) shipped in seldon-core/operator at
// SeldonVersion, the bundle/manifests copy (the apiserver rejects the
// config/crd* ones). The file is in the read-only module cache.
func SeldonCRD(t testing.TB) string {
	t.Helper()
	return moduleFile(t, "Seldon CRD", seldonModule, SeldonVersion, "bundle", "manifests", "machinelearning.seldon.io_seldondeployments.yaml")
}

// IstioCRDs returns the path of istio.io/api's
// kubernetes/customresourcedefinitions.gen.yaml at IstioVersion: every
// Istio CRD, among them the networking.istio.io ones (VirtualService,
// Gateway, DestinationRule, ...). The file is in the read-only module cache.
func IstioCRDs(t testing.TB) string {
	t.Helper()
	return moduleFile(t, "Istio CRDs", istioModule, IstioVersion, "kubernetes", "customresourcedefinitions.gen.yaml")
}

// moduleFile returns the path of a file of module@version in the module
// cache (requireModule); what names it when it is missing.
func moduleFile(t testing.TB, what, module, version string, path ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{requireModule(t, module, version)}, path...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return p
}

// requireModule returns the module-cache directory of module@version,
// downloading it once per process. When the download fails the test fails
// in CI (CI=true) and is skipped elsewhere.
func requireModule(t testing.TB, module, version string) string {
	t.Helper()
	dir, err := moduleDir(module, version)
	if err != nil {
		msg := fmt.Sprintf("%s@%s not available: %v", module, version, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// download is the outcome of one `go mod download`.
type download struct {
	once sync.Once
	dir  string
	err  error
}

var downloads sync.Map // "module@version" -> *download

// moduleDir runs `go mod download -json module@version` once per process
// and returns the module's directory in the module cache.
func moduleDir(module, version string) (string, error) {
	v, _ := downloads.LoadOrStore(module+"@"+version, new(download))
	d := v.(*download)
	d.once.Do(func() { d.dir, d.err = goModDownload(module, version) })
	return d.dir, d.err
}

// goModDownload runs `go mod download` outside any module (in an empty
// temp dir, with GOFLAGS and GOWORK cleared), so that the main module's
// go.mod neither constrains nor records the download.
func goModDownload(module, version string) (string, error) {
	work, err := os.MkdirTemp("", "kubeenv-mod-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=", "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	// On failure the JSON, if any, carries the reason in "Error".
	var info struct {
		Dir   string
		Error string
	}
	jsonErr := json.Unmarshal(stdout.Bytes(), &info)
	switch {
	case info.Error != "":
		return "", fmt.Errorf("go mod download: %s", info.Error)
	case runErr != nil:
		return "", fmt.Errorf("go mod download: %w: %s", runErr, strings.TrimSpace(stderr.String()))
	case jsonErr != nil:
		return "", fmt.Errorf("go mod download: decode output: %w", jsonErr)
	case info.Dir == "":
		return "", fmt.Errorf("go mod download: no Dir in output")
	}
	return info.Dir, nil
}
