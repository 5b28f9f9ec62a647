package client

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// treeWriter writes a pull's files into its directory, and owns what
// keeps those writes safe: names checked (checkName), no write through a
// symbolic link or out of the directory (parentsExist, refuseDir,
// ensureDir), bytes written to unnamed or temp files and put in place
// only once complete and verified (place, link), with the permissions the
// manifest gives, and the hash cache told of each file placed or removed.
// What is in the way goes only as the plan allowed (allow). It is safe
// for concurrent use.
type treeWriter struct {
	dir   string // the directory pulled into, absolute
	tmp   string // dir/.modelx/tmp: temp files and partial downloads
	cache *hashCache

	tmpPrefix string        // temp file names: unique to this pull
	tmpSeq    atomic.Uint64 // and numbered within it
	dirsMu    sync.Mutex
	dirs      map[string]bool // directories this pull's writes checked or created

	// Set by allow, read-only while writing.
	replaceFiles map[string]bool     // files where the version has a directory, which the writes may remove
	clearDirs    map[string][]string // directories where the version has a file → the known files in them, which the writes may remove

	unnamedOnce sync.Once
	unnamedOK   bool // small files are written as unnamed files (see unnamedWorks)

	// boot is the boot a file written now is recorded under, to be hashed
	// again after a crash; "" where there is no boot ID, and every large
	// file is fsynced before it gets its name instead (see durable.go).
	boot string
	// syncSmall fsyncs small files too: PullOptions.Sync where the
	// filesystem cannot be flushed at once (canSyncFS).
	syncSmall bool
}

// sync makes every file written so far durable, and records them so.
func (w *treeWriter) sync() error {
	if canSyncFS {
		if err := syncFS(w.dir); err != nil {
			return err
		}
	}
	w.cache.markSynced()
	return nil
}

// syncEach reports whether each downloaded file is fsynced before it gets
// its name: where no boot ID tells a later run that a crash came between.
func (w *treeWriter) syncEach() bool { return w.boot == "" }

// syncFile fsyncs f where syncEach says so.
func (w *treeWriter) syncFile(f *os.File) error {
	if !w.syncEach() {
		return nil
	}
	return f.Sync()
}

// newTreeWriter writes into dir, an absolute path, with its temp files in
// dir/.modelx/tmp, recording what it places in cache.
func newTreeWriter(dir string, cache *hashCache) *treeWriter {
	return &treeWriter{dir: dir, tmp: filepath.Join(dir, stateDir, "tmp"), cache: cache, boot: cache.boot,
		tmpPrefix: fmt.Sprintf("f%08x-", rand.Uint32()), dirs: map[string]bool{},
		replaceFiles: map[string]bool{}, clearDirs: map[string][]string{}}
}

// allow lets the writes remove what plan found in the way and judged
// replaceable. It is called before the writes start.
func (w *treeWriter) allow(plan *pullPlan) {
	w.replaceFiles, w.clearDirs = plan.replaceFiles, plan.clearDirs
}

// unnamedWorks reports, once per pull, whether this filesystem can create
// unnamed files and link them into place (Linux's O_TMPFILE, on ext4, xfs,
// btrfs, tmpfs, …, and /proc mounted). Small files are then written in
// their own directory and given their name when complete, which costs
// fewer system calls than a temp file renamed across directories and
// leaves nothing behind if the pull is killed.
func (w *treeWriter) unnamedWorks() bool {
	w.unnamedOnce.Do(func() {
		if !unnamedFiles.Load() {
			return
		}
		f, err := createUnnamed(w.tmp, 0o600)
		if err != nil {
			return
		}
		defer f.Close()
		probe := w.tmpName()
		if linkUnnamed(f, probe) == nil {
			os.Remove(probe)
			w.unnamedOK = true
		}
	})
	return w.unnamedOK
}

// unnamedFiles lets tests turn unnamed files off, to cover the temp files
// other systems use.
var unnamedFiles atomic.Bool

func init() { unnamedFiles.Store(true) }

// tmpName is a new name in w.tmp, unique to this pull.
func (w *treeWriter) tmpName() string {
	return w.tmp + string(filepath.Separator) + w.tmpPrefix + strconv.FormatUint(w.tmpSeq.Add(1), 36)
}

// checkName refuses a name that spec.ValidatePath refuses: not a clean
// relative path, or with an element that is (or a filesystem would take
// for) .git or modelx's own state directory.
func checkName(name string) error {
	if err := spec.ValidatePath(name); err != nil {
		return fmt.Errorf("refusing to write %q: %v", name, err)
	}
	return nil
}

// localPath is where name lands under w.dir; name passed checkName.
func (w *treeWriter) localPath(name string) string {
	return w.dir + string(filepath.Separator) + filepath.FromSlash(name)
}

// refuseDir checks what an Lstat found at an element of name's path: a
// symbolic link or a non-directory where a directory must be is refused.
func (w *treeWriter) refuseDir(name, full string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("refusing to write %q: %s is a symbolic link, which could lead outside %s", name, full, w.dir)
	case !fi.IsDir():
		return fmt.Errorf("refusing to write %q: %s is a file, not a directory", name, full)
	}
	return nil
}

