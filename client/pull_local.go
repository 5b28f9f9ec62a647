package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// What a pull may do to what is already in its directory.
//
// A file at a path the version writes is left alone when it holds the
// version's file, and replaced when modelx knows it (the hash cache has an
// entry for it: a pull wrote it or found it holding a version's file, or
// the last push sent it) and it is unchanged since. Anything else in the
// way is a conflict, and the pull stops before it writes a byte:
//   - a file modelx does not know, or changed since, or a symbolic link or
//     special file: PullOptions.Force replaces it (a link, not its target);
//   - a file where the version has a directory: as a file, above;
//   - a directory where the version has a file: replaced when it holds
//     only files modelx knows, unchanged; Force also removes an empty one,
//     but never one that holds any other file, which the version does not
//     even name.
// Symbolic links on the way to a path are refused outright: no write may
// land outside the directory.
//
// After a pull, the files modelx knows that the version does not have are
// stale: reported, and removed by PullOptions.Prune when unchanged.

// ConflictError is the error of a pull that found paths of the version
// taken by something it may not replace. Nothing was written.
type ConflictError struct {
	// Dir is the directory pulled into.
	Dir string
	// Conflicts are the paths in the way, sorted.
	Conflicts []Conflict
}

// Conflict is one path in the way of a pull.
type Conflict struct {
	// Path is slash-separated, relative to the directory.
	Path string
	// Reason says what is there, e.g. "changed since modelx last pulled or pushed it".
	Reason string
	// Forceable is true when PullOptions.Force replaces it.
	Forceable bool
}

// conflictsShown bounds the conflicts an error message names.
const conflictsShown = 10

func (e *ConflictError) Error() string {
	n := len(e.Conflicts)
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s in %s %s in the way of the pull (nothing was written): ", n, humanize.Plural(n, "path", "paths"), e.Dir, humanize.Plural(n, "is", "are"))
	for i, c := range e.Conflicts[:min(n, conflictsShown)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", c.Path, c.Reason)
	}
	if n > conflictsShown {
		fmt.Fprintf(&b, ", and %d more", n-conflictsShown)
	}
	return b.String()
}

// verdict is what the plan decided for one path: nothing to write (same),
// a directory to clear of the known files in it first (clear), or a
// conflict. The zero verdict writes, replacing what is there.
type verdict struct {
	same     bool
	clear    []string
	conflict *Conflict
}

// inTheWay is the verdict on something at name that only force replaces.
func inTheWay(name, reason string, force bool) verdict {
	if force {
		return verdict{}
	}
	return verdict{conflict: &Conflict{Path: name, Reason: reason, Forceable: true}}
}

// judgeFile decides about fi, which Lstat found at t's name: nothing to
// write when it holds t, a replacement when modelx knows it unchanged (or
// with force), else a conflict.
func (pl *planner) judgeFile(t target, fi fs.FileInfo, force bool) (verdict, error) {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return inTheWay(t.name, "a symbolic link", force), nil
	case !fi.Mode().IsRegular():
		return inTheWay(t.name, "not a regular file", force), nil
	}
	if cf, ok := pl.cache.file(t.name, fi); ok { // known, and unchanged since
		return verdict{same: cf.Digest == t.digest && fi.Size() == t.size}, nil
	}
	if fi.Size() == t.size {
		ok, err := pl.verifyLocal(t)
		if err != nil {
			return verdict{}, err
		}
		if ok {
			pl.cache.putFile(t.name, cachedFile{Key: keyOf(fi), Digest: t.digest, Chunks: t.blob.Chunks})
			return verdict{same: true}, nil
		}
	}
	known, err := pl.unchangedSince(t.name, fi)
	if err != nil || known {
		return verdict{}, err
	}
	if _, recorded := pl.cache.entry(t.name); recorded {
		return inTheWay(t.name, "changed since modelx last pulled or pushed it", force), nil
	}
	return inTheWay(t.name, "differs from the version, and modelx did not write it", force), nil
}

