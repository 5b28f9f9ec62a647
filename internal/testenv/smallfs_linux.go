package testenv

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of size bytes on a new temp directory and returns
// it, for tests of a full disk; the mount goes at cleanup. Mounting needs
// root (or CAP_SYS_ADMIN): without it the test fails when CI=true and
// skips elsewhere.
func SmallFS(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		msg := fmt.Sprintf("mount a %d-byte tmpfs for a full-disk test: %v (needs root or CAP_SYS_ADMIN)", size, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
