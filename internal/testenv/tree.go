package testenv

import (
	"io/fs"
	"path/filepath"
)

// WalkModelFiles calls fn for everything under dir but directories, with
// its slash-separated path relative to dir, skipping the .modelx state
// directory at the top (the client's hash cache and partial downloads, or
// the filesystem backend's temp files and locks).
func WalkModelFiles(dir string, fn func(rel, path string, d fs.DirEntry) error) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".modelx" {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(rel, p, d)
	})
}
