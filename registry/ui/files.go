package ui

import (
	"slices"
	"strings"

	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// DefaultFilesPerPage is how many files a version page lists by default;
// models may hold tens of thousands, a page at a time.
const DefaultFilesPerPage = 500

// openTreeFiles is the file count up to which every directory starts
// unfolded; bigger trees unfold only their top level.
const openTreeFiles = 200

// fileEntry is one file of a version as people see it: files inside packs
// are files of their own, and a chunked file is one file.
type fileEntry struct {
	Path string
	Size int64
	// Archive marks a legacy directory archive (a .tar.gz of a directory).
	Archive bool
}

// manifestFiles lists a manifest's files, sorted by path: the config, whole
// and chunked files, each file inside a pack, and legacy archives.
func manifestFiles(m *spec.Manifest) []fileEntry {
	var files []fileEntry
	if m.Config.Digest != "" {
		name := m.Config.Name
		if name == "" {
			name = spec.ConfigFileName
		}
		files = append(files, fileEntry{Path: name, Size: m.Config.Size})
	}
	for _, b := range m.Blobs {
		switch b.MediaType {
		case spec.MediaTypePack:
			for _, f := range b.Files {
				files = append(files, fileEntry{Path: f.Name, Size: f.Size})
			}
		case spec.MediaTypeDirectoryTarGz:
			files = append(files, fileEntry{Path: b.Name, Size: b.Size, Archive: true})
		default: // whole and chunked files
			files = append(files, fileEntry{Path: b.Name, Size: b.Size})
		}
	}
	slices.SortFunc(files, func(a, b fileEntry) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// treeNode is a directory or a file in a version's file tree.
type treeNode struct {
	Name string
	Path string
	Dir  bool
	// Size is a file's size, or the total of a directory's files.
	Size    int64
	Archive bool
	// Files counts the files under a directory.
	Files    int
	Open     bool
	Children []*treeNode
}

// HumanSize is the node's size for people.
func (n *treeNode) HumanSize() string { return humanize.Bytes(n.Size) }

// buildTree arranges files into directories: directories first, then
// files, each by name. A directory's size and file count are its totals
// in dirs when it is there (for a page of a version's files, the totals
// of the whole version), else the sums of its files here.
func buildTree(files []fileEntry, dirs map[string]dirTotal) *treeNode {
	root := &treeNode{Dir: true}
	nodes := map[string]*treeNode{"": root}
	var dirOf func(path string) *treeNode
	dirOf = func(path string) *treeNode {
		if d, ok := nodes[path]; ok {
			return d
		}
		parentPath, name := "", path
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			parentPath, name = path[:i], path[i+1:]
		}
		parent := dirOf(parentPath)
		d := &treeNode{Name: name, Path: path, Dir: true}
		parent.Children = append(parent.Children, d)
		nodes[path] = d
		return d
	}
	for _, f := range files {
		parentPath, name := "", f.Path
		if i := strings.LastIndexByte(f.Path, '/'); i >= 0 {
			parentPath, name = f.Path[:i], f.Path[i+1:]
		}
		parent := dirOf(parentPath)
		parent.Children = append(parent.Children, &treeNode{Name: name, Path: f.Path, Size: f.Size, Archive: f.Archive})
	}
	var finish func(n *treeNode, depth int)
	finish = func(n *treeNode, depth int) {
		for _, c := range n.Children {
			if c.Dir {
				finish(c, depth+1)
				n.Size += c.Size
				n.Files += c.Files
			} else {
				n.Size += c.Size
				n.Files++
			}
		}
		if total, ok := dirs[n.Path]; ok && n != root {
			n.Size, n.Files = total.size, total.files
		}
		slices.SortFunc(n.Children, func(a, b *treeNode) int {
			if a.Dir != b.Dir {
				if a.Dir {
					return -1
				}
				return 1
			}
			return strings.Compare(a.Name, b.Name)
		})
		n.Open = depth <= 1 || len(files) <= openTreeFiles
	}
	finish(root, 0)
	return root
}
