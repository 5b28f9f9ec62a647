package client

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDirStatterIsOSStat: what a scan learns through fstatat is what
// os.Stat says, for files, modes, a link to a file and a named pipe, from
// one directory to the next and back.
func TestDirStatterIsOSStat(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "a.txt"), filepath.Join(sub, "b.bin"), filepath.Join(dir, "c.sh")}
	for i, p := range paths {
		if err := os.WriteFile(p, make([]byte, 100*i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(paths[2], 0o4755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(sub, "link")
	if err := os.Symlink(paths[0], link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newDirStatter()
	defer s.close()
	for _, p := range append(paths, link, fifo, sub, paths[0]) {
		got, err := s.stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name() != want.Name() || got.Size() != want.Size() || got.Mode() != want.Mode() ||
			!got.ModTime().Equal(want.ModTime()) || inodeOf(got) != inodeOf(want) || keyOf(got) != keyOf(want) {
			t.Errorf("%s: got %s %d %v %v ino %d, want %s %d %v %v ino %d", p, got.Name(), got.Size(), got.Mode(), got.ModTime(), inodeOf(got),
				want.Name(), want.Size(), want.Mode(), want.ModTime(), inodeOf(want))
		}
	}
	got, err := s.lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.Lstat(link); got.Mode() != want.Mode() || keyOf(got) != keyOf(want) {
		t.Errorf("lstat of a link: %v %+v, want %v %+v", got.Mode(), keyOf(got), want.Mode(), keyOf(want))
	}
	if _, err := s.stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("a missing file: %v, want not-exist", err)
	}
}

// TestDirStatterRelative: a scan of "." stats names with no folder in them.
func TestDirStatterRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	s := newDirStatter()
	defer s.close()
	for _, p := range []string{"a.txt", "a.txt", "./a.txt"} {
		fi, err := s.stat(p)
		if err != nil || fi.Size() != 1 {
			t.Fatalf("stat %q: %v %v", p, fi, err)
		}
	}
	files, _, err := scanDir(".")
	if err != nil || len(files) != 1 || files[0].name != "a.txt" {
		t.Fatalf("scanDir(.): %v %v", files, err)
	}
}
