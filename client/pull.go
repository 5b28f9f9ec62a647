package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/client/chunker"
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
	// Sync makes every file durable before Pull returns: one flush of the
	// filesystem at the end (syncfs on Linux), or an fsync of each file.
	// Without it a file survives a killed process but may be lost by a
	// power failure, and a later pull, which finds out, fetches it again
	// (see durable.go).
	Sync bool
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
	DownloadedBytes int64 `json:"downloaded_bytes"`
	Transfer
	// Stale lists, sorted, the files modelx knows in the directory that the
	// version does not have (within the selection) and that are still
	// there: every one without Prune; with Prune, those changed since
	// modelx wrote them, which it leaves to the user from then on.
	Stale []string `json:"stale_files,omitempty"`
	// Pruned lists, sorted, the files Prune removed.
	Pruned []string `json:"pruned_files,omitempty"`
}

// puller carries out one pull's plan: it fetches what the plan needs
// through blobs, verifies it, and hands it to the tree writer. Whole files
// resume a killed pull's partial download; chunked files are assembled
// chunk by chunk, copying the chunks local files hold; packs come whole
// or by ranges. It counts what moved in res and shows it to progress.
type puller struct {
	blobs       blobFetcher
	tree        *treeWriter
	planner     *planner
	cache       *hashCache
	progress    Progress // the pull's progress: Options.Progress
	concurrency int
	chunking    chunker.Params // to cut local files that may hold chunks
	res         *PullResult
	mu          sync.Mutex // guards res while downloads run

	legacy map[string]*legacyArchive // fetched archives, by target name
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
	ctx, span := phase(ctx, "modelx.pull")
	defer span.End()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if unchanged := c.unchangedPull(ctx, ref, abs, opts); unchanged != nil {
		unchanged.DurationSeconds = time.Since(start).Seconds()
		return unchanged, nil
	}
	// Decoding a large cache takes as long as fetching the manifest: do both at once.
	loaded := make(chan *hashCache, 1)
	go func() {
		_, load := phase(ctx, "modelx.pull.cache.load")
		defer load.End()
		loaded <- loadCache(abs, c.opts.Chunker)
	}()
	api := c.API(ref.Registry)
	mctx, get := phase(ctx, "modelx.pull.manifest")
	m, _, d, err := api.GetManifest(mctx, ref.Repository, ref.Name, ref.ManifestRef())
	get.End()
	if err != nil {
		return nil, explainMissing(ctx, api, ref, err)
	}
	created, err := mkdirAllCreated(abs)
	if err != nil {
		return nil, err
	}
	cache := <-loaded
	tree := newTreeWriter(abs, cache)
	tree.syncSmall = opts.Sync && !canSyncFS
	p := &puller{blobs: &modelBlobs{api: api, repo: ref.Repository, name: ref.Name}, tree: tree,
		planner: &planner{tree: tree, cache: cache, force: opts.Force}, cache: cache,
		progress: c.opts.Progress, concurrency: c.opts.Concurrency, chunking: c.opts.Chunker,
		res: &PullResult{Reference: ref.String(), Digest: d}, legacy: map[string]*legacyArchive{}}
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
	readConfig := func() ([]byte, error) { return api.FetchConfig(ctx, ref.Repository, ref.Name, m.Config) }
	targets, inSelection, err := selectTargets(ref, all, opts, readConfig)
	if err != nil {
		return nil, err
	}
	withArchives, err := p.fetchLegacyDirs(ctx, targets)
	if err != nil {
		return nil, err
	}
	_, planning := phase(ctx, "modelx.pull.plan")
	plan, err := p.planner.compare(withArchives)
	planning.End()
	if err != nil {
		return nil, err
	}
	p.res.BlobsSkipped += plan.skippedBlobs
	p.res.SkippedBytes += plan.skippedBytes
	p.tree.allow(plan)
	forgetSummary(abs)
	if err := os.MkdirAll(p.tree.tmp, 0o755); err != nil {
		return nil, err
	}
	p.progress.Plan(plannedFetch(plan.todo), p.res.SkippedBytes)
	fctx, fetch := phase(ctx, "modelx.pull.fetch")
	err = p.download(fctx, plan.todo)
	fetch.End()
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
			return nil, p.diskFull(err, plan.todo)
		case errors.Is(err, ErrConnectionClosed):
			return nil, fmt.Errorf("%w; what was received is kept in %s: run the same pull again to resume", err, p.tree.tmp)
		}
		return nil, err
	}
	_, settle := phase(ctx, "modelx.pull.settle")
	err = p.settleStale(p.versionNames(all, withArchives), inSelection, opts.Prune)
	settle.End()
	if err != nil {
		return nil, err
	}
	if opts.Sync {
		_, flush := phase(ctx, "modelx.pull.sync")
		err = p.tree.sync()
		flush.End()
		if err != nil {
			return nil, fmt.Errorf("flush %s to disk: %w", abs, err)
		}
	}
	_, save := phase(ctx, "modelx.pull.cache.save")
	_ = p.cache.save()
	save.End()
	p.res.Files = len(targets)
	if opts.DropState {
		if err := os.RemoveAll(filepath.Join(abs, stateDir)); err != nil {
			return nil, err
		}
		p.res.DurationSeconds = time.Since(start).Seconds()
		return p.res, nil
	}
	// Every partial download is now complete: drop what older pulls left.
	_ = removeContents(p.tree.tmp)
	c.recordPull(ref, abs, opts, p, withArchives)
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
	removed := "removed the partial downloads in " + p.tree.tmp + ", which would keep the disk full"
	if rerr := removeContents(p.tree.tmp); rerr != nil {
		removed = fmt.Sprintf("could not remove the partial downloads in %s (%v): remove them by hand", p.tree.tmp, rerr)
	}
	free := ""
	if n, ok := freeSpace(p.tree.dir); ok {
		free = fmt.Sprintf(", %s is free now", humanize.Bytes(n))
	}
	reason := "full"
	if errors.Is(err, syscall.EDQUOT) {
		reason = "over its quota"
	}
	return fmt.Errorf("the disk holding %s is %s: this pull fetches %s in %d %s%s; %s; free space (or give the directory a larger volume) and pull again, which keeps the files already in place: %w",
		p.tree.dir, reason, humanize.Bytes(need), len(todo), humanize.Plural(len(todo), "file", "files"), free, removed, err)
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

