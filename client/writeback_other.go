//go:build !linux

package client

import "os"

// startWriteback is a no-op where sync_file_range(2) does not exist; the
// fsync that ends the file makes the bytes durable either way.
func startWriteback(f *os.File, offset, length int64) {}
