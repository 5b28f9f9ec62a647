package client

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a file's range to disk
// now, without waiting for it, so the fsync that ends the file waits only
// for what was written last instead of the whole file. It is a hint: an
// error changes nothing, as the fsync still makes the bytes durable.
func startWriteback(f *os.File, offset, length int64) {
	_ = unix.SyncFileRange(int(f.Fd()), offset, length, unix.SYNC_FILE_RANGE_WRITE)
}
