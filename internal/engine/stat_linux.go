package engine

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysIdentity gives the change time, inode and device of a stat.
func sysIdentity(s *syscall.Stat_t) (ctime int64, ino, dev uint64) {
	return s.Ctim.Sec*1e9 + s.Ctim.Nsec, s.Ino, s.Dev
}

// statAt is fstatat(2) on cpath (path with a trailing NUL) relative to
// fd, made as a raw system call: the snapshot's no-op is one of these per
// recorded path, and the raw call allocates nothing.
func statAt(fd int, path string, cpath []byte, flags int) (FileStat, syscall.Errno) {
	var st syscall.Stat_t
	_, _, errno := syscall.Syscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(&cpath[0])), uintptr(unsafe.Pointer(&st)), uintptr(flags), 0, 0)
	if errno != 0 {
		return FileStat{}, errno
	}
	return statOfSys(&st), 0
}

// statOfSys is StatOf for a raw stat: the mode is os.FileMode's, as
// os.Stat reports it.
func statOfSys(st *syscall.Stat_t) FileStat {
	return FileStat{
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		Ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:   st.Ino,
		Dev:   st.Dev,
		Mode:  modeOf(st.Mode),
	}
}
