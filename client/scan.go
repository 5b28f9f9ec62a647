package client

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"modelx.io/modelx/spec"
)

// IgnoreFile lists patterns of paths push leaves out, one per line.
const IgnoreFile = ".modelxignore"

// localFile is a regular file found under the model directory.
type localFile struct {
	name string // slash-separated path relative to the directory
	path string // path on disk
	info os.FileInfo
}

// ignoreRules are the patterns of .modelxignore: "#" starts a comment; a
// pattern with a "/" (other than a trailing one) matches the whole relative
// path, one without matches any path element; a trailing "/" matches
// directories only. Matching uses path.Match.
type ignoreRules struct{ patterns []string }

func loadIgnore(dir string) (ignoreRules, error) {
	f, err := os.Open(filepath.Join(dir, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ignoreRules{}, nil
	}
	if err != nil {
		return ignoreRules{}, err
	}
	defer f.Close()
	var rules ignoreRules
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") {
			return rules, fmt.Errorf("%s line %d: negated patterns (%q) are not supported", IgnoreFile, line, p)
		}
		if _, err := path.Match(strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/"), ""); err != nil {
			return rules, fmt.Errorf("%s line %d: bad pattern %q: %v", IgnoreFile, line, p, err)
		}
		rules.patterns = append(rules.patterns, p)
	}
	return rules, sc.Err()
}

func (r ignoreRules) ignored(rel string, isDir bool) bool {
	for _, p := range r.patterns {
		dirOnly := strings.HasSuffix(p, "/")
		p = strings.TrimSuffix(p, "/")
		if dirOnly && !isDir {
			continue
		}
		if strings.Contains(p, "/") {
			if ok, _ := path.Match(strings.TrimPrefix(p, "/"), rel); ok {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, path.Base(rel)); ok {
			return true
		}
	}
	return false
}

// maxListedProblems bounds the paths an UnpushableError names; the
// count says how many there are in all.
const maxListedProblems = 20

// PathProblem is a path under a model directory that push cannot send.
type PathProblem struct {
	// Path is slash-separated and relative to the model directory, with a
	// trailing "/" for a directory.
	Path string
	// Reason says why, e.g. "contains a control character".
	Reason string
	// IgnoreLine is the .modelxignore line that leaves the path out.
	IgnoreLine string
}

// UnpushableError lists every path of a model directory that push cannot
// send: names the registry refuses (spec.ValidatePath), links to
// directories and special files. The scan finds them all before any
// request is made.
type UnpushableError struct {
	Dir      string
	Problems []PathProblem
}

// Error names each path (the first maxListedProblems) with its reason, and
// the fix: rename them, or the lines to add to .modelxignore.
func (e *UnpushableError) Error() string {
	var b strings.Builder
	what := "path"
	if len(e.Problems) > 1 {
		what = "paths"
	}
	fmt.Fprintf(&b, "%d %s in %s cannot be pushed (nothing was uploaded):", len(e.Problems), what, e.Dir)
	shown := e.Problems[:min(len(e.Problems), maxListedProblems)]
	for _, p := range shown {
		fmt.Fprintf(&b, "\n  %q %s", p.Path, p.Reason)
	}
	if more := len(e.Problems) - len(shown); more > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", more)
	}
	fmt.Fprintf(&b, "\nrename or remove them, or leave them out with these lines in %s:", filepath.Join(e.Dir, IgnoreFile))
	for _, p := range shown {
		fmt.Fprintf(&b, "\n  %s", p.IgnoreLine)
	}
	if len(shown) < len(e.Problems) {
		b.WriteString("\n  (and one for each of the others)")
	}
	return b.String()
}

// ignoreLine is a .modelxignore line that matches rel (a directory when
// dir) and nothing at another depth: anchored with "/", the characters
// path.Match treats specially escaped, and each character that cannot be
// typed or seen (controls, format characters, invalid UTF-8, whitespace
// at the end, which the file's parser trims) written as "?".
func ignoreLine(rel string, dir bool) string {
	var b strings.Builder
	b.WriteByte('/')
	trailing := len(strings.TrimRightFunc(rel, unicode.IsSpace))
	for i, r := range rel {
		switch {
		case r == utf8.RuneError, !unicode.IsGraphic(r), i >= trailing:
			b.WriteByte('?')
		case strings.ContainsRune(`*?[]\`, r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	if dir {
		b.WriteByte('/')
	}
	return b.String()
}

// scanDir lists the regular files under dir, sorted by name, leaving out
// .git (a repository, or a worktree's link to one) and .modelx (a pull's
// state) at any depth, and what .modelxignore names. Symbolic links to
// files are followed. Everything push cannot send is gathered into one
// *UnpushableError, so the push fails before it uploads anything: names
// a manifest may not hold (spec.ValidatePath: ".GIT", control characters,
// …), links to directories, and other special files. It also returns the
// tree's fingerprint: a sha256 over every directory and file it lists,
// each file with its mode, size, mtime and inode (see summary.go).
func scanDir(dir string) ([]localFile, string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, "", fmt.Errorf("model directory: %w", err)
	}
	if !st.IsDir() {
		return nil, "", fmt.Errorf("%s is not a directory", dir)
	}
	rules, err := loadIgnore(dir)
	if err != nil {
		return nil, "", err
	}
	fp := newFingerprint()
	statter := newDirStatter()
	defer statter.close()
	var files []localFile
	var problems []PathProblem
	refuse := func(rel string, isDir bool, reason string) {
		shown := rel
		if isDir {
			shown += "/"
		}
		problems = append(problems, PathProblem{Path: shown, Reason: reason, IgnoreLine: ignoreLine(rel, isDir)})
	}
	invalid := func(rel string, isDir bool) bool {
		err := spec.ValidatePath(rel)
		if err == nil {
			return false
		}
		reason := err.Error()
		var pe *spec.PathError
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		refuse(rel, isDir, reason)
		return true
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == stateDir || rules.ignored(rel, true) {
				return filepath.SkipDir
			}
			if invalid(rel, true) {
				return filepath.SkipDir // one entry for the directory, not one per file
			}
			fp.dir(rel)
			return nil
		}
		if d.Name() == ".git" || rules.ignored(rel, false) {
			return nil
		}
		if invalid(rel, false) {
			return nil
		}
		info, err := statter.stat(p) // follows a link to a file
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		switch {
		case info.IsDir():
			refuse(rel, false, "is a link to a directory; push follows links to files only: copy the directory in")
			return nil
		case !info.Mode().IsRegular():
			refuse(rel, false, fmt.Sprintf("is not a regular file (%s)", info.Mode().Type()))
			return nil
		}
		files = append(files, localFile{name: rel, path: p, info: info})
		fp.file(rel, info)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(problems) > 0 {
		return nil, "", &UnpushableError{Dir: dir, Problems: problems}
	}
	slices.SortFunc(files, func(a, b localFile) int { return strings.Compare(a.name, b.name) })
	return files, fp.sum(), nil
}