// pathsSeen memoizes what the plan found at the directories of the
// targets' paths: whether each exists as a real directory, and the files
// found where the version has a directory.
type pathsSeen struct {
	dirs  map[string]bool
	files map[string]fs.FileInfo
}

// parentsExist reports whether directory rel (relative to w.dir, "." for
// w.dir) and its parents exist as real directories; false means one is
// missing, or is a file (recorded in seen.files: something in the way). A
// symbolic link on the way is refused. seen holds only while nothing is
// written.
func (w *treeWriter) parentsExist(name, rel string, seen *pathsSeen) (bool, error) {
	if rel == "." {
		return true, nil
	}
	if ok, done := seen.dirs[rel]; done {
		return ok, nil
	}
	ok, err := w.parentsExist(name, path.Dir(rel), seen)
	if err != nil || !ok {
		seen.dirs[rel] = false
		return false, err
	}
	full := w.localPath(rel)
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		seen.dirs[rel] = false
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Mode()&fs.ModeSymlink == 0 && !fi.IsDir() {
		seen.files[rel] = fi
		seen.dirs[rel] = false
		return false, nil
	}
	if err := w.refuseDir(name, full, fi); err != nil {
		return false, err
	}
	seen.dirs[rel] = true
	return true, nil
}

// ensureDir makes directory rel (relative to w.dir, "." for w.dir) and its
// parents real directories, creating what is missing, and refuses a
// symbolic link or a file on the way, so no write through it can land
// outside w.dir; a file the plan let go (replaceFiles) is removed first.
// Each directory is checked once per pull, at the first write into it;
// name is the file being written, for errors.
func (w *treeWriter) ensureDir(name, rel string) error {
	if rel == "." {
		return nil
	}
	w.dirsMu.Lock()
	done := w.dirs[rel]
	w.dirsMu.Unlock()
	if done {
		return nil
	}
	if err := w.ensureDir(name, path.Dir(rel)); err != nil {
		return err
	}
	full := w.localPath(rel)
	fi, err := os.Lstat(full)
	if err == nil && w.replaceFiles[rel] && fi.Mode().Type()&(fs.ModeDir|fs.ModeSymlink) == 0 {
		if err = w.removeFile(rel); err == nil {
			err = fs.ErrNotExist // gone: made below
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(full, 0o755); err == nil {
			w.markDir(rel)
			return nil
		}
		if errors.Is(err, fs.ErrExist) { // created meanwhile: check what it is
			fi, err = os.Lstat(full)
		}
	}
	if err != nil {
		return err
	}
	if err := w.refuseDir(name, full, fi); err != nil {
		return err
	}
	w.markDir(rel)
	return nil
}

func (w *treeWriter) markDir(rel string) {
	w.dirsMu.Lock()
	w.dirs[rel] = true
	w.dirsMu.Unlock()
}

// createTemp creates a new empty temp file in w.tmp with permissions perm
// (less the umask; closeTemp restores them).
//
// It calls syscall.Open and wraps the descriptor with os.NewFile because
// os.OpenFile also makes a regular file non-blocking and offers it to the
// network poller, which refuses it: three more system calls per file,
// which count when a pull writes tens of thousands of small files.
func (w *treeWriter) createTemp(perm fs.FileMode) (*os.File, error) {
	for {
		name := w.tmpName()
		fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, uint32(perm))
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), name), nil
		case err == syscall.EINTR, errors.Is(err, fs.ErrExist):
			continue
		default:
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// closeTemp gives a written temp file the permissions perm, closes it, and
// returns its info as of its last write, for the hash cache's key.
func closeTemp(f *os.File, perm fs.FileMode) (fs.FileInfo, error) {
	fi, err := setPerm(f, perm)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return fi, err
}

// setPerm gives a written file the permissions perm and returns its info
// as of its last write.
func setPerm(f *os.File, perm fs.FileMode) (fs.FileInfo, error) {
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm() != perm {
		err = f.Chmod(perm) // the size, mtime and inode in fi stay valid
	}
	return fi, err
}

// permOf is the permissions a target's file gets.
func permOf(t target) fs.FileMode {
	if perm := t.mode.Perm(); perm != 0 {
		return perm
	}
	return 0o644
}

// place renames a verified, closed temp file to its target and records it
// in the cache under fi, the temp file's info. The name's directories are
// checked (ensureDir), and a directory at the name itself is refused,
// unless the plan let it go (clearDirs).
func (w *treeWriter) place(tmp string, t target, fi fs.FileInfo) error {
	if err := checkName(t.name); err != nil {
		return err
	}
	if err := w.ensureDir(t.name, path.Dir(t.name)); err != nil {
		return err
	}
	dst := w.localPath(t.name)
	err := os.Rename(tmp, dst)
	if files, ok := w.clearDirs[t.name]; ok && err != nil {
		if err = w.removeDir(t.name, files); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		// Renaming a file onto a directory fails (EISDIR): the one thing at
		// the name itself that is refused. A symbolic link there is
		// replaced, not followed.
		if dfi, lerr := os.Lstat(dst); lerr == nil && dfi.IsDir() {
			return fmt.Errorf("refusing to write %q: a directory is in the way", t.name)
		}
		return err
	}
	w.placed(t, fi)
	return nil
}

