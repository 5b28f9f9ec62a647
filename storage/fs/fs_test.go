package fs_test

import (
	"testing"

	"modelx.io/modelx/internal/testenv"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
	"modelx.io/modelx/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestFull(t *testing.T) {
	const capacity = 4 << 20
	st, err := fs.New(testenv.SmallFS(t, capacity))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.RunFull(t, st, capacity)
}
