package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"modelx.io/modelx/client"
)

// cacheBoots reads dir's hash cache as file name → the boot recorded with
// it ("" for a file recorded durable).
func cacheBoots(t *testing.T, dir string) map[string]string {
	t.Helper()
	boots := client.CacheBoots(dir, testChunks)
	if len(boots) == 0 {
		t.Fatalf("%s has no hash cache", dir)
	}
	return boots
}

// loseBytes does to name what a power failure can do to a file that was
// never written back: its bytes are zeros, while its size, mtime and inode
// are those the cache recorded.
func loseBytes(t *testing.T, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, fi.Size()), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestPullDistrustsWritesOfAnEarlierBoot: a pull does not fsync; it records
// the boot each file was written in, and a pull in a later boot hashes such
// a file again instead of trusting the cache, so bytes a power failure
// lost are fetched again. PullOptions.Sync records the files durable.
func TestPullDistrustsWritesOfAnEarlierBoot(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("boot IDs are Linux's; elsewhere each file is fsynced")
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skipf("no boot ID: %v", err)
	}
	thisBoot := strings.TrimSpace(string(boot))
	ctx := context.Background()
	e := fsEnv(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: durable\n"), 0o644)
	write(t, src, "weights.bin", random(7, 600<<10), 0o644)      // chunked
	write(t, src, "config.json", []byte(`{"layers": 2}`), 0o644) // packed
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "durable/m:v1"), src); err != nil {
		t.Fatal(err)
	}

	dst := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "durable/m:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, b := range cacheBoots(t, dst) {
		if b != thisBoot {
			t.Errorf("%s recorded with boot %q, want this boot's %q", name, b, thisBoot)
		}
	}

	// In the same boot the page cache holds what the pull wrote: a file
	// with the recorded size, mtime and inode is trusted, not read.
	loseBytes(t, dst, "weights.bin")
	res, err := c.Pull(ctx, ref(t, e, "durable/m:v1"), dst, client.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DownloadedBytes != 0 {
		t.Fatalf("same boot: the pull fetched %d bytes; the cache should have been trusted", res.DownloadedBytes)
	}

	// After a reboot the same file is hashed, found wrong, and fetched.
	if err := client.RebootCache(dst, testChunks); err != nil {
		t.Fatal(err)
	}
	res, err = c.Pull(ctx, ref(t, e, "durable/m:v1"), dst, client.PullOptions{})
	if err != nil {
		t.Fatalf("after a reboot: %v", err)
	}
	if res.DownloadedBytes == 0 {
		t.Fatal("after a reboot: nothing fetched; the lost bytes were trusted")
	}
	sameTree(t, src, dst)
	boots := cacheBoots(t, dst)
	if boots["weights.bin"] != thisBoot || boots["config.json"] != "" {
		t.Errorf("after a reboot: boots %v; want weights.bin fetched again in this boot, config.json hashed from disk", boots)
	}

	// Sync: the files are flushed before Pull returns, and recorded durable.
	synced := t.TempDir()
	if _, err := c.Pull(ctx, ref(t, e, "durable/m:v1"), synced, client.PullOptions{Sync: true}); err != nil {
		t.Fatal(err)
	}
	for name, b := range cacheBoots(t, synced) {
		if b != "" {
			t.Errorf("Sync: %s recorded with boot %q, want durable", name, b)
		}
	}
	sameTree(t, src, synced)
}

// TestPullResumesOverLostPartialBytes: the partial download a killed pull
// left may hold what a crash made of it; the pull then fetches the blob
// whole instead of reporting the registry's blob corrupt.
func TestPullResumesOverLostPartialBytes(t *testing.T) {
	ctx := context.Background()
	e := fsEnv(t)
	src := t.TempDir()
	write(t, src, "modelx.yaml", []byte("description: partial\n"), 0o644)
	write(t, src, "weights.bin", random(8, 12<<10), 0o644) // one whole-file blob
	c := newClient(client.Options{})
	if _, err := c.Push(ctx, ref(t, e, "durable/part:v1"), src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	tmp := filepath.Join(dst, ".modelx", "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256Hex(random(8, 12<<10))
	if err := os.WriteFile(filepath.Join(tmp, sum+".part"), make([]byte, 4<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pull(ctx, ref(t, e, "durable/part:v1"), dst, client.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
