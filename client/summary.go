package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// A push or pull with nothing to move should cost one stat per file and
// one request, whatever the size of the model: no reading of the hash
// cache, no building or parsing of a manifest. After each successful push
// or pull, the directory's state folder records what it did (lastTransfer):
// the reference, the manifest, the options that shaped it, and a
// fingerprint of the directory's tree (the name, type, size, mtime, inode
// and permissions of every entry the push would consider). The next
// transfer of the same reference with the same options computes the
// fingerprint again; when it matches and the registry says the reference
// still names that manifest (one HEAD request), there is nothing to do.
// Anything else — a file touched, added or removed, the tag moved, other
// options — takes the full path, which records a new summary.
//
// The fingerprint trusts a file's size, mtime and inode exactly as the hash
// cache does; like the cache it is not trusted in another boot after a pull
// that did not sync (see durable.go).

// summaryVersion changes when the summary's meaning changes.
const summaryVersion = 1

// lastTransfer is the summary of the last successful push or pull of a
// directory, in DIR/.modelx/last.json.
type lastTransfer struct {
	Version  int           `json:"version"`
	Op       string        `json:"op"` // "push" or "pull"
	Ref      string        `json:"ref"`
	Options  string        `json:"options"` // the options that shape the result (transferKey)
	Manifest digest.Digest `json:"manifest"`
	Tree     string        `json:"tree"`            // a push's scanDir fingerprint, before; a pull's keysFingerprint of Names, after
	Names    []string      `json:"names,omitempty"` // a pull's files, sorted
	// Boot is the boot a pull wrote files in without syncing them; the
	// summary holds in no other boot.
	Boot string `json:"boot,omitempty"`
	// What a transfer with nothing to move reports.
	Files        int   `json:"files"`
	BlobsSkipped int   `json:"blobs_skipped"`
	SkippedBytes int64 `json:"skipped_bytes"`
}

func summaryPath(dir string) string { return filepath.Join(dir, stateDir, "last.json") }

// loadSummary reads dir's summary; nil when there is none or it is not
// this version's.
func loadSummary(dir string) *lastTransfer {
	data, err := os.ReadFile(summaryPath(dir))
	if err != nil {
		return nil
	}
	var s lastTransfer
	if json.Unmarshal(data, &s) != nil || s.Version != summaryVersion {
		return nil
	}
	return &s
}

// matches reports whether s describes a transfer op of ref with options,
// over a tree with the fingerprint tree, that still holds in this boot.
func (s *lastTransfer) matches(op, ref, options, tree string) bool {
	return s != nil && tree != "" && s.Op == op && s.Ref == ref && s.Options == options && s.Tree == tree &&
		(s.Boot == "" || s.Boot == bootID())
}

// forgetSummary removes dir's summary: a transfer that may change the
// directory starts with it, so a failure never leaves one that is wrong.
func forgetSummary(dir string) {
	if _, err := os.Lstat(summaryPath(dir)); errors.Is(err, fs.ErrNotExist) {
		return // nothing to forget; no change to the state folder
	}
	if err := os.Remove(summaryPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = os.WriteFile(summaryPath(dir), nil, 0o644) // unreadable as a summary
	}
}

// saveSummary records s in dir, atomically; a read-only directory keeps none.
func saveSummary(dir string, s lastTransfer) {
	s.Version = summaryVersion
	data, err := json.Marshal(s)
	if err != nil {
		return
	}
	_ = replaceFile(summaryPath(dir), data)
}

// transferKey is the part of the options that shapes what a transfer
// writes or reports, as one string.
func transferKey(parts ...any) string {
	data, _ := json.Marshal(parts)
	return string(data)
}

// fingerprint hashes the keys of a tree's entries, in the order given.
type fingerprint struct{ h hash.Hash }

func newFingerprint() fingerprint { return fingerprint{h: sha256.New()} }

// dir adds a directory.
func (f fingerprint) dir(name string) { fmt.Fprintf(f.h, "%s/\x00", name) }

// file adds a file, by what a stat of it says (a link's target's).
func (f fingerprint) file(name string, fi fs.FileInfo) {
	fmt.Fprintf(f.h, "%s\x00%o %d %d %d\x00", name, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), inodeOf(fi))
}

// missing adds a file that is not there.
func (f fingerprint) missing(name string) { fmt.Fprintf(f.h, "%s\x00-\x00", name) }

func (f fingerprint) sum() string { return hex.EncodeToString(f.h.Sum(nil)) }

// filesFingerprint is the fingerprint of the files names (sorted) in dir,
// each by its key (size, mtime, inode) as os.Lstat finds it: what the
// check of a pull's summary computes.
func filesFingerprint(dir string, names []string) string {
	statter := newDirStatter()
	defer statter.close()
	return keysFingerprint(names, func(name string) (fileKey, bool) {
		fi, err := statter.lstat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || !fi.Mode().IsRegular() {
			return fileKey{}, false
		}
		return keyOf(fi), true
	})
}

// keysFingerprint is the fingerprint of the files names by their keys; a
// pull records it from the keys its hash cache holds, which are those of
// the files as it placed or found them, so a file changed since makes the
// check differ.
func keysFingerprint(names []string, key func(name string) (fileKey, bool)) string {
	fp := newFingerprint()
	for _, name := range names {
		k, ok := key(name)
		if !ok {
			fp.missing(name)
			continue
		}
		fmt.Fprintf(fp.h, "%s\x00%d %d %d\x00", name, k.Size, k.ModTime, k.Inode)
	}
	return fp.sum()
}
