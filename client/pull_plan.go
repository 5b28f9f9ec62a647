package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"modelx.io/modelx/content"
	"modelx.io/modelx/spec"
)

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

// planner decides what a pull writes, from the version's targets and
// what the directory holds: which files to fetch, which are there already,
// and what in the way the writes may remove. It reads the directory
// through the tree writer's path checks and writes nothing in it; the
// files it finds holding a target, or known unchanged, are recorded in the
// hash cache.
type planner struct {
	tree  *treeWriter
	cache *hashCache
	force bool // PullOptions.Force: replace what is in the way
}

// pullPlan is what the planner decided.
type pullPlan struct {
	// todo are the targets to write, in manifest order.
	todo []target
	// replaceFiles are files where the version has a directory, which
	// the writes may remove.
	replaceFiles map[string]bool
	// clearDirs are directories where the version has a file, each with
	// the known files in it, which the writes may remove.
	clearDirs map[string][]string
	// skippedBlobs and skippedBytes count what the directory holds
	// already (see countPresent).
	skippedBlobs int
	skippedBytes int64
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

// selectTargets returns the targets of ref opts selects, and whether a name
// is in the selection (for the files the version does not have: see
// settleStale). readConfig reads the version's modelx.yaml, verified, for
// the modelFiles it lists.
func selectTargets(ref Reference, targets []target, opts PullOptions, readConfig func() ([]byte, error)) ([]target, func(string) bool, error) {
	all := func(string) bool { return true }
	globs := slices.Clone(opts.Files)
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, nil, &OptionError{Option: "PullOptions.Files", Err: fmt.Errorf("%q is not a valid pattern: %w", g, err)}
		}
	}
	var prefixes []string
	if opts.ModelFiles || opts.ModelFilesIfListed {
		data, err := readConfig()
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
			return nil, nil, &OptionError{Option: "PullOptions.ModelFiles", Err: fmt.Errorf("%s of %s lists no modelFiles", spec.ConfigFileName, ref)}
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
		return nil, nil, fmt.Errorf("no file of %s matches %s; `modelx info %s` lists the files", ref, strings.Join(append(globs, prefixes...), ", "), ref)
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

// compare plans the writes of targets against what the directory holds,
// and writes nothing in it. It refuses every target whose path is unsafe (a parent inside
// dir that is a symbolic link: no write may land outside dir), then
// returns the plan: the targets whose local copy is missing or differs,
// and the rest counted as skipped. Something in the way (a file that differs, a file where
// the version has a directory, a directory where it has a file) may be
// replaced as judgeFile and judgeDir say; when any may not, it returns a
// *ConflictError naming every such path. Unchanged files are recognised
// through the hash cache without reading them. The writes check each
// directory again (ensureDir).
func (pl *planner) compare(targets []target) (*pullPlan, error) {
	force := pl.force
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
		ok, err := pl.tree.parentsExist(t.name, dir, seen)
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
		fi, err := os.Lstat(pl.tree.localPath(targets[i].name))
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
			verdicts[i], err = pl.judgeDir(targets[i].name, force)
		} else if fi != nil {
			verdicts[i], err = pl.judgeFile(targets[i], fi, force)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	plan := &pullPlan{replaceFiles: map[string]bool{}, clearDirs: map[string][]string{}}
	var conflicts []Conflict
	for rel, fi := range seen.files {
		v, err := pl.judgeInTheWay(rel, fi, force)
		if err != nil {
			return nil, err
		}
		if v.conflict != nil {
			conflicts = append(conflicts, *v.conflict)
		} else {
			plan.replaceFiles[rel] = true
		}
	}
	same := make([]bool, len(targets))
	packNeeded := map[digest.Digest]bool{}
	for i, t := range targets {
		v := verdicts[i]
		switch {
		case v.conflict != nil:
			conflicts = append(conflicts, *v.conflict)
		case v.clear != nil:
			plan.clearDirs[t.name] = v.clear
		}
		if t.archived {
			continue // written by its archive's extraction
		}
		if v.same {
			same[i] = true
			continue
		}
		plan.todo = append(plan.todo, t)
		if t.packed != nil {
			packNeeded[t.blob.Digest] = true
		}
	}
	if len(conflicts) > 0 {
		slices.SortFunc(conflicts, func(a, b Conflict) int { return strings.Compare(a.Path, b.Path) })
		return nil, &ConflictError{Dir: pl.tree.dir, Conflicts: conflicts}
	}
	plan.skippedBlobs, plan.skippedBytes = countPresent(targets, same, packNeeded)
	return plan, nil
}

// countPresent counts what the directory holds already as skipped, the way
// a push counts what the registry holds: in blobs and their stored bytes,
// each blob once. A whole file is its blob; a chunked file, its chunks; a
// packed file, its compressed frame, and its pack is a skipped blob when
// no file of it is needed.
func countPresent(targets []target, same []bool, packNeeded map[digest.Digest]bool) (skippedBlobs int, skippedBytes int64) {
	counted := map[digest.Digest]bool{}
	skip := func(d digest.Digest, size int64) {
		if !counted[d] {
			counted[d] = true
			skippedBlobs++
			skippedBytes += size
		}
	}
	for i, t := range targets {
		switch {
		case !same[i]:
		case t.packed != nil:
			skippedBytes += t.packed.Length
			if !packNeeded[t.blob.Digest] && !counted[t.blob.Digest] {
				counted[t.blob.Digest] = true
				skippedBlobs++
			}
		case t.blob.MediaType == spec.MediaTypeChunkedFile:
			for _, ch := range t.blob.Chunks {
				skip(ch.Digest, ch.Size)
			}
		default:
			skip(t.digest, t.size)
		}
	}
	return skippedBlobs, skippedBytes
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

// verifyLocal reports whether the local file at t's name holds t, hashed
// the way the manifest describes it. A file that cannot be read is an
// error; one gone since is not t.
func (pl *planner) verifyLocal(t target) (bool, error) {
	f, err := os.Open(pl.tree.localPath(t.name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // gone since the plan found it
	}
	if err != nil {
		return false, err
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

// sameContent names the content of a whole or chunked file: its kind and
// digest. The kind matters, as a whole file's digest and a chunked file's
// are of different things, which a hostile manifest could make equal.
type sameContent struct {
	chunked bool
	digest  digest.Digest
}

// fetchPlan is how a pull's todo is fetched (see groupFetches).
type fetchPlan struct {
	// files are the whole files, chunked files and legacy archives to
	// fetch, in manifest order, each with its copies.
	files []fileFetch
	// chunked are the chunked files among files, whose chunks local
	// files may hold.
	chunked []target
	// packs are the needed files of each pack, packs in the order their
	// first file comes.
	packs [][]target
}

// fileFetch is one file to fetch, and the targets with its content under
// other names, written from its verified bytes instead of fetched again.
type fileFetch struct {
	target target
	copies []target
}

// groupFetches groups todo by how it is fetched: packed files by pack,
// the rest one by one. Whole or chunked files with the same content (two
// names, one digest) are fetched once, by the first of them; the others
// are its copies.
func groupFetches(todo []target) fetchPlan {
	var plan fetchPlan
	first := map[sameContent]int{}    // → index in plan.files
	packAt := map[digest.Digest]int{} // → index in plan.packs
	for _, t := range todo {
		if t.packed != nil {
			i, ok := packAt[t.blob.Digest]
			if !ok {
				i = len(plan.packs)
				packAt[t.blob.Digest] = i
				plan.packs = append(plan.packs, nil)
			}
			plan.packs[i] = append(plan.packs[i], t)
			continue
		}
		if !t.isLegacyDir() {
			k := sameContent{chunked: t.blob.MediaType == spec.MediaTypeChunkedFile, digest: t.digest}
			if i, seen := first[k]; seen {
				plan.files[i].copies = append(plan.files[i].copies, t)
				continue
			}
			first[k] = len(plan.files)
			if k.chunked {
				plan.chunked = append(plan.chunked, t)
			}
		}
		plan.files = append(plan.files, fileFetch{target: t})
	}
	return plan
}

// plannedFetch is what a pull of todo moves or skips: the bytes of each
// file, except packed files, whose frames or packs are fetched (packFetch).
func plannedFetch(todo []target) int64 {
	var n int64
	packs := map[digest.Digest][]target{}
	for _, t := range todo {
		if t.packed == nil {
			n += t.size
			continue
		}
		packs[t.blob.Digest] = append(packs[t.blob.Digest], t)
	}
	for _, ts := range packs {
		_, fetch := packFetch(ts)
		n += fetch
	}
	return n
}

// packFetch decides how the needed files ts of one pack are fetched: the
// whole pack when most of it is needed, else each file's frame with a
// Range request; fetch is the bytes that moves.
func packFetch(ts []target) (whole bool, fetch int64) {
	blob := ts[0].blob
	var needed int64
	for _, t := range ts {
		needed += t.packed.Length
	}
	if needed*2 >= blob.Size || len(ts) > 32 {
		return true, blob.Size
	}
	return false, needed
}
