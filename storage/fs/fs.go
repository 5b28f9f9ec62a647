//go:build unix

// Package fs is the local-filesystem storage backend. Writes go to a temp
// file that is fsynced and renamed into place, so a partial write is never
// visible; conditional writes hold a striped flock, so they are safe across
// goroutines and processes sharing one directory.
package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"modelx.io/modelx/storage"
)

// stateDir holds temp files and lock stripes; it is never a key.
const stateDir = ".modelx"

// lockStripes bounds the number of lock files.
const lockStripes = 256

// staleTempAge is how old a temp file must be before New removes it as a leftover of a crash.
const staleTempAge = 24 * time.Hour

// Store is a storage.Storage on a local directory. It trusts its keys:
// reach it through storage.Open or storage.Wrap, which validate them, so
// that no key names a file outside the directory.
type Store struct {
	root string
}

var (
	_ storage.Storage           = (*Store)(nil)
	_ storage.ConditionalWriter = (*Store)(nil)
)

// BackendName is the name the backend is registered under (storage.Open).
const BackendName = "fs"

// ParamDir is the one setting of the backend: the directory to store in.
const ParamDir = "dir"

func init() { storage.Register(BackendName, open) }

// open is the backend's storage.Factory: New on the directory ParamDir names.
func open(_ context.Context, params storage.Params) (storage.Storage, error) {
	if err := params.Check(BackendName, ParamDir); err != nil {
		return nil, err
	}
	if params[ParamDir] == "" {
		return nil, fmt.Errorf("%s: the %s setting is required", BackendName, ParamDir)
	}
	return New(params[ParamDir])
}

// New opens (and creates) a store rooted at dir and removes temp files that
// crashed writers left behind more than a day ago.
func New(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{tempDir(root), lockDir(root)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create storage directory: %w", err)
		}
	}
	s := &Store{root: root}
	s.removeStaleTemps()
	return s, nil
}

// Root returns the absolute directory the store lives in.
func (s *Store) Root() string { return s.root }

func tempDir(root string) string { return filepath.Join(root, stateDir, "tmp") }
func lockDir(root string) string { return filepath.Join(root, stateDir, "locks") }

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(tempDir(s.root))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			_ = os.Remove(filepath.Join(tempDir(s.root), e.Name()))
		}
	}
}

// path is the file of key. Keys are valid (storage.ValidateKey) by the
// time they get here: storage.Wrap checks them.
func (s *Store) path(key string) (string, error) {
	if key == stateDir || strings.HasPrefix(key, stateDir+"/") {
		return "", fmt.Errorf("%w: %q is reserved", storage.ErrInvalidKey, key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func infoOf(key string, fi os.FileInfo) storage.Info {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = uint64(st.Ino)
	}
	return storage.Info{
		Key:     key,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
		// Every write renames a new file into place, so inode, mtime and
		// size together change on every write.
		ETag: fmt.Sprintf("%x-%x-%x", ino, fi.ModTime().UnixNano(), fi.Size()),
	}
}

func notFound(key string, err error) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %s", storage.ErrNotFound, key)
	}
	return err
}

// Stat implements storage.Storage.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.Info{}, notFound(key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.Info{}, fmt.Errorf("%w: %s", storage.ErrNotFound, key)
	}
	return infoOf(key, fi), nil
}

// ReaderIfChanged implements storage.ConditionalReader: one stat when the
// object is unchanged.
func (s *Store) ReaderIfChanged(ctx context.Context, key, etag string) (io.ReadCloser, storage.Info, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, storage.Info{}, err
	}
	if info.ETag == etag {
		return nil, info, fmt.Errorf("%w: %s", storage.ErrNotModified, key)
	}
	return s.Reader(ctx, key, 0, -1)
}

// Reader implements storage.Storage.
func (s *Store) Reader(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storage.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, storage.Info{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, storage.Info{}, notFound(key, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%w: %s", storage.ErrNotFound, key)
		}
		return nil, storage.Info{}, err
	}
	info := infoOf(key, fi)
	if offset < 0 || offset > info.Size {
		f.Close()
		return nil, storage.Info{}, fmt.Errorf("%w: offset %d of %s (%d bytes)", storage.ErrInvalidRange, offset, key, info.Size)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, storage.Info{}, err
		}
	}
	if length < 0 {
		return f, info, nil
	}
	return readCloser{Reader: io.LimitReader(f, length), Closer: f}, info, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// writeTemp copies exactly size bytes from r, verified against sha256sum
