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

// scanDir lists the regular files under dir, sorted by name, leaving out
// .git (a repository, or a worktree's link to one) and .modelx (a pull's
// state) at any depth, and what .modelxignore names. Symbolic links to
// files are followed; links to directories are refused, as are other
// special files, and names a manifest may not hold (spec.ValidatePath:
// ".GIT", control characters, …), so the push fails before it uploads.
func scanDir(dir string) ([]localFile, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("model directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	rules, err := loadIgnore(dir)
	if err != nil {
		return nil, err
	}
	var files []localFile
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
			return nil
		}
		if d.Name() == ".git" || rules.ignored(rel, false) {
			return nil
		}
		if err := spec.ValidatePath(rel); err != nil {
			return fmt.Errorf("%q cannot be pushed: %v; rename it, or add it to %s", rel, err, IgnoreFile)
		}
		info, err := os.Stat(p) // follows a link to a file
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		switch {
		case info.IsDir():
			return fmt.Errorf("%s is a link to a directory; push follows links to files only: copy the directory in, or add it to %s", rel, IgnoreFile)
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file (%s); add it to %s", rel, info.Mode().Type(), IgnoreFile)
		}
		files = append(files, localFile{name: rel, path: p, info: info})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b localFile) int { return strings.Compare(a.name, b.name) })
	return files, nil
}