// placed records t, now at its name, in the cache under fi.
func (w *treeWriter) placed(t target, fi fs.FileInfo) {
	w.cache.putFile(t.name, cachedFile{Key: keyOf(fi), Digest: t.digest, Chunks: t.blob.Chunks, Boot: w.boot})
}

// placeCopies writes the verified bytes in src, t's temp file, as each of
// copies, the targets with t's content under other names: each into a temp
// file of its own, verified again as it is copied, then moved into place
// and handed to placed.
func (w *treeWriter) placeCopies(src *os.File, t target, copies []target, placed func(target)) error {
	for _, c := range copies {
		if c.size != t.size { // one digest, two sizes: the registry checks sizes, so it is broken or hostile
			return fmt.Errorf("%s and %s have the digest %s but sizes %d and %d; the manifest is corrupt", t.name, c.name, t.digest, t.size, c.size)
		}
		perm := permOf(c)
		f, err := w.createTemp(perm)
		if err != nil {
			return err
		}
		ok, err := holds(io.TeeReader(io.NewSectionReader(src, 0, t.size), f), c)
		if err == nil && !ok {
			err = fmt.Errorf("%s: the copy of %s does not match digest %s; %s changed while it was copied (the copy was not written)", c.name, t.name, c.digest, src.Name())
		}
		if err == nil {
			err = w.syncFile(f)
		}
		var fi fs.FileInfo
		if err == nil {
			fi, err = closeTemp(f, perm)
		} else {
			f.Close()
		}
		if err == nil {
			err = w.place(f.Name(), c, fi)
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
		placed(c)
	}
	return nil
}

// writeFileFrom writes the verified bytes of r as t: where unnamedWorks,
// into an unnamed file in t's directory that is linked in once complete,
// else into a temp file renamed into place. A target without a digest (an
// entry of a legacy archive) is hashed on the way, for the cache.
func (w *treeWriter) writeFileFrom(r io.Reader, t target) error {
	perm := permOf(t)
	f, unnamed, err := w.createFor(t, perm)
	if err != nil {
		return err
	}
	fi, err := fillFile(f, r, &t, perm)
	if err == nil && w.syncSmall {
		err = f.Sync()
	}
	if unnamed {
		defer f.Close() // never linked, it vanishes
		if err != nil {
			return err
		}
		return w.link(f, t, fi)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.place(f.Name(), t, fi)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// createFor creates the file t's bytes go to: an unnamed file in t's
// directory where the filesystem allows it, else a temp file.
func (w *treeWriter) createFor(t target, perm fs.FileMode) (f *os.File, unnamed bool, err error) {
	if w.unnamedWorks() {
		if err := checkName(t.name); err != nil {
			return nil, false, err
		}
		if err := w.ensureDir(t.name, path.Dir(t.name)); err != nil {
			return nil, false, err
		}
		if f, err := createUnnamed(filepath.Dir(w.localPath(t.name)), perm); err == nil {
			return f, true, nil
		}
	}
	f, err = w.createTemp(perm)
	return f, false, err
}

// fillFile copies r into f, hashing it when t has no digest yet, gives f
// the permissions perm, and returns f's info as of its last write.
func fillFile(f *os.File, r io.Reader, t *target, perm fs.FileMode) (fs.FileInfo, error) {
	var w io.Writer = f
	h := sha256.New()
	if t.digest == "" {
		w = io.MultiWriter(f, h)
	}
	if _, err := io.Copy(w, r); err != nil {
		return nil, err
	}
	if t.digest == "" {
		t.digest = digest.NewDigest(digest.SHA256, h)
	}
	return setPerm(f, perm)
}

// link names the unnamed file f as t. When the name is taken (an update),
// f is linked into the temp directory instead and renamed over it, so the
// replacement stays atomic.
func (w *treeWriter) link(f *os.File, t target, fi fs.FileInfo) error {
	err := linkUnnamed(f, w.localPath(t.name))
	if errors.Is(err, fs.ErrExist) {
		tmp := w.tmpName()
		if err := linkUnnamed(f, tmp); err != nil {
			return err
		}
		if err := w.place(tmp, t, fi); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	w.placed(t, fi)
	return nil
}

// removeFile removes the file at name, which the plan let go, and its
// record; a file already gone is no error.
func (w *treeWriter) removeFile(name string) error {
	if err := os.Remove(w.localPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	w.cache.forget(name)
	return nil
}

// removeDir removes the directory at name, which the plan found holding
// only files (listed) modelx knows: those files, then its directories,
// deepest first. Anything that appeared in it since makes it fail.
func (w *treeWriter) removeDir(name string, files []string) error {
	for _, f := range files {
		if err := w.removeFile(f); err != nil {
			return err
		}
	}
	var dirs []string
	err := filepath.WalkDir(w.localPath(name), func(full string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, full)
		}
		return err
	})
	for _, d := range slices.Backward(dirs) {
		if err != nil {
			break
		}
		err = os.Remove(d)
	}
	return err
}
