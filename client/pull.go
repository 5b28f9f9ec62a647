package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/content"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// PullOptions select what a pull writes.
type PullOptions struct {
	// Files are path.Match globs; a file is pulled when a glob matches its
	// path or its base name. Empty means every file.
	Files []string
	// ModelFiles pulls only the files modelx.yaml lists in modelFiles.
	ModelFiles bool
	// ModelFilesIfListed pulls the modelFiles when modelx.yaml lists any,
	// else every file.
	ModelFilesIfListed bool
	// DropState removes DIR/.modelx (hash cache, partial downloads) after a
	// successful pull, so the directory holds only the model: what a model
	// server that scans its directory (Triton) needs. A failed pull keeps
	// it, so a retry resumes (see Pull for a directory the pull created).
	// Without the record, a later pull of another version finds the files
	// unknown, and reports them as conflicts.
	DropState bool
	// Force replaces the files in the way that a pull otherwise refuses
	// to touch (see ConflictError): files modelx did not write, or that
	// changed since it wrote them. It never removes a directory that holds
	// files, nor writes through a symbolic link.
	Force bool
	// Prune removes, after a successful pull, the files modelx knows in the
	// directory (see Pull) that the version does not have, and the
	// directories they leave empty: never a file modelx does not know, nor
	// one changed since. A selective pull prunes only files its selection
	// (Files, ModelFiles) matches.
	Prune bool
}

// PullResult reports a pull.
type PullResult struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	// DownloadedBytes and BlobsTransferred count what was fetched: whole
	// blobs, chunks, packs, and ranges of packs. SkippedBytes and
	// BlobsSkipped count what was not fetched because the directory held
	// it already (or a killed pull had fetched it), as a push counts what
	// the registry holds: by the stored size (a packed file counts its
	// compressed frame), each blob once. A file that repeats another's
	// content under a second name is neither.
	DownloadedBytes  int64   `json:"downloaded_bytes"`
	SkippedBytes     int64   `json:"skipped_bytes"`
	BlobsTransferred int     `json:"blobs_transferred"`
	BlobsSkipped     int     `json:"blobs_skipped"`
	Files            int     `json:"files"`
	DurationSeconds  float64 `json:"duration_seconds"`
	// Stale lists, sorted, the files modelx knows in the directory that the
	// version does not have (within the selection) and that are still
	// there: every one without Prune; with Prune, those changed since
	// modelx wrote them, which it leaves to the user from then on.
	Stale []string `json:"stale_files,omitempty"`
	// Pruned lists, sorted, the files Prune removed.
	Pruned []string `json:"pruned_files,omitempty"`
}

// target is one file a pull may write.
type target struct {
	name     string
	size     int64
	mode     fs.FileMode
	digest   digest.Digest
	blob     *spec.Descriptor // file, chunked file, pack or legacy directory
	packed   *spec.PackedFile // set for a file inside a pack
	archived bool             // a file of a legacy directory archive: checked by the plan, written by the extraction
}

// isLegacyDir reports whether t is a legacy directory archive, whose name
// is a directory.
func (t target) isLegacyDir() bool { return t.blob.MediaType == spec.MediaTypeDirectoryTarGz }

// puller carries the state of one pull.
type puller struct {
	c     *Client
	api   *API
	ref   Reference
	dir   string
	tmp   string
	cache *hashCache
	res   *PullResult
	mu    sync.Mutex

	tmpPrefix string        // temp file names: unique to this pull
	tmpSeq    atomic.Uint64 // and numbered within it
	dirsMu    sync.Mutex
	dirs      map[string]bool // directories this pull's writes checked or created

	// Set by the plan, read-only while writing.
	legacy       map[string]*legacyArchive // fetched archives, by target name
	replaceFiles map[string]bool           // files where the version has a directory, which the writes may remove
	clearDirs    map[string][]string       // directories where the version has a file → the known files in them, which the writes may remove

	unnamedOnce sync.Once
	unnamedOK   bool // small files are written as unnamed files (see unnamedWorks)
}

