package client

import (
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed opens a new file with no name in dir (O_TMPFILE) with
// permissions perm (less the umask). Until linkUnnamed names it, no
// directory lists it, and if the process dies it is freed: nothing
// half-written is ever visible.
func createUnnamed(dir string, perm fs.FileMode) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return nil, &fs.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// linkUnnamed gives f, from createUnnamed, the name dst in the same
// filesystem. It fails with fs.ErrExist when something is at dst, which
// it never follows or replaces.
func linkUnnamed(f *os.File, dst string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name() + " (unnamed)", New: dst, Err: err}
	}
	return nil
}
