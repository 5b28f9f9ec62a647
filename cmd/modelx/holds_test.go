package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/fs"
)

// TestHoldCommands holds a served version as a deploy controller would,
// moves its tag, collects garbage, and checks what info, list, pull,
// delete and release then say; and that bad input is refused.
func TestHoldCommands(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := &testenv.Clock{}
	reg, err := registry.New(st, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GCGracePeriod: time.Nanosecond, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL
	model := filepath.Join(t.TempDir(), "bert")
	mustRun(t, "init", model)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("served ", 100000)), 0o644)
	var pushed struct {
		Digest string `json:"digest"`
	}
	json.Unmarshal([]byte(mustRun(t, "push", url+"/nlp/bert:prod", model, "-o", "json")), &pushed)
	served := pushed.Digest

	if out := mustRun(t, "hold", "list", url+"/nlp/bert"); !strings.Contains(out, "nlp/bert has no holds") {
		t.Fatalf("hold list without holds:\n%s", out)
	}
	out := mustRun(t, "hold", "put", url+"/nlp/bert:prod", "ctl:prod:serving:bert", "--ttl", "24h")
	if !strings.HasPrefix(out, "held nlp/bert by ctl:prod:serving:bert until ") || !strings.Contains(out, shortDigest(served)) {
		t.Fatalf("hold put:\n%s", out)
	}
	var hold spec.Hold
	if err := json.Unmarshal([]byte(mustRun(t, "hold", "put", url+"/nlp/bert@"+served, "ctl:prod:serving:bert", "--ttl", "48h", "-o", "json")), &hold); err != nil ||
		len(hold.Digests) != 1 || string(hold.Digests[0]) != served || hold.Expires.Sub(hold.Renewed) != 48*time.Hour {
		t.Fatalf("hold put -o json: %+v %v", hold, err)
	}

	// The tag moves; the collection keeps the held version.
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("newer ", 100000)), 0o644)
	json.Unmarshal([]byte(mustRun(t, "push", url+"/nlp/bert:prod", model, "-o", "json")), &pushed)
	mustRun(t, "hold", "put", url+"/nlp/bert", "backup", pushed.Digest, served, "--ttl", "1h")
	clock.Advance(time.Second) // past the 1ns grace period: the old version is garbage but for its holds
	if out := mustRun(t, "gc", url); !strings.Contains(out, "deleted 0 manifests") {
		t.Fatalf("gc with holds:\n%s", out)
	}
	mustRun(t, "pull", url+"/nlp/bert@"+served, filepath.Join(t.TempDir(), "served"))

	out = mustRun(t, "info", url+"/nlp/bert@"+served)
	if !strings.Contains(out, "holds:       2 on versions of nlp/bert") || !strings.Contains(out, "ctl:prod:serving:bert") ||
		!strings.Contains(out, shortDigest(served)+" (this version)") || !strings.Contains(out, shortDigest(pushed.Digest)+", ") {
		t.Fatalf("info of a held version:\n%s", out)
	}
	var info struct {
		Holds []spec.Hold `json:"holds"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "info", url+"/nlp/bert:prod", "-o", "json")), &info); err != nil || len(info.Holds) != 2 {
		t.Fatalf("info -o json: %+v %v", info, err)
	}
	out = mustRun(t, "hold", "list", url+"/nlp/bert")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "HOLDER") || !strings.HasPrefix(lines[1], "backup") || !strings.HasPrefix(lines[2], "ctl:prod:serving:bert") {
		t.Fatalf("hold list:\n%s", out)
	}
	var list spec.HoldList
	if err := json.Unmarshal([]byte(mustRun(t, "hold", "list", url+"/nlp/bert", "-o", "json")), &list); err != nil || len(list.Holds) != 2 {
		t.Fatalf("hold list -o json: %+v %v", list, err)
	}
	if _, _, err := run(t, "", "delete", url+"/nlp/bert@"+served); err == nil || !strings.Contains(err.Error(), "held by backup, ctl:prod:serving:bert") || !strings.Contains(err.Error(), "modelx hold release") {
		t.Fatalf("delete of a held version: %v", err)
	}
	if _, _, err := run(t, "", "delete", url+"/nlp/bert"); err == nil || !strings.Contains(err.Error(), "CONFLICT") {
		t.Fatalf("delete of a held model: %v", err)
	}

	// Bad input: refused before or by the registry, naming the rule.
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"hold", "put", url + "/nlp/bert:prod", "../index"}, "holder"},
		{[]string{"hold", "put", url + "/nlp/bert:prod", "ctl", served}, "give one or the other"},
		{[]string{"hold", "put", url + "/nlp/bert", "ctl", "sha256:abc"}, "DIGEST_INVALID"},
		{[]string{"hold", "put", url + "/nlp/bert:prod", "ctl", "--ttl", "1000h"}, "--max-hold-ttl"},
		{[]string{"hold", "put", url + "/nlp/bert:prod", "ctl", "--ttl", "forever"}, "invalid argument"},
		{[]string{"hold", "put", url + "/nlp/gpt", "ctl", served}, "MANIFEST_UNKNOWN"},
		{[]string{"hold", "put", url + "/nlp/bert:nope", "ctl"}, `no tag "nope"`},
		{[]string{"hold", "put", url + "/nlp/bert:prod"}, "requires at least 2 arg(s)"},
		{[]string{"hold", "list", url + "/nlp/bert", "-o", "yaml"}, "use text or json"},
	} {
		if _, _, err := run(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("modelx %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.says)
		}
	}

	// Release: then the version goes at the next collection.
	if out := mustRun(t, "hold", "release", url+"/nlp/bert", "ctl:prod:serving:bert"); out != "released the hold ctl:prod:serving:bert on nlp/bert\n" {
		t.Fatalf("hold release: %q", out)
	}
	_, _, err = run(t, "", "hold", "release", url+"/nlp/bert", "ctl:prod:serving:bert")
	if !errors.Is(err, client.ErrHoldUnknown) || !strings.Contains(err.Error(), "modelx hold list") {
		t.Fatalf("second hold release: %v", err)
	}
	mustRun(t, "hold", "release", url+"/nlp/bert:prod", "backup")
	if out := mustRun(t, "info", url+"/nlp/bert:prod"); strings.Contains(out, "holds:") {
		t.Fatalf("info without holds:\n%s", out)
	}
	clock.Advance(time.Second) // past the grace period: released, the old version is garbage
	if out := mustRun(t, "gc", url); !strings.Contains(out, "deleted 1 manifests") {
		t.Fatalf("gc after the release:\n%s", out)
	}
	if _, _, err := run(t, "", "info", url+"/nlp/bert@"+served); err == nil {
		t.Fatal("the released version is still there after gc")
	}
}
