package fs_test

import (
	"testing"

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
