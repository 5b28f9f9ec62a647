package fs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		return storage.Wrap(s, nil)
	})
}

// TestWrap: the wrapped store has exactly the backend's capabilities.
func TestWrap(t *testing.T) {
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.CheckWrap(t, st)
	if got := storagetest.Capabilities(st); !slices.Equal(got, []string{"ConditionalWriter", "ConditionalReader"}) {
		t.Errorf("fs capabilities: %v", got)
	}
}

func TestFull(t *testing.T) {
	const capacity = 4 << 20
	st, err := fs.New(testenv.SmallFS(t, capacity))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.RunFull(t, storage.Wrap(st, nil), capacity)
}

// TestOpenByName: the backend registers as "fs" and takes only its dir.
func TestOpenByName(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := storage.Open(ctx, fs.BackendName, storage.Params{fs.ParamDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "a/b", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatalf("the opened store does not write in its dir: %v", err)
	}
	for params, want := range map[*storage.Params]string{
		{}:                                `fs: the dir setting is required`,
		{fs.ParamDir: dir, "bucket": "x"}: `fs: unknown setting "bucket" (known: dir)`,
	} {
		if _, err := storage.Open(ctx, fs.BackendName, *params); err == nil || err.Error() != want {
			t.Errorf("Open(%v) = %v, want %q", *params, err, want)
		}
	}
}
