package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/storage/fs"
)

// blobTraffic counts what a registry received and sent in blob requests:
// body bytes of blob PUTs it read, blob GETs it answered, and the query of
// each blob PUT.
type blobTraffic struct {
	mu       sync.Mutex
	received int64
	gets     int
	puts     []string // each PUT's query ("from=…" for a mount)
}

func (b *blobTraffic) take() (received int64, gets int, puts []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	received, gets, puts = b.received, b.gets, b.puts
	b.received, b.gets, b.puts = 0, 0, nil
	return
}

type trafficBody struct {
	io.ReadCloser
	b *blobTraffic
}

func (c trafficBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.b.mu.Lock()
	c.b.received += int64(n)
	c.b.mu.Unlock()
	return n, err
}

// startCountingRegistry starts a registry on storage/fs that counts its
// blob traffic. A non-empty token makes the registry require it, for
// push, pull and delete of every model.
func startCountingRegistry(t *testing.T, token string) (string, *blobTraffic) {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		opts.Authenticator, err = auth.New(auth.Config{Robots: []auth.Robot{{Name: "robot", TokenSHA256: hex.EncodeToString(sum[:])}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts.Policy = &auth.Policy{Rules: []auth.Rule{{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push, auth.Delete}, Robots: []string{"robot"}}}}
	}
	reg, err := registry.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	traffic := &blobTraffic{}
	h := reg.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			traffic.mu.Lock()
			switch r.Method {
			case http.MethodPut:
				traffic.puts = append(traffic.puts, r.URL.RawQuery)
				// A copy of the request: the server must still see its own
				// body, to know whether it asked for it (Expect: 100-continue).
				r = r.WithContext(r.Context())
				r.Body = trafficBody{ReadCloser: r.Body, b: traffic}
			case http.MethodGet:
				traffic.gets++
			}
			traffic.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, traffic
}

// pushJSON pushes dir as ref and returns push's JSON result.
func pushJSON(t *testing.T, ref, dir string) map[string]any {
	t.Helper()
	var res map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "push", ref, dir, "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestTag gives versions new tags, moves one, and checks that no blob
// moves, that the move is told (by tag and by push), and that bad
// arguments are refused with the fix.
func TestTag(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url, traffic := startCountingRegistry(t, "")
	model := filepath.Join(t.TempDir(), "bert")
	mustRun(t, "init", model)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("one ", 300000)), 0o644)
	v1 := pushJSON(t, url+"/nlp/bert:v1", model)["digest"].(string)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("two ", 300000)), 0o644)
	v2 := pushJSON(t, url+"/nlp/bert:v2", model)["digest"].(string)
	traffic.take()

	out := mustRun(t, "tag", url+"/nlp/bert:v1", "prod")
	if !strings.Contains(out, "tagged "+url+"/nlp/bert@prod\ndigest: "+v1) || strings.Contains(out, "→") {
		t.Fatalf("tag of a new tag:\n%s", out)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "tag", url+"/nlp/bert@"+v2, url+"/nlp/bert:prod", "-o", "json")), &res); err != nil ||
		res["digest"] != v2 || res["previous_digest"] != v1 || res["reference"] != url+"/nlp/bert@prod" {
		t.Fatalf("tag -o json moving prod: %v %v", res, err)
	}
	out = mustRun(t, "tag", url+"/nlp/bert:v1", "prod")
	if want := "prod: " + v2 + " → " + v1 + "\n"; !strings.HasSuffix(out, want) {
		t.Fatalf("tag moving prod back:\n%s\nwant it to end with %q", out, want)
	}
	if out := mustRun(t, "tag", url+"/nlp/bert:v1", "prod"); strings.Contains(out, "→") {
		t.Fatalf("tag naming the version prod names already said it moved:\n%s", out)
	}
	if received, gets, puts := traffic.take(); received != 0 || gets != 0 || len(puts) != 0 {
		t.Fatalf("tag moved blobs: %d bytes received in %d PUTs, %d GETs", received, len(puts), gets)
	}
	if out := mustRun(t, "list", url+"/nlp/bert"); !regexp.MustCompile(`prod\s+` + regexp.QuoteMeta(shortDigest(v1))).MatchString(out) {
		t.Fatalf("list after tag:\n%s", out)
	}

	// push tells the same when it moves a tag.
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("three ", 300000)), 0o644)
	out = mustRun(t, "push", url+"/nlp/bert:prod", model)
	v3 := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if v3 == nil || !strings.HasSuffix(out, "prod: "+v1+" → "+v3[1]+"\n") {
		t.Fatalf("push moving prod:\n%s", out)
	}
	if res := pushJSON(t, url+"/nlp/bert:prod", model); res["previous_digest"] != nil {
		t.Fatalf("push of what prod names already has a previous_digest: %v", res)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{url + "/nlp/bert:v1", "release/2"}, `for example "release-2"`},
		{[]string{url + "/nlp/bert:v1", ".hidden"}, `for example "hidden"`},
		{[]string{url + "/nlp/bert", "prod"}, "names no version: give SRC:TAG or SRC@sha256:"},
		{[]string{url + "/nlp/bert:v1", url + "/nlp/other:prod"}, "use modelx copy"},
		{[]string{url + "/nlp/bert:v1", url + "/nlp/bert@" + v2}, "names a digest: give a tag name"},
		{[]string{url + "/nlp/bert:v9", "prod"}, `no tag "v9"`},
	} {
		_, _, err := run(t, "", append([]string{"tag"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("modelx tag %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	if out := mustRun(t, "list", url+"/nlp/bert"); strings.Contains(out, "release") || strings.Contains(out, "hidden") {
		t.Fatalf("a refused tag was written:\n%s", out)
	}
}

// TestCopy copies versions between two models of one registry (mounted:
// no blob byte is uploaded) and between two registries that each require
// their own token (only the blobs the destination lacks are sent; a second
// copy sends nothing), and checks what copy says.
func TestCopy(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	srcURL, srcTraffic := startCountingRegistry(t, "source-robot-token-0123456789")
	dstURL, dstTraffic := startCountingRegistry(t, "destination-robot-token-98765")
	mustRun(t, "repo", "add", "src", srcURL)
	mustRun(t, "repo", "add", "dst", dstURL)
	mustRun(t, "login", "src", "--token", "source-robot-token-0123456789")
	mustRun(t, "login", "dst", "--token", "destination-robot-token-98765")

	model := filepath.Join(t.TempDir(), "bert")
	mustRun(t, "init", model)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte(strings.Repeat("weights ", 400000)), 0o644)
	os.WriteFile(filepath.Join(model, "tokenizer.json"), []byte(`{"vocab": 1}`), 0o644)
	v1 := pushJSON(t, "src/nlp/bert:v1", model)
	os.WriteFile(filepath.Join(model, "tokenizer.json"), []byte(`{"vocab": 2}`), 0o644)
	v2 := pushJSON(t, "src/nlp/bert:v2", model)
	srcTraffic.take()
	copyJSON := func(args ...string) map[string]any {
		t.Helper()
		var res map[string]any
		if err := json.Unmarshal([]byte(mustRun(t, append(append([]string{"copy"}, args...), "-o", "json")...)), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}

	// One registry: every blob is mounted, none uploaded.
	res := copyJSON("src/nlp/bert:v1", "src/team/bert")
	received, _, puts := srcTraffic.take()
	if received != 0 || res["blobs_copied"].(float64) != 0 || res["blobs_mounted"] != v1["blobs_transferred"] || res["digest"] != v1["digest"] ||
		res["destination"] != srcURL+"/team/bert@v1" {
		t.Fatalf("copy within a registry: %v; the registry received %d blob bytes", res, received)
	}
	for _, q := range puts {
		if q != "from=nlp%2Fbert" {
			t.Fatalf("a blob PUT of the copy within a registry had the query %q, not a mount from nlp/bert", q)
		}
	}

	// Two registries: every blob the first time, then nothing.
	res = copyJSON("src/nlp/bert:v1", "dst/nlp/bert:v1")
	received, _, _ = dstTraffic.take()
	if stored := int64(v1["uploaded_bytes"].(float64)); received != stored || int64(res["copied_bytes"].(float64)) != stored || res["blobs_mounted"].(float64) != 0 {
		t.Fatalf("first copy across registries: %v; the destination received %d blob bytes, want the %d of the version", res, received, stored)
	}
	out := mustRun(t, "copy", "src/nlp/bert:v1", "dst/nlp/bert:v1")
	if received, _, puts := dstTraffic.take(); received != 0 || len(puts) != 0 || !strings.Contains(out, "mounted 0 B in 0 blobs, copied 0 B in 0 blobs") {
		t.Fatalf("second copy across registries sent %d bytes in %d PUTs:\n%s", received, len(puts), out)
	}
	// v2 differs from v1 in one file: only its pack moves, and the tag
	// v1 of the destination moves to it.
	res = copyJSON("src/nlp/bert:v2", "dst/nlp/bert:v1")
	received, _, puts = dstTraffic.take()
	if res["previous_digest"] != v1["digest"] || res["digest"] != v2["digest"] || len(puts) != 1 || received != int64(res["copied_bytes"].(float64)) ||
		received == 0 || received >= int64(v2["uploaded_bytes"].(float64)+v2["skipped_bytes"].(float64)) {
		t.Fatalf("copy of v2 over v1: %v; the destination received %d bytes in %d PUTs", res, received, len(puts))
	}
	out = mustRun(t, "copy", "src/nlp/bert:v1", "dst/nlp/bert:v1")
	if !strings.HasSuffix(out, "v1: "+v2["digest"].(string)+" → "+v1["digest"].(string)+"\n") {
		t.Fatalf("copy moving v1 back:\n%s", out)
	}
	dir := filepath.Join(t.TempDir(), "pulled")
	if pulled := mustRun(t, "pull", "dst/nlp/bert:v1", dir); !strings.Contains(pulled, v1["digest"].(string)) {
		t.Fatalf("pull of the copy:\n%s", pulled)
	}

	// Each registry takes only its own token.
	mustRun(t, "logout", "dst")
	if _, _, err := run(t, "", "copy", "src/nlp/bert:v2", "dst/nlp/bert:v9"); err == nil || !strings.Contains(err.Error(), "modelx login "+dstURL) {
		t.Fatalf("copy to a registry without its login: %v", err)
	}
}
