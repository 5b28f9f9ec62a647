//go:build unix

package client

import (
	"os"
	"syscall"
)

// inodeOf is fi's inode number, part of the hash cache's key.
func inodeOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