func (p *puller) count(n int64) {
	p.mu.Lock()
	p.res.DownloadedBytes += n
	p.mu.Unlock()
}

// showCopy shows a file placed as a copy of another's verified bytes as
// skipped; the result counts their blob once, so not at all.
func (p *puller) showCopy(t target) {
	tracker := p.progress.Start(t.name, t.size)
	tracker.Skip(t.size)
	tracker.Done(nil)
}

func (p *puller) countBlob() {
	p.mu.Lock()
	p.res.BlobsTransferred++
	p.mu.Unlock()
}

// skipped counts blobs and bytes the pull did not download because the
// directory held them: chunks of an earlier pull or of an old copy of the
// file, bytes of a killed pull's partial download.
func (p *puller) skipped(blobs int, n int64) {
	p.mu.Lock()
	p.res.BlobsSkipped += blobs
	p.res.SkippedBytes += n
	p.mu.Unlock()
}

// download fetches the targets in parallel, as groupFetches groups them:
// packs by whole blob or by ranged frames, chunked files chunk by chunk,
// the rest as whole blobs; each file's copies are written from its
// verified bytes (see placeCopies).
func (p *puller) download(ctx context.Context, todo []target) error {
	plan := groupFetches(todo)
	local := &chunkIndex{}
	if len(plan.chunked) > 0 {
		local = p.indexLocalChunks(ctx, plan.chunked)
	}
	defer local.close()
	if l, ok := p.blobs.(blobLocator); ok {
		lctx, stop := context.WithCancel(ctx)
		defer stop() // locating in the background ends with the download
		l.locate(lctx, blobsToFetch(plan, local))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.concurrency)
	var chunkJobs []func(context.Context) error
	for _, f := range plan.files {
		switch t := f.target; {
		case t.blob.MediaType == spec.MediaTypeChunkedFile:
			jobs, err := p.chunkedJobs(t, f.copies, local)
			if err != nil {
				g.Wait()
				return err
			}
			chunkJobs = append(chunkJobs, jobs...)
		case t.isLegacyDir():
			g.Go(func() error { return p.extractLegacyDir(t, p.legacy[t.name]) })
		default:
			g.Go(func() error { return p.pullFile(gctx, t, f.copies) })
		}
	}
	for _, ts := range plan.packs {
		g.Go(func() error { return p.pullPacked(gctx, ts) })
	}
	for _, job := range chunkJobs {
		g.Go(func() error { return job(gctx) })
	}
	return g.Wait()
}

