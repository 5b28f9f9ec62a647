package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/storage/fs"
)

// gate passes the first n blob requests of one method, then holds the next
// one until released, telling the test through stalled.
type gate struct {
	next    http.Handler
	method  string
	n       atomic.Int32
	stalled chan struct{}
	release chan struct{}
	armed   atomic.Bool
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.armed.Load() && r.Method == g.method && strings.Contains(r.URL.Path, "/blobs/") {
		if g.n.Add(-1) < 0 {
			select {
			case g.stalled <- struct{}{}:
			default:
			}
			<-g.release
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "modelx")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func runJSON(t *testing.T, bin string, env []string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(bin, append(args, "-o", "json", "-q")...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("modelx %v: %v\n%s", args, err, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return res
}

// killWhenStalled starts the CLI and SIGKILLs it while a blob request hangs.
func killWhenStalled(t *testing.T, g *gate, bin string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.stalled:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the transfer never reached the gate")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	g.armed.Store(false)
	close(g.release)
}

// TestKilledTransfersResume kills -9 the CLI in the middle of a push and of
// a pull: the next run finishes, re-sending only what was not done, and no
// half-written file ever sits at its final name.
func TestKilledTransfersResume(t *testing.T) {
	bin := buildCLI(t)
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	g := &gate{next: reg.Handler(), method: http.MethodPut, stalled: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(g)
	defer srv.Close()
	env := append(os.Environ(), "MODELX_CONFIG="+filepath.Join(t.TempDir(), "c.yaml"))

	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "modelx.yaml"), []byte("description: big\n"), 0o644)
	weights := make([]byte, 96<<20) // several 4–64 MiB chunks
	rand.Read(weights)
	os.WriteFile(filepath.Join(src, "weights.bin"), weights, 0o644)
	ref := srv.URL + "/big/model:v1"

	g.n.Store(3)
	g.armed.Store(true)
	killWhenStalled(t, g, bin, env, "push", ref, src, "-j", "1", "-q")
	push := runJSON(t, bin, env, "push", ref, src)
	if push["blobs_skipped"].(float64) < 3 || push["blobs_transferred"].(float64) == 0 {
		t.Fatalf("resumed push: %v", push)
	}

	// A second front end on the same storage gates downloads.
	g2 := &gate{next: reg.Handler(), method: http.MethodGet, stalled: make(chan struct{}, 1), release: make(chan struct{})}
	srv2 := httptest.NewServer(g2)
	defer srv2.Close()
	ref = srv2.URL + "/big/model:v1"
	g2.n.Store(2)
	g2.armed.Store(true)
	dst := filepath.Join(t.TempDir(), "out")
	killWhenStalled(t, g2, bin, env, "pull", ref, dst, "-j", "1", "-q")
	if _, err := os.Stat(filepath.Join(dst, "weights.bin")); err == nil {
		t.Fatal("a killed pull left weights.bin at its final name")
	}
	pull := runJSON(t, bin, env, "pull", ref, dst)
	if pull["downloaded_bytes"].(float64) >= float64(len(weights)) {
		t.Fatalf("resumed pull downloaded everything again: %v", pull)
	}
	got, err := os.ReadFile(filepath.Join(dst, "weights.bin"))
	if err != nil || !bytes.Equal(got, weights) {
		t.Fatalf("pulled weights differ: %v", err)
	}
}
