//go:build !linux

package client

import (
	"io/fs"
	"os"
)

// dirStatter is os.Stat where fstatat is not used.
type dirStatter struct{}

func newDirStatter() *dirStatter { return &dirStatter{} }

func (s *dirStatter) stat(path string) (fs.FileInfo, error) { return os.Stat(path) }

func (s *dirStatter) lstat(path string) (fs.FileInfo, error) { return os.Lstat(path) }

func (s *dirStatter) close() {}