// unnamedWorks reports, once per pull, whether this filesystem can create
// unnamed files and link them into place (Linux's O_TMPFILE, on ext4, xfs,
// btrfs, tmpfs, …, and /proc mounted). Small files are then written in
// their own directory and given their name when complete, which costs
// fewer system calls than a temp file renamed across directories and
// leaves nothing behind if the pull is killed.
func (p *puller) unnamedWorks() bool {
	p.unnamedOnce.Do(func() {
		if !unnamedFiles.Load() {
			return
		}
		f, err := createUnnamed(p.tmp, 0o600)
		if err != nil {
			return
		}
		defer f.Close()
		probe := p.tmpName()
		if linkUnnamed(f, probe) == nil {
			os.Remove(probe)
			p.unnamedOK = true
		}
	})
	return p.unnamedOK
}

// unnamedFiles lets tests turn unnamed files off, to cover the temp files
// other systems use.
var unnamedFiles atomic.Bool

func init() { unnamedFiles.Store(true) }

// tmpName is a new name in p.tmp, unique to this pull.
func (p *puller) tmpName() string {
	return p.tmp + string(filepath.Separator) + p.tmpPrefix + strconv.FormatUint(p.tmpSeq.Add(1), 36)
}

// Pull writes the model ref names into dir, downloading only what differs
// from what is there. Every byte is verified against its digest before a
// file is renamed into place; a killed pull resumes its partial downloads.
//
// Pull replaces a file only when modelx knows it and it is unchanged since,
// or with opts.Force. Anything else in the way is refused before a byte is
// written, with a *ConflictError listing every path. modelx knows the files
// its hash cache in dir/.modelx records: each file a pull wrote there or
// found holding a file of the version, and each file the last push from
// dir sent.
//
// A pull that fails leaves dir ready for a retry: the files it placed, and
// in dir/.modelx a record of them and its partial downloads. In a directory
// the pull created, .modelx is kept only when it holds partial downloads
// for the retry to resume; otherwise it is removed, and so is the
// directory when the pull placed nothing in it.
func (c *Client) Pull(ctx context.Context, ref Reference, dir string, opts PullOptions) (res *PullResult, err error) {
	start := time.Now()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Decoding a large cache takes as long as fetching the manifest: do both at once.
	loaded := make(chan *hashCache, 1)
	go func() { loaded <- loadCache(abs, c.opts.Chunker) }()
	api := c.API(ref.Registry)
	m, _, d, err := api.GetManifest(ctx, ref.Repository, ref.Name, ref.ManifestRef())
	if err != nil {
		return nil, explainMissing(ctx, api, ref, err)
	}
	created, err := mkdirAllCreated(abs)
	if err != nil {
		return nil, err
	}
	p := &puller{c: c, api: api, ref: ref, dir: abs, tmp: filepath.Join(abs, stateDir, "tmp"),
		cache: <-loaded, res: &PullResult{Reference: ref.String(), Digest: d},
		tmpPrefix: fmt.Sprintf("f%08x-", rand.Uint32()), dirs: map[string]bool{},
		legacy: map[string]*legacyArchive{}, replaceFiles: map[string]bool{}, clearDirs: map[string][]string{}}
	_, statErr := os.Lstat(filepath.Join(abs, stateDir))
	hadState := statErr == nil
	defer func() {
		for _, a := range p.legacy {
			a.close() // a no-op for the archives extracted
		}
		if err != nil {
			p.afterFailure(created, hadState, err)
		}
	}()
	all := targetsOf(m)
	targets, inSelection, err := p.selectTargets(ctx, m, all, opts)
	if err != nil {
		return nil, err
	}
	plan, err := p.fetchLegacyDirs(ctx, targets)
	if err != nil {
		return nil, err
	}
	todo, err := p.compareLocal(plan, opts.Force)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.tmp, 0o755); err != nil {
		return nil, err
	}
	c.opts.Progress.Plan(plannedFetch(todo), p.res.SkippedBytes)
	if err := p.download(ctx, todo); err != nil {
		switch {
		case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
			return nil, p.diskFull(err, todo)
		case errors.Is(err, ErrConnectionClosed):
			return nil, fmt.Errorf("%w; what was received is kept in %s: run the same pull again to resume", err, p.tmp)
		}
		return nil, err
	}
	if err := p.settleStale(p.versionNames(all, plan), inSelection, opts.Prune); err != nil {
		return nil, err
	}
	_ = p.cache.save()
	p.res.Files = len(targets)
	if opts.DropState {
		if err := os.RemoveAll(filepath.Join(abs, stateDir)); err != nil {
			return nil, err
		}
		p.res.DurationSeconds = time.Since(start).Seconds()
		return p.res, nil
	}
	// Every partial download is now complete: drop what older pulls left.
	_ = removeContents(p.tmp)
	p.res.DurationSeconds = time.Since(start).Seconds()
	return p.res, nil
}

