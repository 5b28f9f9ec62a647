package client

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dirStatter stats the files of a walk relative to their directory
// (fstatat on an O_PATH descriptor of it), where os.Stat resolves every
// element of the full path again: a third of the cost of a scan of
// thousands of files in nested folders. A walk visits a directory's files
// one after the other, so one descriptor is open at a time.
type dirStatter struct {
	dir string
	fd  int
}

func newDirStatter() *dirStatter { return &dirStatter{fd: -1} }

// stat is os.Stat(path): it follows a symbolic link.
func (s *dirStatter) stat(path string) (fs.FileInfo, error) { return s.statFlags(path, 0, "stat") }

// lstat is os.Lstat(path).
func (s *dirStatter) lstat(path string) (fs.FileInfo, error) {
	return s.statFlags(path, unix.AT_SYMLINK_NOFOLLOW, "lstat")
}

func (s *dirStatter) statFlags(path string, flags int, op string) (fs.FileInfo, error) {
	dir, name := filepath.Split(path)
	if dir != s.dir || s.fd < 0 {
		s.close()
		open := dir
		if open == "" {
			open = "." // a relative path with no folder: the working directory's file
		}
		fd, err := unix.Open(open, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			if flags != 0 {
				return os.Lstat(path)
			}
			return os.Stat(path)
		}
		s.dir, s.fd = dir, fd
	}
	var st unix.Stat_t
	for {
		err := unix.Fstatat(s.fd, name, &st, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: path, Err: err}
		}
		return newStatInfo(name, &st), nil
	}
}

func (s *dirStatter) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.dir, s.fd = "", -1
	}
}

// statInfo is the fs.FileInfo of a stat, as os.Stat would give it; Sys is
// a *syscall.Stat_t with the fields the client reads (the inode).
type statInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
	sys   syscall.Stat_t
}

func newStatInfo(name string, st *unix.Stat_t) *statInfo {
	fi := &statInfo{name: name, size: st.Size, mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
	fi.mode = fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		fi.mode |= fs.ModeDevice
	case unix.S_IFCHR:
		fi.mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		fi.mode |= fs.ModeDir
	case unix.S_IFIFO:
		fi.mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		fi.mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		fi.mode |= fs.ModeSocket
	}
	if st.Mode&unix.S_ISGID != 0 {
		fi.mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISUID != 0 {
		fi.mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		fi.mode |= fs.ModeSticky
	}
	fi.sys.Ino, fi.sys.Size, fi.sys.Mode = st.Ino, st.Size, st.Mode
	fi.sys.Mtim = syscall.Timespec{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec}
	return fi
}

func (fi *statInfo) Name() string       { return fi.name }
func (fi *statInfo) Size() int64        { return fi.size }
func (fi *statInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *statInfo) ModTime() time.Time { return fi.mtime }
func (fi *statInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *statInfo) Sys() any           { return &fi.sys }
