package engine

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// FileDigests caches file content digests by stat, so a no-op build stats
// files instead of hashing them. An entry is trusted only when the file's
// size, mtime, ctime, inode and device all match what was seen when it was
// hashed, and the file was not modified within RacyWindow of being hashed:
// file timestamps are only as fine as the kernel's clock tick, so a write in
// the same tick as the hash could otherwise keep the old stat.
type FileDigests struct {
	path  string
	mu    sync.Mutex
	m     map[string]digestEntry
	dirty bool

	// confine, once set (Confine), is the real path of the workspace: a
	// file that resolves, through symbolic links, to outside it is refused
	// when it is hashed. A stat change of the file or its target makes it
	// hashed again, so a retargeted link is caught too.
	confine string
}

// Confine refuses, from now on, files whose real path is outside root.
func (fd *FileDigests) Confine(root string) error {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", root, err)
	}
	fd.mu.Lock()
	fd.confine = real
	fd.mu.Unlock()
	return nil
}

// OutsideError reports a workspace file that is a symbolic link (or lies
// under one) resolving to outside the workspace.
type OutsideError struct {
	Path, Real string
}

func (e *OutsideError) Error() string {
	return fmt.Sprintf("%s resolves to %s, outside the workspace, through a symbolic link: pipe reads only the workspace's own files (a build must not depend on what lies elsewhere); copy the file into the workspace", e.Path, e.Real)
}

// FileStat is what pipe compares to decide a file is unchanged without
// reading it.
type FileStat struct {
	Size  int64
	Mtime int64
	Ctime int64
	Ino   uint64
	Dev   uint64
	Mode  uint32
}

type digestEntry struct {
	stat     FileStat
	digest   cache.Digest
	recorded int64 // unix ns when the digest was computed
}

// RacyWindow is how long before being hashed (or read) a file must have
// last changed for its stat to vouch for its content.
const RacyWindow = int64(200 * time.Millisecond)

// Settled reports whether a file with stat st, read at unix-ns time at, can
// be trusted by stat alone later.
func (st FileStat) Settled(at int64) bool {
	return at-st.Mtime > RacyWindow && at-st.Ctime > RacyWindow
}

const digestsMagic = "pipe-digests-2\n"

// LoadFileDigests reads the digest cache at path; a missing or unreadable
// file starts an empty cache (it is only an optimisation).
func LoadFileDigests(path string) *FileDigests {
	fd := &FileDigests{path: path, m: make(map[string]digestEntry)}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < len(digestsMagic)+32 || string(b[:len(digestsMagic)]) != digestsMagic {
		return fd
	}
	body := b[len(digestsMagic) : len(b)-32]
	if sha256.Sum256(body) != [32]byte(b[len(b)-32:]) {
		return fd
	}
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)) || uint64(len(body)-k) < n+88 {
			return &FileDigests{path: path, m: make(map[string]digestEntry)}
		}
		body = body[k:]
		name := string(body[:n])
		body = body[n:]
		var e digestEntry
		e.stat.Size = int64(binary.LittleEndian.Uint64(body[0:]))
		e.stat.Mtime = int64(binary.LittleEndian.Uint64(body[8:]))
		e.stat.Ctime = int64(binary.LittleEndian.Uint64(body[16:]))
		e.stat.Ino = binary.LittleEndian.Uint64(body[24:])
		e.stat.Dev = binary.LittleEndian.Uint64(body[32:])
		e.stat.Mode = uint32(binary.LittleEndian.Uint64(body[40:]))
		copy(e.digest[:], body[48:80])
		e.recorded = int64(binary.LittleEndian.Uint64(body[80:]))
		body = body[88:]
		fd.m[name] = e
	}
	return fd
}