// diskFull explains a pull that ran out of disk space (or quota) while it
// downloaded todo, and removes its partial downloads: they hold space
// (a chunked file's part is as large as the file) that the disk needs.
// The files already in place are complete and stay.
func (p *puller) diskFull(err error, todo []target) error {
	var need int64
	for _, t := range todo {
		need += t.size
	}
	removed := "removed the partial downloads in " + p.tmp + ", which would keep the disk full"
	if rerr := removeContents(p.tmp); rerr != nil {
		removed = fmt.Sprintf("could not remove the partial downloads in %s (%v): remove them by hand", p.tmp, rerr)
	}
	free := ""
	if n, ok := freeSpace(p.dir); ok {
		free = fmt.Sprintf(", %s is free now", humanize.Bytes(n))
	}
	reason := "full"
	if errors.Is(err, syscall.EDQUOT) {
		reason = "over its quota"
	}
	return fmt.Errorf("the disk holding %s is %s: this pull fetches %s in %d %s%s; %s; free space (or give the directory a larger volume) and pull again, which keeps the files already in place: %w",
		p.dir, reason, humanize.Bytes(need), len(todo), humanize.Plural(len(todo), "file", "files"), free, removed, err)
}

// removeContents removes everything in dir, and keeps dir.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var first error
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// maxListedTags bounds the tags a NotFoundError names.
const maxListedTags = 10

// NotFoundError is a version or model the registry does not have, said
// once, with what the registry has instead. It unwraps to the registry's
// *Error, so Code still reports MANIFEST_UNKNOWN.
type NotFoundError struct {
	msg string
	err error
}

// Error says what is missing and what exists.
func (e *NotFoundError) Error() string { return e.msg }

// Unwrap returns the registry's error.
func (e *NotFoundError) Unwrap() error { return e.err }

// ExplainMissing turns the registry's MANIFEST_UNKNOWN for ref, err, into
// a *NotFoundError that says whether the model exists and, for a missing
// tag, which tags it has. Any other error is returned as it is.
func (c *Client) ExplainMissing(ctx context.Context, ref Reference, err error) error {
	return explainMissing(ctx, c.API(ref.Registry), ref, err)
}

func explainMissing(ctx context.Context, api *API, ref Reference, err error) error {
	if Code(err) != spec.ErrorManifestUnknown {
		return err
	}
	idx, ierr := api.Index(ctx, ref.Repository, ref.Name, "")
	switch {
	case Code(ierr) == spec.ErrorIndexUnknown, ierr == nil && len(idx.Manifests) == 0:
		return &NotFoundError{err: err, msg: fmt.Sprintf("no model %s in registry %s; `modelx list %s` lists its models", ref.Model(), ref.Registry, ref.Registry)}
	case ierr != nil || ref.Digest != "":
		return err // the registry's message names the digest
	}
	tags := make([]string, 0, min(len(idx.Manifests), maxListedTags))
	for _, t := range idx.Manifests[:min(len(idx.Manifests), maxListedTags)] {
		tags = append(tags, t.Name)
	}
	list := strings.Join(tags, ", ")
	if more := len(idx.Manifests) - len(tags); more > 0 {
		list += fmt.Sprintf(", … (%d in all; `modelx list %s/%s` shows them)", len(idx.Manifests), ref.Registry, ref.Model())
	}
	return &NotFoundError{err: err, msg: fmt.Sprintf("model %s has no tag %q in registry %s; its tags: %s", ref.Model(), ref.ManifestRef(), ref.Registry, list)}
}