// when set, into a new fsynced temp file and returns its path.
func (s *Store) writeTemp(r io.Reader, size int64, sha256sum []byte) (string, error) {
	f, err := os.CreateTemp(tempDir(s.root), "put-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if _, err := io.Copy(f, storage.NewVerifyingReader(r, size, sha256sum)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// commit moves the temp file to dst and makes the rename durable.
func commit(tmp, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Put implements storage.Storage.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, sha256sum []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: size is required", key)
	}
	tmp, err := s.writeTemp(r, size, sha256sum)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, noSpace(err))
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := commit(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, noSpace(err))
	}
	return nil
}

// PutIfAbsent implements storage.ConditionalWriter.
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.conditionalPut(key, data, func(current storage.Info, exists bool) bool { return !exists })
}

// PutIfMatch implements storage.ConditionalWriter.
func (s *Store) PutIfMatch(ctx context.Context, key string, data []byte, etag string) error {
	return s.conditionalPut(key, data, func(current storage.Info, exists bool) bool {
		return exists && current.ETag == etag
	})
}

func (s *Store) conditionalPut(key string, data []byte, allowed func(storage.Info, bool) bool) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, noSpace(err))
	}
	defer os.Remove(tmp)
	unlock, err := s.lock(key)
	if err != nil {
		return err
	}
	defer unlock()
	var current storage.Info
	fi, err := os.Stat(p)
	exists := err == nil
	if exists {
		current = infoOf(key, fi)
	} else if !errors.Is(err, iofs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return err
	}
	if !allowed(current, exists) {
		return fmt.Errorf("%w: %s", storage.ErrPreconditionFailed, key)
	}
	if err := commit(tmp, p); err != nil {
		return fmt.Errorf("put %s: %w", key, noSpace(err))
	}
	return nil
}

// noSpace marks a write that failed for want of space or quota (ENOSPC,
// EDQUOT) with storage.ErrInsufficientStorage, keeping the OS error.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", storage.ErrInsufficientStorage, err)
	}
	return err
}

// lock takes the exclusive flock of the key's stripe; flock excludes other
// processes and, since each call opens its own file, other goroutines.
func (s *Store) lock(key string) (func(), error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	name := filepath.Join(lockDir(s.root), fmt.Sprintf("%03d", h.Sum32()%lockStripes))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// List implements storage.Storage, in lexical key order: each directory
// is read sorted as if its subdirectories' names ended in '/', which is
// how their keys continue.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	// Start at the deepest directory the prefix names, then filter by prefix.
	dir := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i+1]
	}
	return s.list(ctx, dir, prefix, fn)
}

// list calls fn for the objects under the directory of the key prefix dir
// ("" or ending in '/') whose keys start with prefix, in key order.
func (s *Store) list(ctx context.Context, dir, prefix string, fn func(storage.Info) error) error {
	entries, err := os.ReadDir(filepath.Join(s.root, filepath.FromSlash(dir)))
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // nothing there, or removed meanwhile
		}
		return err
	}
	keyOf := func(e iofs.DirEntry) string {
		if e.IsDir() {
			return dir + e.Name() + "/"
		}
		return dir + e.Name()
	}
	slices.SortFunc(entries, func(a, b iofs.DirEntry) int { return strings.Compare(keyOf(a), keyOf(b)) })
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := keyOf(e)
		switch {
		case e.IsDir():
			if key == stateDir+"/" || !(strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key)) {
				continue
			}
			if err := s.list(ctx, key, prefix, fn); err != nil {
				return err
			}
		case e.Type().IsRegular() && strings.HasPrefix(key, prefix):
			fi, err := e.Info()
			if errors.Is(err, iofs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if err := fn(infoOf(key, fi)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements storage.Storage.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	unlock, err := s.lock(key)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
