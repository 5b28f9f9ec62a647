package client

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBack writes a file's range to disk now and waits for it, as the
// worker that wrote it, while other workers keep downloading. The fsync
// that ends the file then has little left to do, and a pull never holds
// more than its concurrency times a chunk in dirty page cache, which in a
// pod counts against the memory limit. It is a hint: an error changes
// nothing, as the fsync still makes the bytes durable.
func writeBack(f *os.File, offset, length int64) {
	_ = unix.SyncFileRange(int(f.Fd()), offset, length,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}
