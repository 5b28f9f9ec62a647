package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Snapshot describes everything under dir, dir itself and .modelx
// included: each entry's type and mode, size, mtime and, for a regular
// file, content. Two snapshots are equal only if nothing was written.
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", data)
		}
		rel, err := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = desc
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SameSnapshot fails t when dir no longer matches before, a Snapshot of it.
func SameSnapshot(t testing.TB, before map[string]string, dir string) {
	t.Helper()
	after := Snapshot(t, dir)
	for name, desc := range before {
		if after[name] != desc {
			t.Fatalf("%s changed: was %q, now %q", name, desc, after[name])
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Fatalf("%s appeared", name)
		}
	}
}
