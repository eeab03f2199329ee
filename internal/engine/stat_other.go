//go:build !linux

package engine

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysIdentity gives the change time, inode and device of a stat.
func sysIdentity(s *syscall.Stat_t) (ctime int64, ino, dev uint64) {
	return s.Ctimespec.Sec*1e9 + s.Ctimespec.Nsec, s.Ino, uint64(s.Dev)
}

// statAt is fstatat(2) on path relative to fd.
func statAt(fd int, path string, _ []byte, flags int) (FileStat, syscall.Errno) {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, path, &st, flags); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return FileStat{}, errno
		}
		return FileStat{}, syscall.EIO
	}
	return FileStat{
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		Ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:   st.Ino,
		Dev:   uint64(st.Dev),
		Mode:  modeOf(uint32(st.Mode)),
	}, 0
}
