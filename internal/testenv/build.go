package testenv

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// modelxImageBinary is where build/modelx.Dockerfile puts the CLI.
const modelxImageBinary = "/usr/local/bin/modelx"

// ModelxEntrypoint is the modelx image's entrypoint on this host: the
// exec-form ENTRYPOINT of build/modelx.Dockerfile (`modelx pull`), with the
// image's binary replaced by the modelx CLI built from the module's own
// source into the test's temp directory. Tests run a pod's modelx
// container with it, as the image would. The build needs only the module
// and build caches (it works under GOPROXY=off, as in InNetworkNamespace's
// child).
func ModelxEntrypoint(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q %v: run the test inside the modelx module", gomod, err)
	}
	dockerfile := filepath.Join(filepath.Dir(gomod), "build", "modelx.Dockerfile")
	entrypoint := dockerEntrypoint(t, dockerfile)
	if entrypoint[0] != modelxImageBinary {
		t.Fatalf("%s: the entrypoint runs %q, not %s", dockerfile, entrypoint, modelxImageBinary)
	}
	bin := filepath.Join(t.TempDir(), "modelx")
	if out, err := exec.Command("go", "build", "-o", bin, "modelx.io/modelx/cmd/modelx").CombinedOutput(); err != nil {
		t.Fatalf("go build modelx: %v\n%s", err, out)
	}
	entrypoint[0] = bin
	return entrypoint
}

// dockerEntrypoint reads the exec-form ENTRYPOINT of a Dockerfile.
func dockerEntrypoint(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entrypoint []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(rest), &entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s: %v", path, rest, err)
			}
		}
	}
	if len(entrypoint) == 0 {
		t.Fatalf("%s has no exec-form ENTRYPOINT", path)
	}
	return entrypoint
}