// blobsToFetch lists the blobs a download of plan reads, each once: whole
// files, packs, and the chunks of chunked files that no local file holds.
func blobsToFetch(plan fetchPlan, local *chunkIndex) []spec.BlobRef {
	seen := map[digest.Digest]bool{}
	var out []spec.BlobRef
	add := func(d digest.Digest, size int64) {
		if !seen[d] {
			seen[d] = true
			out = append(out, spec.BlobRef{Digest: d, Size: size})
		}
	}
	for _, f := range plan.files {
		switch t := f.target; {
		case t.blob.MediaType == spec.MediaTypeChunkedFile:
			for _, ch := range t.blob.Chunks {
				if _, ok := local.find(ch); !ok {
					add(ch.Digest, ch.Size)
				}
			}
		case !t.isLegacyDir():
			add(t.blob.Digest, t.blob.Size)
		}
	}
	for _, ts := range plan.packs {
		add(ts[0].blob.Digest, ts[0].blob.Size)
	}
	return out
}

// copyBuffers hold 1 MiB copy buffers: large writes, few syscalls.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// pullKey is what, besides the reference, shapes what a pull writes and
// reports.
func pullKey(opts PullOptions) string {
	return transferKey(opts.Files, opts.ModelFiles, opts.ModelFilesIfListed, opts.Prune, opts.Sync)
}

// unchangedPull returns, when the last transfer into dir was a pull of ref
// with the same options, its files are as it left them, and the reference
// still names its manifest, the result of a pull with nothing to fetch:
// the price of one stat per file and one HEAD request (see summary.go).
// Otherwise nil; the full pull forgets the summary once it is about to
// write (a refused pull changes nothing in dir).
func (c *Client) unchangedPull(ctx context.Context, ref Reference, dir string, opts PullOptions) *PullResult {
	last := loadSummary(dir)
	if last == nil {
		return nil
	}
	if opts.DropState { // the full pull removes the state folder
		return nil
	}
	ctx, span := phase(ctx, "modelx.pull.unchanged")
	defer span.End()
	if !last.matches("pull", ref.String(), pullKey(opts), filesFingerprint(dir, last.Names)) {
		return nil
	}
	d, err := c.API(ref.Registry).ManifestDigest(ctx, ref.Repository, ref.Name, ref.ManifestRef())
	if err != nil || d != last.Manifest {
		return nil
	}
	c.opts.Progress.Plan(0, last.SkippedBytes)
	return &PullResult{Reference: ref.String(), Digest: d,
		Transfer: Transfer{Files: last.Files, BlobsSkipped: last.BlobsSkipped, SkippedBytes: last.SkippedBytes}}
}

// recordPull records a successful pull into dir of the files of targets,
// when a pull with nothing to fetch would report exactly what the summary
// holds: no legacy archive (extracted, not placed file by file) and no
// stale file to report, and every file as the hash cache records it.
func (c *Client) recordPull(ref Reference, dir string, opts PullOptions, p *puller, targets []target) {
	if len(p.res.Stale) > 0 {
		return
	}
	names := make([]string, 0, len(targets))
	for _, t := range targets {
		if t.isLegacyDir() || t.archived {
			return
		}
		names = append(names, t.name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	vouched := true
	tree := keysFingerprint(names, func(name string) (fileKey, bool) {
		cf, ok := p.cache.entry(name)
		vouched = vouched && ok && p.cache.durable(cf)
		return cf.Key, ok
	})
	if !vouched {
		return
	}
	same := make([]bool, len(targets))
	for i := range same {
		same[i] = true
	}
	blobs, bytes := countPresent(targets, same, nil)
	boot := p.tree.boot
	if opts.Sync {
		boot = ""
	}
	saveSummary(dir, lastTransfer{Op: "pull", Ref: ref.String(), Options: pullKey(opts), Manifest: p.res.Digest, Tree: tree,
		Names: names, Boot: boot, Files: len(targets), BlobsSkipped: blobs, SkippedBytes: bytes})
}
