package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/spec"
)

// TestInitNamesTheDirectory: init of ".", "./" and "../x/" uses the
// directory's real name, quotes the suggested command where a shell
// needs it, and turns a name that is not a valid model name into one.
func TestInitNamesTheDirectory(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	root := t.TempDir()
	for _, tc := range []struct {
		dir, cwd, arg string
		wantTitle     string
		wantCommand   string
		wantNote      bool
	}{
		{dir: "bert", cwd: "bert", arg: ".", wantTitle: "bert", wantCommand: "modelx push REGISTRY/REPOSITORY/bert:v1 ."},
		{dir: "gpt2", cwd: "gpt2", arg: "./", wantTitle: "gpt2", wantCommand: "modelx push REGISTRY/REPOSITORY/gpt2:v1 ./"},
		{dir: "x", cwd: "elsewhere", arg: "../x/", wantTitle: "x", wantCommand: "modelx push REGISTRY/REPOSITORY/x:v1 ../x/"},
		{dir: "My Model's v2", cwd: ".", arg: "My Model's v2", wantTitle: "My Model's v2", wantCommand: `modelx push REGISTRY/REPOSITORY/my-model-s-v2:v1 'My Model'\''s v2'`, wantNote: true},
		{dir: "__", cwd: ".", arg: "__", wantTitle: "__", wantCommand: "modelx push REGISTRY/REPOSITORY/model:v1 __", wantNote: true},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			for _, d := range []string{tc.dir, tc.cwd} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Chdir(filepath.Join(root, tc.cwd))
			out := mustRun(t, "init", tc.arg)
			if !strings.Contains(out, "\n  "+tc.wantCommand+"\n") {
				t.Errorf("init %s printed\n%s\nwant the command %s", tc.arg, out, tc.wantCommand)
			}
			if got := strings.Contains(out, "is a valid model name made from"); got != tc.wantNote {
				t.Errorf("init %s: note about the name printed: %v, want %v:\n%s", tc.arg, got, tc.wantNote, out)
			}
			readme, _ := os.ReadFile(filepath.Join(root, tc.dir, "README.md"))
			if !strings.HasPrefix(string(readme), "# "+tc.wantTitle+"\n") {
				t.Errorf("README.md starts %q, want the title %q", readme, tc.wantTitle)
			}
			data, _ := os.ReadFile(filepath.Join(root, tc.dir, spec.ConfigFileName))
			cfg, err := spec.ParseModelConfig(data)
			if err != nil || cfg.Description != tc.wantTitle+" model" {
				t.Errorf("modelx.yaml: %v, description %q", err, cfg.Description)
			}
			// The suggested name is one the registry takes.
			name := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(tc.wantCommand)[2], "REGISTRY/REPOSITORY/"), ":v1")
			if err := spec.ValidateComponent("name", name); err != nil {
				t.Errorf("suggested %q: %v", name, err)
			}
		})
	}
}

// TestMissingVersionSaidOnce: info and pull of a tag or model that is not
// there say so once, with the tags there are or the way to list models.
func TestMissingVersionSaidOnce(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: tags\n"), 0o644)
	for _, tag := range []string{"a", "b", "c"} {
		mustRun(t, "push", "-q", url+"/nlp/bert:"+tag, model)
	}
	for _, cmd := range []string{"info", "pull"} {
		args := func(ref string) []string {
			if cmd == "pull" {
				return []string{"pull", "-q", ref, filepath.Join(t.TempDir(), "out")}
			}
			return []string{"info", ref}
		}
		_, _, err := run(t, "", args(url+"/nlp/bert:v9")...)
		want := `model nlp/bert has no tag "v9" in registry ` + url + "; its tags: a, b, c"
		if err == nil || err.Error() != want {
			t.Errorf("%s of a missing tag:\n got %v\nwant %s", cmd, err, want)
		}
		_, _, err = run(t, "", args(url+"/nlp/nothing:v1")...)
		want = "no model nlp/nothing in registry " + url + "; `modelx list " + url + "` lists its models"
		if err == nil || err.Error() != want {
			t.Errorf("%s of a missing model:\n got %v\nwant %s", cmd, err, want)
		}
	}
}

// TestPlainHTTPRegistryHints: a modelx:// URI (HTTPS unless it says
// ?insecure=true) or an https:// reference to a plain HTTP registry fails
// with the reference that works.
func TestPlainHTTPRegistryHints(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	host := strings.TrimPrefix(url, "http://")
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: plain\n"), 0o644)
	os.WriteFile(filepath.Join(model, "README.md"), []byte("# plain\n"), 0o644)
	mustRun(t, "push", "-q", url+"/nlp/bert:v1", model)

	for _, tc := range []struct{ ref, fixed string }{
		{"modelx://" + host + "/nlp/bert:v1", "modelx://" + host + "/nlp/bert:v1?insecure=true"},
		{"modelx://" + host + "/nlp/bert:v1?file=*.md", "modelx://" + host + "/nlp/bert:v1?file=*.md&insecure=true"},
		{"modelx://" + host + "/nlp/bert:v1?insecure=false", "modelx://" + host + "/nlp/bert:v1?insecure=true"},
	} {
		_, _, err := run(t, "", "pull", "-q", tc.ref, filepath.Join(t.TempDir(), "out"))
		want := "use '" + tc.fixed + "', or turn TLS on"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "insecure=true means plain, unencrypted HTTP") {
			t.Errorf("pull %s: %v\nwant %q", tc.ref, err, want)
		}
		mustRun(t, "pull", "-q", tc.fixed, filepath.Join(t.TempDir(), "out")) // the suggestion works
	}
	_, _, err := run(t, "", "info", "https://"+host+"/nlp/bert:v1")
	if err == nil || !strings.Contains(err.Error(), "answers in plain HTTP, not HTTPS: use "+url) {
		t.Errorf("info over https: %v", err)
	}
	_, _, err = run(t, "", "list", "modelx://"+host)
	if err == nil || !strings.Contains(err.Error(), "use 'modelx://"+host+"?insecure=true'") {
		t.Errorf("list modelx://: %v", err)
	}
}

