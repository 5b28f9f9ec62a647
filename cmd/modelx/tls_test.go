package main

import (
	"encoding/pem"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

// TestPrivateCA: a registry behind a certificate of a private CA is refused
// with a hint, trusted with --ca-file (or MODELX_CA_FILE), and reachable
// unverified with --insecure, which warns.
func TestPrivateCA(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewTLSServer(reg.Handler())
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: tls\n"), 0o644)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte("weights"), 0o644)
	ref := srv.URL + "/tls/model:v1"

	if _, _, err := run(t, "", "push", "-q", ref, model); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("push to an untrusted certificate: %v, want a hint at --ca-file", err)
	}
	mustRun(t, "push", "-q", "--ca-file", caFile, ref, model)
	t.Setenv("MODELX_CA_FILE", caFile)
	mustRun(t, "pull", "-q", ref, filepath.Join(t.TempDir(), "out"))
	t.Setenv("MODELX_CA_FILE", "")
	_, errOut, err := run(t, "", "pull", "-q", "--insecure", ref, filepath.Join(t.TempDir(), "out"))
	if err != nil || !strings.Contains(errOut, "not verified") {
		t.Fatalf("pull --insecure: %v, stderr %q", err, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o644)
	if _, _, err := run(t, "", "pull", "--ca-file", bad, ref, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("--ca-file without a certificate: %v", err)
	}
}

// TestMetricsFile: push and pull write their figures for a textfile
// collector, also when they fail.
func TestMetricsFile(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: metrics\n"), 0o644)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("w", 5000)), 0o644)
	metrics := filepath.Join(t.TempDir(), "modelx.prom")
	mustRun(t, "push", "-q", "--metrics-file", metrics, url+"/m/model:v1", model)
	data, _ := os.ReadFile(metrics)
	for _, want := range []string{
		`modelx_transfer_success{operation="push",reference="` + url + `/m/model@v1"} 1`,
		`modelx_transfer_bytes{operation="push",reference="` + url + `/m/model@v1",state="moved"} `,
		"# TYPE modelx_transfer_duration_seconds gauge",
	} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("metrics file lacks %q:\n%s", want, data)
		}
	}
	t.Setenv("MODELX_METRICS_FILE", metrics)
	mustRun(t, "pull", "-q", url+"/m/model:v1", filepath.Join(t.TempDir(), "out"))
	data, _ = os.ReadFile(metrics)
	if !strings.Contains(string(data), `modelx_transfer_success{operation="pull",reference="`+url+`/m/model@v1"} 1`) || !regexp.MustCompile(`state="moved"\} [1-9]`).Match(data) {
		t.Fatalf("metrics file after pull:\n%s", data)
	}
	if _, _, err := run(t, "", "pull", "-q", url+"/m/model:v9", t.TempDir()); err == nil {
		t.Fatal("pull of a missing tag succeeded")
	}
	data, _ = os.ReadFile(metrics)
	if !strings.Contains(string(data), `modelx_transfer_success{operation="pull",reference="`+url+`/m/model@v9"} 0`) {
		t.Fatalf("metrics file after a failed pull:\n%s", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(metrics))
	if len(entries) != 1 {
		t.Fatalf("temp files left next to the metrics file: %v", entries)
	}
}