// Save writes the cache atomically if it changed.
func (fd *FileDigests) Save() error {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	if !fd.dirty {
		return nil
	}
	var buf []byte
	buf = append(buf, digestsMagic...)
	start := len(buf)
	var num [88]byte
	for name, e := range fd.m {
		buf = binary.AppendUvarint(buf, uint64(len(name)))
		buf = append(buf, name...)
		binary.LittleEndian.PutUint64(num[0:], uint64(e.stat.Size))
		binary.LittleEndian.PutUint64(num[8:], uint64(e.stat.Mtime))
		binary.LittleEndian.PutUint64(num[16:], uint64(e.stat.Ctime))
		binary.LittleEndian.PutUint64(num[24:], e.stat.Ino)
		binary.LittleEndian.PutUint64(num[32:], e.stat.Dev)
		binary.LittleEndian.PutUint64(num[40:], uint64(e.stat.Mode))
		copy(num[48:80], e.digest[:])
		binary.LittleEndian.PutUint64(num[80:], uint64(e.recorded))
		buf = append(buf, num[:]...)
	}
	sum := sha256.Sum256(buf[start:])
	buf = append(buf, sum[:]...)
	if err := files.WriteAtomic(fd.path, buf, 0o644); err != nil {
		return fmt.Errorf("save file digests: %w", err)
	}
	fd.dirty = false
	return nil
}

// StatOf extracts the compared fields from fi.
func StatOf(fi os.FileInfo) FileStat {
	st := FileStat{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode())}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Ctime, st.Ino, st.Dev = sysIdentity(s)
	}
	return st
}

// Digest returns the sha256 of the file at abs, keyed in the cache by rel.
func (fd *FileDigests) Digest(rel, abs string) (cache.Digest, os.FileInfo, error) {
	return fd.digest(rel, abs, false)
}

// SourceDigest is Digest for a source file an action reads: when the file
// is hashed, it must resolve to inside the workspace (see Confine). Outputs
// pipe wrote itself need no such check, and a large tree of them would pay
// a path walk per file.
func (fd *FileDigests) SourceDigest(rel, abs string) (cache.Digest, os.FileInfo, error) {
	return fd.digest(rel, abs, true)
}

func (fd *FileDigests) digest(rel, abs string, source bool) (cache.Digest, os.FileInfo, error) {
	fi, err := os.Stat(abs)
	if err != nil {
		return cache.Digest{}, nil, err
	}
	if fi.IsDir() {
		return cache.Digest{}, fi, fmt.Errorf("%s is a directory", rel)
	}
	st := StatOf(fi)
	fd.mu.Lock()
	e, ok := fd.m[rel]
	fd.mu.Unlock()
	if ok && e.stat == st && st.Settled(e.recorded) {
		return e.digest, fi, nil
	}
	fd.mu.Lock()
	confine := fd.confine
	fd.mu.Unlock()
	if confine != "" && source {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return cache.Digest{}, nil, err
		}
		if r, err := filepath.Rel(confine, real); err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return cache.Digest{}, nil, &OutsideError{Path: rel, Real: real}
		}
	}
	d, err := hashFile(abs)
	if err != nil {
		return cache.Digest{}, nil, err
	}
	fd.Record(rel, fi, d)
	return d, fi, nil
}

// Lookup returns the cached digest for rel if the file's current stat
// matches and the entry is trusted, without hashing.
func (fd *FileDigests) Lookup(rel string, fi os.FileInfo) (cache.Digest, bool) {
	st := StatOf(fi)
	fd.mu.Lock()
	e, ok := fd.m[rel]
	fd.mu.Unlock()
	if ok && e.stat == st && st.Settled(e.recorded) {
		return e.digest, true
	}
	return cache.Digest{}, false
}

// settledStat returns the stat at which rel's entry was recorded, if there
// is one and it can be trusted by stat alone.
func (fd *FileDigests) settledStat(rel string) (FileStat, bool) {
	fd.mu.Lock()
	e, ok := fd.m[rel]
	fd.mu.Unlock()
	if !ok || !e.stat.Settled(e.recorded) {
		return FileStat{}, false
	}
	return e.stat, true
}

// Record notes that the file rel, with stat fi, has digest d.
func (fd *FileDigests) Record(rel string, fi os.FileInfo, d cache.Digest) {
	e := digestEntry{stat: StatOf(fi), digest: d, recorded: time.Now().UnixNano()}
	fd.mu.Lock()
	fd.m[rel] = e
	fd.dirty = true
	fd.mu.Unlock()
}

// Forget drops rel from the cache.
func (fd *FileDigests) Forget(rel string) {
	fd.mu.Lock()
	if _, ok := fd.m[rel]; ok {
		delete(fd.m, rel)
		fd.dirty = true
	}
	fd.mu.Unlock()
}

func hashFile(path string) (cache.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return cache.Digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 64<<10)); err != nil {
		return cache.Digest{}, fmt.Errorf("hash %s: %w", path, err)
	}
	var d cache.Digest
	h.Sum(d[:0])
	return d, nil
}