// targetsOf lists the files of a manifest; a legacy directory is one target.
func targetsOf(m *spec.Manifest) []target {
	n := 1
	for _, b := range m.Blobs {
		n += max(1, len(b.Files))
	}
	out := make([]target, 0, n)
	out = append(out, target{name: m.Config.Name, size: m.Config.Size, mode: m.Config.Mode, digest: m.Config.Digest, blob: &m.Config})
	for i := range m.Blobs {
		b := &m.Blobs[i]
		if b.MediaType == spec.MediaTypePack {
			for i := range b.Files {
				f := &b.Files[i]
				out = append(out, target{name: f.Name, size: f.Size, mode: f.Mode, digest: f.Digest, blob: b, packed: f})
			}
			continue
		}
		out = append(out, target{name: b.Name, size: b.Size, mode: b.Mode, digest: b.Digest, blob: b})
	}
	return out
}

// selectTargets returns the targets opts selects, and whether a name is in
// the selection (for the files the version does not have: see settleStale).
func (p *puller) selectTargets(ctx context.Context, m *spec.Manifest, targets []target, opts PullOptions) ([]target, func(string) bool, error) {
	all := func(string) bool { return true }
	globs := slices.Clone(opts.Files)
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, nil, fmt.Errorf("--file %q is not a valid pattern: %v", g, err)
		}
	}
	var prefixes []string
	if opts.ModelFiles || opts.ModelFilesIfListed {
		data, err := p.api.FetchConfig(ctx, p.ref.Repository, p.ref.Name, m.Config)
		if err != nil {
			return nil, nil, err
		}
		cfg, err := spec.ParseModelConfig(data)
		if err != nil {
			return nil, nil, err
		}
		if len(cfg.ModelFiles) == 0 && opts.ModelFilesIfListed && !opts.ModelFiles {
			return targets, all, nil
		}
		if len(cfg.ModelFiles) == 0 {
			return nil, nil, fmt.Errorf("--model-files: %s of %s lists no modelFiles; pull without --model-files, or name files with --file", spec.ConfigFileName, p.ref)
		}
		prefixes = cfg.ModelFiles
	}
	if len(globs) == 0 && len(prefixes) == 0 {
		return targets, all, nil
	}
	inSelection := func(name string) bool { return matchesAny(name, globs) || underAny(name, prefixes) }
	selected := []target{targets[0]} // the config always comes along
	for _, t := range targets[1:] {
		if inSelection(t.name) {
			selected = append(selected, t)
		}
	}
	if len(selected) == 1 {
		return nil, nil, fmt.Errorf("no file of %s matches %s; `modelx info %s` lists the files", p.ref, strings.Join(append(globs, prefixes...), ", "), p.ref)
	}
	return selected, inSelection, nil
}

func matchesAny(name string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
		if ok, _ := path.Match(g, path.Base(name)); ok {
			return true
		}
		if strings.HasPrefix(name, strings.TrimSuffix(g, "/")+"/") {
			return true
		}
	}
	return false
}

