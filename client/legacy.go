package client

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

// Bounds on extracting a legacy directory archive. Its digest proves the
// registry stored it, not that it is tame: a gzip stream of a few KiB can
// expand to gigabytes (a decompression bomb), and a tar stream can hold
// millions of entries. Packs are bounded by their records' sizes (see
// client/pack); an archive has no records, so its expansion is bounded
// relative to its size.
var (
	// legacyMaxEntries bounds the entries of one archive, of any kind.
	legacyMaxEntries = 100_000
	// legacyMinExpanded is how far any archive may expand (the tar
	// stream: headers and contents); beyond it, up to legacyMaxRatio
	// times the archive's size.
	legacyMinExpanded int64 = 1 << 30
	legacyMaxRatio    int64 = 100
)

// legacyBudget is how many bytes an archive of size bytes may expand to.
func legacyBudget(size int64) int64 {
	if size > math.MaxInt64/legacyMaxRatio {
		return math.MaxInt64
	}
	return max(legacyMinExpanded, size*legacyMaxRatio)
}

// errExpansion ends a read past an archive's budget.
var errExpansion = errors.New("expansion bound reached")

// boundedReader reads at most n bytes of r, then fails with errExpansion.
type boundedReader struct {
	r io.Reader
	n int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errExpansion
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// legacyEntry is a directory or regular file of an archive, named by its
// path in the model.
type legacyEntry struct {
	rel  string // in the archive
	name string
	dir  bool
	size int64
	mode os.FileMode
}

// legacyArchive is a directory archive fetched and checked while a pull
// plans, before anything is written: its files are targets the plan
// compares with what is there like any other (archived: written by the
// archive's extraction).
type legacyArchive struct {
	f     *os.File
	files []target
}

// close removes the archive's temp file.
func (a *legacyArchive) close() {
	a.f.Close()
	os.Remove(a.f.Name())
}

// fetchLegacyDir downloads a directory blob of the original modelx (one
// tar.gz) into the state directory, verifies it, and checks every entry,
// hashing each file. An archive is refused whole, with nothing written,
// when it expands past its bound (legacyBudget, legacyMaxEntries), holds a
// link or special file, an entry spec.ValidatePath refuses (one that would
// land outside, or in .git), or the same name twice.
func (p *puller) fetchLegacyDir(ctx context.Context, t target) (_ *legacyArchive, err error) {
	tmp, err := os.CreateTemp(p.tree.tmp, "dir-*.tar.gz")
	if err != nil {
		return nil, err
	}
	a := &legacyArchive{f: tmp}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	tracker := p.progress.Start(t.name+"/", t.size)
	err = p.fetchBlob(ctx, t.digest, content.NewVerifier(t.size, t.digest), io.NewOffsetWriter(tmp, 0), tracker)
	tracker.Done(err)
	if errors.Is(err, content.ErrDigestMismatch) {
		return nil, fmt.Errorf("%s: directory archive does not match its digest %s; the blob on the registry is corrupt (nothing of it was written)", t.name, t.digest)
	}
	if err != nil {
		return nil, err
	}
	p.countBlob()
	files := map[string]bool{}  // name → is a directory
	rels := map[string]string{} // name → entry name, for errors
	err = walkLegacy(tmp, t, func(e legacyEntry, r io.Reader) error {
		if dir, seen := files[e.name]; seen && !(dir && e.dir) {
			return fmt.Errorf("refusing archive entry %q of %s: it appears twice (nothing of it was written)", e.rel, t.name)
		}
		files[e.name], rels[e.name] = e.dir, e.rel
		if e.dir {
			return nil
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.LimitReader(r, e.size)); err != nil {
			return err
		}
		a.files = append(a.files, target{name: e.name, size: e.size, mode: e.mode, digest: digest.NewDigest(digest.SHA256, h),
			blob: &spec.Descriptor{MediaType: spec.MediaTypeFile}, archived: true})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name := range files {
		for dir := path.Dir(name); dir != t.name && dir != "."; dir = path.Dir(dir) {
			if isDir, seen := files[dir]; seen && !isDir {
				return nil, fmt.Errorf("refusing archive entry %q of %s: %q is a file in the same archive (nothing of it was written)", rels[name], t.name, rels[dir])
			}
		}
	}
	return a, nil
}

// extractLegacyDir extracts an archive fetchLegacyDir checked under its
// name, with the same checks, and removes its temp file.
func (p *puller) extractLegacyDir(t target, a *legacyArchive) error {
	defer a.close()
	return walkLegacy(a.f, t, func(e legacyEntry, r io.Reader) error {
		if e.dir {
			return p.tree.ensureDir(e.name, e.name)
		}
		ft := target{name: e.name, size: e.size, mode: e.mode, blob: &spec.Descriptor{MediaType: spec.MediaTypeFile}}
		return p.tree.writeFileFrom(io.LimitReader(r, e.size), ft)
	})
}

// walkLegacy reads the archive in f from its start and calls fn for each
// directory and regular file in it, with a reader of the file's content,
// checking the bounds, names and types of the entries as it goes.
func walkLegacy(f *os.File, t target, fn func(e legacyEntry, r io.Reader) error) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: the directory archive is not gzip: %w", t.name, err)
	}
	budget := legacyBudget(t.size)
	tr := tar.NewReader(&boundedReader{r: gz, n: budget})
	tooLarge := func() error {
		return fmt.Errorf("refusing the directory archive %s: it expands past %d bytes, the bound for an archive of %d bytes (the larger of %d bytes and %d times its size); a decompression bomb? Nothing of it was written", t.name, budget, t.size, legacyMinExpanded, legacyMaxRatio)
	}
	var claimed int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, errExpansion) {
			return tooLarge()
		}
		if err != nil {
			return fmt.Errorf("%s: corrupt directory archive: %w", t.name, err)
		}
		if n >= legacyMaxEntries {
			return fmt.Errorf("refusing the directory archive %s: it has more than %d entries; nothing of it was written", t.name, legacyMaxEntries)
		}
		rel := strings.TrimPrefix(path.Clean(strings.TrimPrefix(hdr.Name, "./")), "./")
		if rel == "." {
			continue
		}
		name := t.name + "/" + rel
		if path.IsAbs(hdr.Name) || strings.HasPrefix(rel, "../") || rel == ".." {
			return fmt.Errorf("refusing archive entry %q of %s: it would land outside the directory (nothing of it was written)", hdr.Name, t.name)
		}
		if err := spec.ValidatePath(name); err != nil {
			return fmt.Errorf("refusing archive entry %q of %s: %v (nothing of it was written)", hdr.Name, t.name, err)
		}
		e := legacyEntry{rel: rel, name: name, mode: hdr.FileInfo().Mode()}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader: // PAX defaults for later entries, as git archive writes
			continue
		case tar.TypeDir:
			e.dir = true
		case tar.TypeReg:
			// A size past the budget is refused before a byte of it is
			// read; the bounded reader catches what the headers hide.
			if hdr.Size < 0 || hdr.Size > budget-claimed {
				return tooLarge()
			}
			claimed += hdr.Size
			e.size = hdr.Size
		default:
			return fmt.Errorf("refusing archive entry %q of %s: it is %s; only files and directories are extracted (nothing of it was written)", hdr.Name, t.name, tarType(hdr.Typeflag))
		}
		if err := fn(e, tr); err != nil {
			if errors.Is(err, errExpansion) {
				return tooLarge()
			}
			return err
		}
	}
}

// tarType names a tar entry type.
func tarType(flag byte) string {
	switch flag {
	case tar.TypeSymlink:
		return "a symbolic link"
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a named pipe"
	case tar.TypeGNUSparse:
		return "a sparse file"
	}
	return fmt.Sprintf("of type %q", flag)
}