// judgeDir decides about the directory at name, where the version has a
// file: cleared when it holds only files modelx knows unchanged (or is
// empty, with force), else a conflict that force does not resolve.
func (pl *planner) judgeDir(name string, force bool) (verdict, error) {
	files, known, err := pl.knownTree(name)
	switch {
	case err != nil:
		return verdict{}, err
	case known && (len(files) > 0 || force):
		return verdict{clear: files}, nil
	case known:
		return inTheWay(name, "an empty directory is in the way", force), nil
	}
	return verdict{conflict: &Conflict{Path: name, Reason: "a directory is in the way, holding files modelx did not write"}}, nil
}

// judgeInTheWay decides about fi, which Lstat found at rel where the
// version has a directory: removed when modelx knows it unchanged (or
// with force), else a conflict.
func (pl *planner) judgeInTheWay(rel string, fi fs.FileInfo, force bool) (verdict, error) {
	known, err := pl.unchangedSince(rel, fi)
	if err != nil || known {
		return verdict{}, err
	}
	return inTheWay(rel, "a file where the version has a directory", force), nil
}

// knownTree reports whether the directory at name holds nothing but
// directories and files modelx knows unchanged, and lists those files.
func (pl *planner) knownTree(name string) (files []string, known bool, err error) {
	files, known = []string{}, true
	root := pl.tree.localPath(name)
	err = filepath.WalkDir(root, func(full string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, full)
		if err != nil {
			return err
		}
		rel = name + "/" + filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		ok, err := pl.unchangedSince(rel, fi)
		if err != nil {
			return err
		}
		if !ok {
			known = false
			return filepath.SkipAll
		}
		files = append(files, rel)
		return nil
	})
	return files, known && err == nil, err
}

// unchangedSince reports whether the file at name, which Lstat found as fi,
// is one modelx knows (the hash cache has an entry for it) and unchanged
// since: the size, mtime and inode recorded, or, when only its mtime or
// inode changed (a copy, a touch), the content recorded, hashed the way the
// entry describes it. Such a file is then recorded under its new info.
func (pl *planner) unchangedSince(name string, fi fs.FileInfo) (bool, error) {
	cf, ok := pl.cache.entry(name)
	if !ok || !fi.Mode().IsRegular() || cf.Key.Size != fi.Size() {
		return false, nil
	}
	if cf.Key == keyOf(fi) {
		return true, nil
	}
	f, err := os.Open(pl.tree.localPath(name))
	if err != nil {
		return false, nil
	}
	defer f.Close()
	recorded := target{size: fi.Size(), digest: cf.Digest, blob: &spec.Descriptor{MediaType: spec.MediaTypeFile}}
	if len(cf.Chunks) > 0 && spec.ChunkListDigest(cf.Chunks) == cf.Digest {
		recorded.blob = &spec.Descriptor{MediaType: spec.MediaTypeChunkedFile, Chunks: cf.Chunks}
	}
	same, err := holds(f, recorded)
	if same {
		cf.Key = keyOf(fi)
		pl.cache.putFile(name, cf)
	}
	return same, err
}

