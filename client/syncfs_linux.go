package client

import (
	"os"

	"golang.org/x/sys/unix"
)

// canSyncFS reports whether syncFS flushes a whole filesystem at once.
const canSyncFS = true

// syncFS writes every dirty page of the filesystem holding dir to disk
// (syncfs(2)): one call where fsyncing each file of a pull costs one each.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
