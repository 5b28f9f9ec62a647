package main

import (
	"encoding/json"
	"errors"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/internal/testenv"
)

func writeModel(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPullNeverDestroysUserFiles runs the real binary against a registry:
// a pull into a directory with the user's own README.md and weights.bin
// exits 1, lists them, says how to go on, and changes nothing in the
// directory; --force replaces them. A directory pushed from takes a newer
// version without --force; the files that version dropped are reported
// with a hint at --prune, which removes them and keeps the user's own.
func TestPullNeverDestroysUserFiles(t *testing.T) {
	bin := buildCLI(t)
	url := startRegistry(t)
	env := append(os.Environ(), "MODELX_CONFIG="+filepath.Join(t.TempDir(), "c.yaml"), "MODELX_TOKEN=")
	cli := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, append(args, "-q")...)
		cmd.Env = env
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	mustCLI := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := cli(args...)
		if err != nil {
			t.Fatalf("modelx %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out, errOut
	}
	weights := strings.Repeat("w", 2<<20)
	work := t.TempDir()
	writeModel(t, work, map[string]string{"modelx.yaml": "description: v1\n", "README.md": "# v1\n", "weights.bin": weights, "old.txt": "only in v1"})
	mustCLI("push", url+"/nlp/bert:v1", work)

	// The user's own files are in the way.
	dst := t.TempDir()
	writeModel(t, dst, map[string]string{"README.md": "# my notes\n", "weights.bin": "my weights", "mine.txt": "mine"})
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{"README.md", "weights.bin", "mine.txt", "."} {
		os.Chtimes(filepath.Join(dst, p), old, old)
	}
	before := testenv.Snapshot(t, dst)
	_, errOut, err := cli("pull", url+"/nlp/bert:v1", dst)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("pull over the user's files: %v, want exit code 1\n%s", err, errOut)
	}
	for _, want := range []string{
		"  README.md: differs from the version, and modelx did not write it\n",
		"  weights.bin: differs from the version, and modelx did not write it\n",
		"2 paths in " + dst + " are in the way (listed above); nothing was written",
		"--force",
		"empty directory",
	} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "mine.txt") {
		t.Fatalf("stderr names a file the version does not have:\n%s", errOut)
	}
	testenv.SameSnapshot(t, before, dst)
	mustCLI("pull", url+"/nlp/bert:v1", dst, "--force")
	if data, _ := os.ReadFile(filepath.Join(dst, "weights.bin")); string(data) != weights {
		t.Fatal("--force did not replace weights.bin")
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "mine.txt")); string(data) != "mine" {
		t.Fatal("--force touched a file the version does not have")
	}

	// A colleague's v2, pulled into the directory v1 was pushed from.
	other := t.TempDir()
	writeModel(t, other, map[string]string{"modelx.yaml": "description: v2\n", "README.md": "# v2\n", "weights.bin": strings.Repeat("v", 2<<20)})
	mustCLI("push", url+"/nlp/bert:v2", other)
	writeModel(t, work, map[string]string{"notes.txt": "the user's, never pushed"})
	_, errOut = mustCLI("pull", url+"/nlp/bert:v2", work)
	if !strings.Contains(errOut, "1 file that modelx wrote here is not in this version and was left in place (old.txt); pull with --prune to remove it") {
		t.Fatalf("no hint at --prune:\n%s", errOut)
	}
	out, _ := mustCLI("pull", url+"/nlp/bert:v2", work, "--prune", "-o", "json")
	var res struct {
		Pruned []string `json:"pruned_files"`
		Stale  []string `json:"stale_files"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Pruned) != 1 || res.Pruned[0] != "old.txt" || len(res.Stale) != 0 {
		t.Fatalf("pull --prune -o json: %s (%v)", out, err)
	}
	for name, want := range map[string]string{"modelx.yaml": "description: v2\n", "README.md": "# v2\n", "notes.txt": "the user's, never pushed"} {
		if data, err := os.ReadFile(filepath.Join(work, name)); err != nil || string(data) != want {
			t.Fatalf("%s after the pull: %q, %v; want %q", name, data, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "old.txt")); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("--prune kept old.txt: %v", err)
	}

	// A failed pull into a new directory leaves nothing behind.
	parent := t.TempDir()
	if _, _, err := cli("pull", url+"/nlp/bert:v2", filepath.Join(parent, "new"), "--file", "nothing*"); err == nil {
		t.Fatal("a pull of no file succeeded")
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a failed pull into a new directory left %v", entries)
	}
}
