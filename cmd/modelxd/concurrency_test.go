package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage/s3"
)

// TestConcurrentPushesAcrossProcesses runs two modelxd processes on one S3
// bucket, one redirecting and one proxying, both collecting garbage every
// 100 ms, and pushes through them at once: 50 different tags of one model,
// and 10 pushes of one tag. The pushes reuse a blob that is old garbage
// when they start, so the collections race them for it. Every push must
// complete, every tag must be there, the contested tag must name one of
// the manifests pushed to it, and no tag may name a missing blob.
func TestConcurrentPushesAcrossProcesses(t *testing.T) {
	bin := buildModelxd(t)
	srv := testenv.StartS3(t)
	ctx := context.Background()
	st, err := s3.New(ctx, s3.Config{Endpoint: srv.URL, Bucket: "shared", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	common := []string{"--s3-url", srv.URL, "--s3-bucket", "shared", "--s3-access-key", srv.AccessKey, "--s3-path-style",
		"--gc-interval", "100ms", "--gc-grace", "2s"}
	env := []string{"MODELXD_S3_SECRET_KEY=" + srv.SecretKey}
	redirectURL, _, _ := startModelxd(t, bin, env, append(common, "--enable-redirect")...)
	proxyURL, _, _ := startModelxd(t, bin, env, common...)
	servers := []string{redirectURL, proxyURL}

	// A 3 MiB weights file every push shares. It starts as garbage: pushed
	// once, untagged, and older than the grace period.
	weights := make([]byte, 3<<20)
	rand.Read(weights)
	root := t.TempDir()
	model := func(name, extra string) string {
		dir := filepath.Join(root, name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("description: concurrency\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "weights.bin"), weights, 0o644)
		os.WriteFile(filepath.Join(dir, "extra.txt"), []byte(extra), 0o644)
		return dir
	}
	c := client.New(client.Options{Concurrency: 2})
	refOf := func(i int, s string) client.Reference {
		r, err := client.ParseReference(servers[i%len(servers)]+"/"+s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if _, err := c.Push(ctx, refOf(0, "team/old:v1"), model("old", "old")); err != nil {
		t.Fatal(err)
	}
	if err := c.API(redirectURL).DeleteManifest(ctx, "team", "old", "v1"); err != nil {
		t.Fatal(err)
	}
	// The collections find it old once its grace period has passed on the
	// processes' wall clocks: they then delete its untagged manifest.
	testenv.WaitFor(t, time.Minute, "a collection to find the untagged manifest old", func() bool {
		return sumMetric(t, servers, "modelxd_gc_deleted_total", `{kind="manifest"}`) >= 1
	})

	const tags, sameTag = 50, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	contested := map[digest.Digest]bool{}
	for i := range tags + sameTag {
		dir := model(fmt.Sprintf("m%02d", i), fmt.Sprintf("push %d", i))
		wg.Go(func() {
			tag := fmt.Sprintf("team/model:t%02d", i)
			if i >= tags {
				tag = "team/model:latest"
			}
			res, err := c.Push(ctx, refOf(i, tag), dir)
			if err != nil {
				t.Errorf("push %s: %v", tag, err)
				return
			}
			if i >= tags {
				mu.Lock()
				contested[res.Digest] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Let more collections run over the result, then check it through
	// both processes. Of three more that finish, at most two (one per
	// process) were under way when the pushes ended.
	ran := sumMetric(t, servers, "modelxd_gc_runs_total", `{result="ok"}`)
	testenv.WaitFor(t, time.Minute, "three more collections", func() bool {
		return sumMetric(t, servers, "modelxd_gc_runs_total", `{result="ok"}`) >= ran+3
	})
	for _, url := range servers {
		api := c.API(url)
		idx, err := api.Index(ctx, "team", "model", "")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range idx.Manifests {
			names = append(names, d.Name)
		}
		slices.Sort(names)
		if len(names) != tags+1 || slices.Compact(slices.Clone(names)) == nil || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("%s: index of team/model has %d tags, want %d distinct: %v", url, len(names), tags+1, names)
		}
		for _, desc := range idx.Manifests {
			if desc.Name == "latest" && !contested[desc.Digest] {
				t.Fatalf("tag latest names %s, which none of its pushes wrote", desc.Digest)
			}
			m, _, _, err := api.GetManifest(ctx, "team", "model", string(desc.Digest))
			if err != nil {
				t.Fatalf("tag %s: %v", desc.Name, err)
			}
			for _, b := range m.Referenced() {
				if ok, err := api.BlobExists(ctx, "team", "model", b.Digest, b.Size); err != nil || !ok {
					t.Fatalf("tag %s names blob %s (%s), which is gone: %v", desc.Name, b.Digest, b.Name, err)
				}
			}
		}
	}
	dst := t.TempDir()
	if _, err := c.Pull(ctx, refOf(1, "team/model:t07"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "extra.txt")); string(got) != "push 7" {
		t.Fatalf("pulled extra.txt %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "weights.bin")); digest.FromBytes(got) != digest.FromBytes(weights) {
		t.Fatal("pulled weights differ")
	}
	resp, err := http.Get(redirectURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("global index: %d", resp.StatusCode)
	}
	_ = spec.ConfigFileName
}

// sumMetric sums the series name{labels} over the processes' metrics.
func sumMetric(t *testing.T, servers []string, name, labels string) float64 {
	t.Helper()
	var sum float64
	for _, url := range servers {
		sum += testenv.Metric(t, testenv.Scrape(t, url), name, labels)
	}
	return sum
}