func underAny(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if name == p || strings.HasPrefix(name, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
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

// localPath is where name lands under p.dir; name passed checkName.
func (p *puller) localPath(name string) string {
	return p.dir + string(filepath.Separator) + filepath.FromSlash(name)
}

// refuseDir checks what an Lstat found at an element of name's path: a
// symbolic link or a non-directory where a directory must be is refused.
func (p *puller) refuseDir(name, full string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("refusing to write %q: %s is a symbolic link, which could lead outside %s", name, full, p.dir)
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

// parentsExist reports whether directory rel (relative to p.dir, "." for
// p.dir) and its parents exist as real directories; false means one is
// missing, or is a file (recorded in seen.files: something in the way). A
// symbolic link on the way is refused. seen holds only while nothing is
// written.
func (p *puller) parentsExist(name, rel string, seen *pathsSeen) (bool, error) {
	if rel == "." {
		return true, nil
	}
	if ok, done := seen.dirs[rel]; done {
		return ok, nil
	}
	ok, err := p.parentsExist(name, path.Dir(rel), seen)
	if err != nil || !ok {
		seen.dirs[rel] = false
		return false, err
	}
	full := p.localPath(rel)
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
	if err := p.refuseDir(name, full, fi); err != nil {
		return false, err
	}
	seen.dirs[rel] = true
	return true, nil
}

// compareLocal plans the writes against what dir holds, and writes
// nothing. It refuses every target whose path is unsafe (a parent inside
// dir that is a symbolic link: no write may land outside dir), then
// returns the targets whose local copy is missing or differs, counting the
// rest as skipped. Something in the way (a file that differs, a file where
// the version has a directory, a directory where it has a file) may be
// replaced as judgeFile and judgeDir say; when any may not, it returns a
// *ConflictError naming every such path. Unchanged files are recognised
// through the hash cache without reading them. The writes check each
// directory again (ensureDir).
func (p *puller) compareLocal(targets []target, force bool) ([]target, error) {
	// Parents first, one Lstat per directory; then one Lstat per file
	// whose parents exist, and only after every path passed, reads.
	seen := &pathsSeen{dirs: map[string]bool{}, files: map[string]fs.FileInfo{}}
	exists := make([]bool, len(targets))
	for i, t := range targets {
		if err := checkName(t.name); err != nil {
			return nil, err
		}
		dir := path.Dir(t.name)
		if t.isLegacyDir() {
			dir = t.name // it is extracted as a directory
		}
		ok, err := p.parentsExist(t.name, dir, seen)
		if err != nil {
			return nil, err
		}
		exists[i] = ok && !t.isLegacyDir()
	}
	infos := make([]fs.FileInfo, len(targets))
	err := inParallel(len(targets), func(i int) error {
		if !exists[i] {
			return nil // a parent is missing: so is the file
		}
		fi, err := os.Lstat(p.localPath(targets[i].name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		infos[i] = fi
		return err
	})
	if err != nil {
		return nil, err
	}
	verdicts := make([]verdict, len(targets))
	err = inParallel(len(targets), func(i int) error {
		var err error
		if fi := infos[i]; fi != nil && fi.IsDir() {
			verdicts[i], err = p.judgeDir(targets[i].name, force)
		} else if fi != nil {
			verdicts[i], err = p.judgeFile(targets[i], fi, force)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var conflicts []Conflict
	for rel, fi := range seen.files {
		v, err := p.judgeInTheWay(rel, fi, force)
		if err != nil {
			return nil, err
		}
		if v.conflict != nil {
			conflicts = append(conflicts, *v.conflict)
		} else {
			p.replaceFiles[rel] = true
		}
	}
	var todo []target
	same := make([]bool, len(targets))
	packNeeded := map[digest.Digest]bool{}
	for i, t := range targets {
		v := verdicts[i]
		switch {
		case v.conflict != nil:
			conflicts = append(conflicts, *v.conflict)
		case v.clear != nil:
			p.clearDirs[t.name] = v.clear
		}
		if t.archived {
			continue // written by its archive's extraction
		}
		if v.same {
			same[i] = true
			continue
		}
		todo = append(todo, t)
		if t.packed != nil {
			packNeeded[t.blob.Digest] = true
		}
	}
	if len(conflicts) > 0 {
		slices.SortFunc(conflicts, func(a, b Conflict) int { return strings.Compare(a.Path, b.Path) })
		return nil, &ConflictError{Dir: p.dir, Conflicts: conflicts}
	}
	p.countPresent(targets, same, packNeeded)
	return todo, nil
}

// countPresent counts what the directory holds already as skipped, the way
// a push counts what the registry holds: in blobs and their stored bytes,
// each blob once. A whole file is its blob; a chunked file, its chunks; a
// packed file, its compressed frame, and its pack is a skipped blob when
// no file of it is needed.
func (p *puller) countPresent(targets []target, same []bool, packNeeded map[digest.Digest]bool) {
	counted := map[digest.Digest]bool{}
	skip := func(d digest.Digest, size int64) {
		if !counted[d] {
			counted[d] = true
			p.res.BlobsSkipped++
			p.res.SkippedBytes += size
		}
	}
	for i, t := range targets {
		switch {
		case !same[i]:
		case t.packed != nil:
			p.res.SkippedBytes += t.packed.Length
			if !packNeeded[t.blob.Digest] && !counted[t.blob.Digest] {
				counted[t.blob.Digest] = true
				p.res.BlobsSkipped++
			}
		case t.blob.MediaType == spec.MediaTypeChunkedFile:
			for _, ch := range t.blob.Chunks {
				skip(ch.Digest, ch.Size)
			}
		default:
			skip(t.digest, t.size)
		}
	}
}

// inParallel calls fn for 0..n-1 on one goroutine per CPU, each taking the
// next index as it finishes one, and returns the first error.
func inParallel(n int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	g, ctx := errgroup.WithContext(context.Background())
	for range workers {
		g.Go(func() error {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := fn(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// verifyLocal hashes the local file the way the manifest describes it.
func (p *puller) verifyLocal(t target) (bool, error) {
	f, err := os.Open(p.localPath(t.name))
	if err != nil {
		return false, nil
	}
	defer f.Close()
	return holds(f, t)
}

// holds reads r to its end, or to the end of t's last chunk, and reports
// whether what it read is t, verified the way the manifest describes it:
// whole, or chunk by chunk for a chunked file, whose chunk list must be
// its digest.
func holds(r io.Reader, t target) (bool, error) {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if t.blob.MediaType == spec.MediaTypeChunkedFile && t.packed == nil {
		if spec.ChunkListDigest(t.blob.Chunks) != t.digest {
			return false, nil
		}
		for _, c := range t.blob.Chunks {
			if ok, err := content.Holds(io.LimitReader(r, c.Size), c.Size, c.Digest, *buf); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return content.Holds(r, t.size, t.digest, *buf)
}

func (p *puller) count(n int64) {
	p.mu.Lock()
	p.res.DownloadedBytes += n
	p.mu.Unlock()
}

func (p *puller) countBlob() {
	p.mu.Lock()
	p.res.BlobsTransferred++
	p.mu.Unlock()
}

// sameContent names the content of a whole or chunked file: its kind and
// digest. The kind matters, as a whole file's digest and a chunked file's
// are of different things, which a hostile manifest could make equal.
type sameContent struct {
	chunked bool
	digest  digest.Digest
}

// download fetches the targets in parallel: packs by whole blob or by
// ranged frames, chunked files chunk by chunk, the rest as whole blobs.
// Whole or chunked files with the same content (two names, one digest) are
// downloaded once, by the first of them; the others are copies of its
// verified bytes (see placeCopies).
func (p *puller) download(ctx context.Context, todo []target) error {
	packs := map[digest.Digest][]target{}
	var packOrder []digest.Digest
	var chunked []target
	copies := map[sameContent][]target{}
	downloads := todo[:0:0]
	for _, t := range todo {
		if t.packed == nil && t.blob.MediaType != spec.MediaTypeDirectoryTarGz {
			k := sameContent{chunked: t.blob.MediaType == spec.MediaTypeChunkedFile, digest: t.digest}
			if cs, seen := copies[k]; seen {
				copies[k] = append(cs, t)
				continue
			}
			copies[k] = []target{}
		}
		downloads = append(downloads, t)
		if t.packed == nil && t.blob.MediaType == spec.MediaTypeChunkedFile {
			chunked = append(chunked, t)
		}
	}
	copiesOf := func(t target) []target {
		return copies[sameContent{chunked: t.blob.MediaType == spec.MediaTypeChunkedFile, digest: t.digest}]
	}
	local := &chunkIndex{}
	if len(chunked) > 0 {
		local = p.indexLocalChunks(ctx, chunked)
	}
	defer local.close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.c.opts.Concurrency)
	var chunkJobs []func(context.Context) error
	for _, t := range downloads {
		switch {
		case t.packed != nil:
			if _, ok := packs[t.blob.Digest]; !ok {
				packOrder = append(packOrder, t.blob.Digest)
			}
			packs[t.blob.Digest] = append(packs[t.blob.Digest], t)
		case t.blob.MediaType == spec.MediaTypeChunkedFile:
			jobs, err := p.chunkedJobs(t, copiesOf(t), local)
			if err != nil {
				g.Wait()
				return err
			}
			chunkJobs = append(chunkJobs, jobs...)
		case t.isLegacyDir():
			g.Go(func() error { return p.extractLegacyDir(t, p.legacy[t.name]) })
		default:
			g.Go(func() error { return p.pullFile(gctx, t, copiesOf(t)) })
		}
	}
	for _, d := range packOrder {
		g.Go(func() error { return p.pullPacked(gctx, packs[d]) })
	}
	for _, job := range chunkJobs {
		g.Go(func() error { return job(gctx) })
	}
	return g.Wait()
}

// ensureDir makes directory rel (relative to p.dir, "." for p.dir) and its
// parents real directories, creating what is missing, and refuses a
// symbolic link or a file on the way, so no write through it can land
// outside p.dir; a file the plan let go (replaceFiles) is removed first.
// Each directory is checked once per pull, at the first write into it;
// name is the file being written, for errors.
func (p *puller) ensureDir(name, rel string) error {
	if rel == "." {
		return nil
	}
	p.dirsMu.Lock()
	done := p.dirs[rel]
	p.dirsMu.Unlock()
	if done {
		return nil
	}
	if err := p.ensureDir(name, path.Dir(rel)); err != nil {
		return err
	}
	full := p.localPath(rel)
	fi, err := os.Lstat(full)
	if err == nil && p.replaceFiles[rel] && fi.Mode().Type()&(fs.ModeDir|fs.ModeSymlink) == 0 {
		if err = p.removeFile(rel); err == nil {
			err = fs.ErrNotExist // gone: made below
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(full, 0o755); err == nil {
			p.markDir(rel)
			return nil
		}
		if errors.Is(err, fs.ErrExist) { // created meanwhile: check what it is
			fi, err = os.Lstat(full)
		}
	}
	if err != nil {
		return err
	}
	if err := p.refuseDir(name, full, fi); err != nil {
		return err
	}
	p.markDir(rel)
	return nil
}

func (p *puller) markDir(rel string) {
	p.dirsMu.Lock()
	p.dirs[rel] = true
	p.dirsMu.Unlock()
}

// createTemp creates a new empty temp file in p.tmp with permissions perm
// (less the umask; closeTemp restores them).
//
// It calls syscall.Open and wraps the descriptor with os.NewFile because
// os.OpenFile also makes a regular file non-blocking and offers it to the
// network poller, which refuses it: three more system calls per file,
// which count when a pull writes tens of thousands of small files.
func (p *puller) createTemp(perm fs.FileMode) (*os.File, error) {
	for {
		name := p.tmpName()
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
func (p *puller) place(tmp string, t target, fi fs.FileInfo) error {
	if err := checkName(t.name); err != nil {
		return err
	}
	if err := p.ensureDir(t.name, path.Dir(t.name)); err != nil {
		return err
	}
	dst := p.localPath(t.name)
	err := os.Rename(tmp, dst)
	if files, ok := p.clearDirs[t.name]; ok && err != nil {
		if err = p.removeDir(t.name, files); err == nil {
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
	p.placed(t, fi)
	return nil
}

// placed records t, now at its name, in the cache under fi.
func (p *puller) placed(t target, fi fs.FileInfo) {
	p.cache.putFile(t.name, cachedFile{Key: keyOf(fi), Digest: t.digest, Chunks: t.blob.Chunks})
}

// placeCopies writes the verified bytes in src, t's temp file, as each of
// copies, the targets with t's content under other names: each into a temp
// file of its own, verified again as it is copied, then moved into place.
func (p *puller) placeCopies(src *os.File, t target, copies []target) error {
	for _, c := range copies {
		if c.size != t.size { // one digest, two sizes: the registry checks sizes, so it is broken or hostile
			return fmt.Errorf("%s and %s have the digest %s but sizes %d and %d; the manifest is corrupt", t.name, c.name, t.digest, t.size, c.size)
		}
		perm := permOf(c)
		f, err := p.createTemp(perm)
		if err != nil {
			return err
		}
		ok, err := holds(io.TeeReader(io.NewSectionReader(src, 0, t.size), f), c)
		if err == nil && !ok {
			err = fmt.Errorf("%s: the copy of %s does not match digest %s; %s changed while it was copied (the copy was not written)", c.name, t.name, c.digest, src.Name())
		}
		if err == nil {
			err = f.Sync()
		}
		var fi fs.FileInfo
		if err == nil {
			fi, err = closeTemp(f, perm)
		} else {
			f.Close()
		}
		if err == nil {
			err = p.place(f.Name(), c, fi)
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
		// Shown as skipped; the result counts the blob once, so not at all.
		tracker := p.c.opts.Progress.Start(c.name, c.size)
		tracker.Skip(c.size)
		tracker.Done(nil)
	}
	return nil
}

// pullFile downloads a whole-file blob into a temp file, resuming a partial
// one left by a killed pull, verifies it, copies it to the targets with the
// same content (copies), and moves it into place.
func (p *puller) pullFile(ctx context.Context, t target, copies []target) error {
	tmp := filepath.Join(p.tmp, t.digest.Encoded()+partSuffix)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	v := content.NewVerifier(t.size, t.digest)
	have, err := io.Copy(v, f) // what a killed pull left, hashed to continue
	if err != nil {
		return err
	}
	if have > t.size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		v.Reset()
		have = 0
	}
	tracker := p.c.opts.Progress.Start(t.name, t.size)
	tracker.Skip(have)
	p.skipped(0, have) // a killed pull downloaded these already
	err = p.fetchBlob(ctx, t.blob.Digest, v, io.NewOffsetWriter(f, have), tracker)
	if errors.Is(err, content.ErrDigestMismatch) {
		f.Truncate(0)
		err = fmt.Errorf("%s: downloaded bytes do not match digest %s; the blob on the registry is corrupt (nothing was written)", t.name, t.digest)
	}
	tracker.Done(err)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := p.placeCopies(f, t, copies); err != nil {
		return err
	}
	fi, err := closeTemp(f, permOf(t))
	if err != nil {
		return err
	}
	p.countBlob()
	return p.place(tmp, t, fi)
}

// fetchBlob copies blob d into w from where v left off (the bytes v has
// seen are those before), through v's reader: w receives the rest of the
// blob and then nil, or an error, and never the last bytes of content
// that is not the blob (content.ErrSizeMismatch, content.ErrDigestMismatch).
func (p *puller) fetchBlob(ctx context.Context, d digest.Digest, v *content.Verifier, w io.Writer, tracker Tracker) error {
	if v.Written() == v.Size() {
		return v.Verify()
	}
	return p.fetchInto(ctx, d, v.Written(), v.Size()-v.Written(), w, tracker, v.Reader)
}

// fetchRange copies length bytes of blob d from offset into w: a range
// whose content its reader checks (a packed file's frame).
func (p *puller) fetchRange(ctx context.Context, d digest.Digest, offset, length int64, w io.Writer, tracker Tracker) error {
	return p.fetchInto(ctx, d, offset, length, w, tracker, func(r io.Reader) *content.Reader {
		// A registry that ignores a range from 0 sends the whole blob.
		return content.NewReader(io.LimitReader(r, length), length, "")
	})
}

// fetchInto copies length bytes of a blob from offset into w, read through
// verify, which yields only what it checked.
func (p *puller) fetchInto(ctx context.Context, d digest.Digest, offset, length int64, w io.Writer, tracker Tracker, verify func(io.Reader) *content.Reader) error {
	if length == 0 {
		return nil
	}
	rc, err := p.api.GetBlob(ctx, p.ref.Repository, p.ref.Name, d, offset, length)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	counted := &countingReadCloser{ReadCloser: rc, add: func(n int64) { tracker.Add(n); p.count(n) }}
	if _, err := io.CopyBuffer(w, verify(counted), *buf); err != nil {
		return fmt.Errorf("download %s: %w", d, err)
	}
	return nil
}

// copyBuffers hold 1 MiB copy buffers: large writes, few syscalls.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}
