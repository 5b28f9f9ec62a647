//go:build !linux

package client

import (
	"errors"
	"io/fs"
	"os"
)

// createUnnamed is not available here: pulls write named temp files.
func createUnnamed(dir string, perm fs.FileMode) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// linkUnnamed is not available here.
func linkUnnamed(f *os.File, dst string) error { return errors.ErrUnsupported }