// fetchLegacyDirs fetches and checks the legacy directory archives among
// targets (fetchLegacyDir), and returns targets followed by the files of
// every archive, for the plan to compare with what is there.
func (p *puller) fetchLegacyDirs(ctx context.Context, targets []target) ([]target, error) {
	var dirs []target
	for _, t := range targets {
		if t.isLegacyDir() {
			dirs = append(dirs, t)
		}
	}
	if len(dirs) == 0 {
		return targets, nil
	}
	if err := os.MkdirAll(p.tree.tmp, 0o755); err != nil {
		return nil, err
	}
	archives := make([]*legacyArchive, len(dirs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.concurrency)
	for i, t := range dirs {
		g.Go(func() (err error) {
			archives[i], err = p.fetchLegacyDir(gctx, t)
			return err
		})
	}
	err := g.Wait()
	plan := slices.Clip(targets)
	for i, a := range archives {
		if a != nil {
			p.legacy[dirs[i].name] = a
			plan = append(plan, a.files...)
		}
	}
	return plan, err
}

// versionNames returns whether a name is a file of the version: one of all
// its targets, a file of a fetched archive (plan), or anything under an
// archive the pull did not fetch, whose files it does not know.
func (p *puller) versionNames(all, plan []target) func(string) bool {
	names := map[string]bool{}
	var unfetched []string
	for _, t := range all {
		names[t.name] = true
		if t.isLegacyDir() && p.legacy[t.name] == nil {
			unfetched = append(unfetched, t.name)
		}
	}
	for _, t := range plan {
		names[t.name] = true
	}
	return func(name string) bool { return names[name] || underAny(name, unfetched) }
}

// settleStale looks at the files modelx knows that the pulled version does
// not have, within the selection. Those gone are forgotten. Without prune,
// the rest are reported stale. With prune, those unchanged since modelx
// wrote them are removed, with the directories they leave empty; those
// changed are reported, and forgotten: they are the user's from now on.
func (p *puller) settleStale(inVersion, inSelection func(string) bool, prune bool) error {
	seen := &pathsSeen{dirs: map[string]bool{}, files: map[string]fs.FileInfo{}}
	for _, name := range p.cache.fileNames() {
		if inVersion(name) || !inSelection(name) || checkName(name) != nil {
			continue
		}
		there, err := p.tree.parentsExist(name, path.Dir(name), seen)
		if err != nil {
			continue // behind a symbolic link: not modelx's to look through
		}
		var fi fs.FileInfo
		if there {
			fi, err = os.Lstat(p.tree.localPath(name))
		}
		if !there || errors.Is(err, fs.ErrNotExist) {
			p.cache.forget(name)
			continue
		}
		if err != nil {
			return err
		}
		if !prune {
			p.res.Stale = append(p.res.Stale, name)
			continue
		}
		known, err := p.planner.unchangedSince(name, fi)
		if err != nil {
			return err
		}
		if !known {
			p.res.Stale = append(p.res.Stale, name)
			p.cache.forget(name)
			continue
		}
		if err := p.tree.removeFile(name); err != nil {
			return fmt.Errorf("prune %s: %w", name, err)
		}
		p.res.Pruned = append(p.res.Pruned, name)
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if os.Remove(p.tree.localPath(dir)) != nil {
				break // not empty
			}
		}
	}
	return nil
}

// afterFailure leaves the directory of a failed pull ready for a retry:
// the cache records the files the pull placed, and its partial downloads
// stay, to be resumed. After a conflict nothing was written, and nothing
// is (but the state directory the archives were fetched into goes, when
// the pull made it). In a directory the pull created, the state directory
// stays only when it holds partial downloads; otherwise it goes, and so do
// the directories the pull created, when nothing else is in them. In one
// that had no state directory, one is left only when it holds partial
// downloads or records files.
func (p *puller) afterFailure(created []string, hadState bool, err error) {
	state := filepath.Join(p.tree.dir, stateDir)
	var conflict *ConflictError
	switch {
	case errors.As(err, &conflict):
		if !hadState {
			os.RemoveAll(state)
		}
	case hasResumableParts(p.tree.tmp) || (len(created) == 0 && (hadState || p.cache.changed())):
		_ = p.cache.save()
		return
	default: // a state directory this pull made, with nothing worth keeping
		os.RemoveAll(state)
	}
	for _, d := range slices.Backward(created) {
		if os.Remove(d) != nil {
			break
		}
	}
}

// Partial downloads in the state directory's tmp: a whole file's bytes so
// far in DIGEST.part, a chunked file in DIGEST.chunked.part with its
// verified chunks recorded in DIGEST.chunked.part.state.
const (
	partSuffix       = ".part"
	chunkedPart      = ".chunked.part"
	chunkStateSuffix = chunkedPart + ".state"
)

// hasResumableParts reports whether tmp holds partial downloads a retry
// resumes: a whole file's part with bytes in it, or a chunked file's
// record of verified chunks.
func hasResumableParts(tmp string) bool {
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, chunkStateSuffix) {
			return true
		}
		if strings.HasSuffix(name, partSuffix) && !strings.HasSuffix(name, chunkedPart) {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
	}
	return false
}

// mkdirAllCreated makes dir and its missing parents, and returns those it
// created, outermost first.
func mkdirAllCreated(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) || filepath.Dir(d) == d {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	slices.Reverse(missing)
	return missing, nil
}
