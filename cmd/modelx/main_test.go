package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

func startRegistry(t *testing.T) string {
	t.Helper()
	_, h := newRegistry(t)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// newRegistry is a quiet registry on storage/fs in a temp directory.
func newRegistry(t *testing.T) (*fs.Store, http.Handler) {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return st, reg.Handler()
}

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(strings.NewReader(stdin), &out, &errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, "", args...)
	if err != nil {
		t.Fatalf("modelx %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestCLI(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := filepath.Join(t.TempDir(), "bert")

	mustRun(t, "init", model)
	if _, _, err := run(t, "", "init", model); err == nil {
		t.Fatal("init over an existing modelx.yaml succeeded")
	}
	if err := os.WriteFile(filepath.Join(model, "weights.bin"), bytes.Repeat([]byte("w"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var push struct {
		Digest           string  `json:"digest"`
		UploadedBytes    int64   `json:"uploaded_bytes"`
		SkippedBytes     int64   `json:"skipped_bytes"`
		BlobsTransferred int     `json:"blobs_transferred"`
		BlobsSkipped     int     `json:"blobs_skipped"`
		Files            int     `json:"files"`
		Duration         float64 `json:"duration_seconds"`
	}
	out := mustRun(t, "push", url+"/nlp/bert:v1", model, "-o", "json")
	if err := json.Unmarshal([]byte(out), &push); err != nil || push.Files != 3 || push.UploadedBytes == 0 || !strings.HasPrefix(push.Digest, "sha256:") {
		t.Fatalf("push -o json: %v %s", err, out)
	}
	// Registry aliases work everywhere a registry goes.
	mustRun(t, "repo", "add", "local", url)
	if out := mustRun(t, "repo", "list"); !strings.Contains(out, "local") || !strings.Contains(out, url) {
		t.Fatalf("repo list: %s", out)
	}
	out = mustRun(t, "push", "local/nlp/bert@v1", model, "-o", "json")
	var again map[string]any
	if err := json.Unmarshal([]byte(out), &again); err != nil || again["uploaded_bytes"].(float64) != 0 {
		t.Fatalf("no-op push: %s", out)
	}

	dst := filepath.Join(t.TempDir(), "out")
	out = mustRun(t, "pull", "local/nlp/bert:v1", dst, "-o", "json")
	var pull map[string]any
	if err := json.Unmarshal([]byte(out), &pull); err != nil || pull["digest"] != push.Digest || pull["downloaded_bytes"].(float64) == 0 {
		t.Fatalf("pull -o json: %s", out)
	}
	if data, err := os.ReadFile(filepath.Join(dst, "weights.bin")); err != nil || len(data) != 3<<20 {
		t.Fatalf("pulled weights: %d bytes, %v", len(data), err)
	}
	// The storage-initializer form: modelx:// with ?insecure=true for http.
	host := strings.TrimPrefix(url, "http://")
	mustRun(t, "pull", "modelx://"+host+"/nlp/bert@"+push.Digest+"?insecure=true", filepath.Join(t.TempDir(), "mnt"))
	// The URI can carry the file selection, as the deploy controller renders it.
	sel := filepath.Join(t.TempDir(), "sel")
	mustRun(t, "pull", "modelx://"+host+"/nlp/bert@"+push.Digest+"?insecure=true&file=README.md", sel)
	if entries, _ := os.ReadDir(sel); len(entries) != 2 { // modelx.yaml, README.md; no .modelx state
		t.Fatalf("selective storage-initializer pull wrote %d entries", len(entries))
	}
	mustRun(t, "pull", "modelx://"+host+"/nlp/bert@"+push.Digest+"?insecure=true&model-files=auto", filepath.Join(t.TempDir(), "auto"))

	if out := mustRun(t, "list", "local"); strings.TrimSpace(out) != "nlp/bert" {
		t.Fatalf("list registry: %q", out)
	}
	if out := mustRun(t, "list", "local/nlp/bert"); !strings.Contains(out, "v1") || !strings.Contains(out, push.Digest[:19]) || !strings.Contains(out, "3.0 MiB") {
		t.Fatalf("list tags: %s", out)
	}
	if out := mustRun(t, "info", "local/nlp/bert:v1"); !strings.Contains(out, "weights.bin") || !strings.Contains(out, "README.md") || !strings.Contains(out, push.Digest) {
		t.Fatalf("info: %s", out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "info", "local/nlp/bert:v1", "-o", "json")), &info); err != nil || info["digest"] != push.Digest {
		t.Fatalf("info -o json: %v %v", err, info)
	}

	_, _, err := run(t, "", "pull", "local/nlp/bert:v9", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `no tag "v9"`) || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("pull of a missing tag: %v", err)
	}
	mustRun(t, "delete", "local/nlp/bert:v1")
	mustRun(t, "gc", "local/nlp/bert")
	if _, _, err := run(t, "", "info", "local/nlp/bert:v1"); err == nil {
		t.Fatal("info after delete succeeded")
	}

	// Tokens: stored 0600, read back, forgotten.
	mustRun(t, "login", "local", "--token", "s3cret")
	cfgPath := os.Getenv("MODELX_CONFIG")
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", fi.Mode(), err)
	}
	if _, _, err := run(t, "s3cret-from-stdin\n", "login", url, "--token-stdin"); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "logout", "local")
	if _, _, err := run(t, "", "logout", "local"); err == nil {
		t.Fatal("second logout succeeded")
	}
	mustRun(t, "repo", "remove", "local")

	if out := mustRun(t, "version"); !strings.HasPrefix(out, "modelx ") {
		t.Fatalf("version: %q", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := mustRun(t, "completion", shell); len(out) < 100 {
			t.Fatalf("completion %s printed %d bytes", shell, len(out))
		}
	}
	for _, args := range [][]string{
		{"push", "nlp/bert:v1", model},
		{"push", url + "/Bad/name:v1", model},
		{"push", url + "/nlp/bert@sha256:" + strings.Repeat("0", 64), model},
		{"pull", "http://127.0.0.1:1/nlp/bert:v1", t.TempDir()},
		{"push", url + "/nlp/bert:v1", model, "-o", "yaml"},
	} {
		if _, _, err := run(t, "", args...); err == nil {
			t.Errorf("modelx %v succeeded", args)
		}
	}
}

// TestExitCodes runs the real binary: 0 on success, 1 with one line on failure.
func TestExitCodes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "modelx")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "version")
	if err := cmd.Run(); err != nil {
		t.Fatalf("version: %v", err)
	}
	cmd = exec.Command(bin, "pull", "http://127.0.0.1:1/nlp/bert:v1", t.TempDir())
	cmd.Env = append(os.Environ(), "MODELX_CONFIG="+filepath.Join(t.TempDir(), "c.yaml"))
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "unreachable") {
		t.Fatalf("pull from a closed port: %v %q", err, out)
	}
}