// TestGCSaysWhatTheGracePeriodKept: a collection that deletes nothing
// because everything is younger than the grace period says so, with the
// setting's name.
func TestGCSaysWhatTheGracePeriodKept(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t) // the default grace period: an hour
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: young\n"), 0o644)
	os.WriteFile(filepath.Join(model, "weights.bin"), bytes.Repeat([]byte("y"), 5000), 0o644)
	mustRun(t, "push", "-q", url+"/nlp/bert:v1", model)
	mustRun(t, "delete", url+"/nlp/bert:v1")
	out := mustRun(t, "gc", url)
	for _, want := range []string{"deleted 0 manifests, 0 links and 0 blobs", "nothing was deleted: kept 1 manifest, 2 links and 2 blobs (" /* modelx.yaml and a pack */, "younger than the grace period of 1h0m0s (modelxd --gc-grace)"} {
		if !strings.Contains(out, want) {
			t.Errorf("gc printed\n%s\nwant %q", out, want)
		}
	}
	out = mustRun(t, "gc", url+"/nlp/bert")
	if !strings.Contains(out, "nothing was deleted: kept 1 manifest and 2 links only because") {
		t.Errorf("gc of the model printed\n%s", out)
	}
}

// TestPushListsWhatCannotBePushed: the CLI shows the scan's list and fix,
// and exits 1.
func TestPushListsWhatCannotBePushed(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: bad names\n"), 0o644)
	os.MkdirAll(filepath.Join(model, ".GIT"), 0o755)
	os.WriteFile(filepath.Join(model, ".GIT", "config"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(model, "a\x1bb"), []byte("x"), 0o644)
	_, _, err := run(t, "", "push", "-q", url+"/nlp/bert:v1", model)
	want := "2 paths in " + model + ` cannot be pushed (nothing was uploaded):
  ".GIT/" has the element ".GIT", which some filesystems treat as ".git", a reserved name: a pulled .git/hooks or .git/config would run code at the next git command in the directory
  "a\x1bb" contains a control character
rename or remove them, or leave them out with these lines in ` + filepath.Join(model, ".modelxignore") + `:
  /.GIT/
  /a?b`
	if err == nil || err.Error() != want {
		t.Fatalf("push:\n got %v\nwant %s", err, want)
	}
}

// TestPullOnAFullDisk pulls into a small tmpfs: the pull fails saying the
// disk is full, how much it needs, and that it removed its partial
// downloads, and none is left.
func TestPullOnAFullDisk(t *testing.T) {
	dir := testenv.SmallFS(t, 4<<20)
	bin := buildCLI(t)
	url := startRegistry(t)
	config := filepath.Join(t.TempDir(), "config.yaml")
	model := t.TempDir()
	os.WriteFile(filepath.Join(model, "modelx.yaml"), []byte("description: big\n"), 0o644)
	for i := range 3 { // whole-file blobs of 3 MiB: 9 MiB to a 4 MiB disk
		data := make([]byte, 3<<20)
		rand.Read(data)
		os.WriteFile(filepath.Join(model, fmt.Sprintf("part-%d.bin", i)), data, 0o644)
	}
	push := exec.Command(bin, "push", "-q", url+"/big/model:v1", model)
	push.Env = append(os.Environ(), "MODELX_CONFIG="+config)
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("push: %v %s", err, out)
	}
	cmd := exec.Command(bin, "pull", "-q", url+"/big/model:v1", filepath.Join(dir, "out"))
	cmd.Env = append(os.Environ(), "MODELX_CONFIG="+config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("pull onto a full disk: %v\nstderr: %s", err, stderr.String())
	}
	msg := stderr.String()
	t.Logf("stderr: %s", msg)
	out := filepath.Join(dir, "out")
	for _, want := range []string{
		"modelx: the disk holding " + out + " is full: this pull fetches ",
		" in 4 files, ",
		"removed the partial downloads in " + filepath.Join(out, ".modelx", "tmp") + ", which would keep the disk full",
		"free space (or give the directory a larger volume) and pull again",
		"no space left on device",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".modelx", "tmp", "*")); len(left) > 0 {
		t.Errorf("partial downloads left on the full disk: %v", left)
	}
}
