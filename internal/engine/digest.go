package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/kvfile"
)

// FileDigests caches file content digests by stat, so a no-op build stats
// files instead of hashing them. An entry is trusted only when the file's
// size, mtime, ctime, inode and device all match what was seen when it was
// hashed, and the file was not modified within RacyWindow of being hashed:
// file timestamps are only as fine as the kernel's clock tick, so a write in
// the same tick as the hash could otherwise keep the old stat.
//
// The entries live in a kvfile (one record per path, looked up by key in a
// mapped sorted index, changes appended): a build reads the entries of the
// files it stats and appends those it hashed, so one edit in a workspace of
// 100,000 files neither decodes nor rewrites the other entries.
type FileDigests struct {
	kv *kvfile.File

	mu   sync.Mutex
	bufs files.Buffers // hashFile's
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

// digestsTag names the format of an entry's value (below) in the kvfile.
const digestsTag = "pipe-digests-3"

// entrySize is an entry's value: size, mtime, ctime, inode, device, mode,
// sha256, time recorded.
const entrySize = 88

func encodeEntry(e digestEntry) []byte {
	var num [entrySize]byte
	binary.LittleEndian.PutUint64(num[0:], uint64(e.stat.Size))
	binary.LittleEndian.PutUint64(num[8:], uint64(e.stat.Mtime))
	binary.LittleEndian.PutUint64(num[16:], uint64(e.stat.Ctime))
	binary.LittleEndian.PutUint64(num[24:], e.stat.Ino)
	binary.LittleEndian.PutUint64(num[32:], e.stat.Dev)
	binary.LittleEndian.PutUint64(num[40:], uint64(e.stat.Mode))
	copy(num[48:80], e.digest[:])
	binary.LittleEndian.PutUint64(num[80:], uint64(e.recorded))
	return num[:]
}

func decodeEntry(b []byte) (digestEntry, bool) {
	var e digestEntry
	if len(b) != entrySize {
		return e, false
	}
	e.stat.Size = int64(binary.LittleEndian.Uint64(b[0:]))
	e.stat.Mtime = int64(binary.LittleEndian.Uint64(b[8:]))
	e.stat.Ctime = int64(binary.LittleEndian.Uint64(b[16:]))
	e.stat.Ino = binary.LittleEndian.Uint64(b[24:])
	e.stat.Dev = binary.LittleEndian.Uint64(b[32:])
	e.stat.Mode = uint32(binary.LittleEndian.Uint64(b[40:]))
	copy(e.digest[:], b[48:80])
	e.recorded = int64(binary.LittleEndian.Uint64(b[80:]))
	return e, true
}

// LoadFileDigests opens the digest cache at path. Nothing is read until an
// entry is looked up; a missing or damaged file starts an empty cache (it
// is only an optimisation) that Save rewrites.
func LoadFileDigests(path string) *FileDigests {
	return &FileDigests{kv: kvfile.Open(path, digestsTag)}
}

func (fd *FileDigests) entry(rel string) (e digestEntry, ok bool) {
	fd.kv.View(rel, func(b []byte) { e, ok = decodeEntry(b) })
	return e, ok
}

// Save appends the entries recorded since the cache was opened (or
// rewrites the file when it is due for compaction or was damaged).
func (fd *FileDigests) Save() error {
	if err := fd.kv.Save(); err != nil {
		return fmt.Errorf("save file digests: %w", err)
	}
	return nil
}

// Stats reports how many entries this cache read and wrote.
func (fd *FileDigests) Stats() kvfile.Stats { return fd.kv.Stats() }

// Close releases the cache's file; fd must not be used after.
func (fd *FileDigests) Close() error { return fd.kv.Close() }

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
	e, ok := fd.entry(rel)
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
	d, err := fd.hashFile(abs)
	if err != nil {
		return cache.Digest{}, nil, err
	}
	fd.Record(rel, fi, d)
	return d, fi, nil
}

// Lookup returns the cached digest for rel if the file's current stat
// matches and the entry is trusted, without hashing.
// A directory's entry (recorded when it was last found clean) holds the
// zero digest: ok, not the digest, says whether the entry holds.
func (fd *FileDigests) Lookup(rel string, fi os.FileInfo) (cache.Digest, bool) {
	return fd.lookupStat(rel, StatOf(fi))
}

// lookupStat is Lookup for a stat taken without an os.FileInfo.
func (fd *FileDigests) lookupStat(rel string, st FileStat) (cache.Digest, bool) {
	e, ok := fd.entry(rel)
	if ok && e.stat == st && st.Settled(e.recorded) {
		return e.digest, true
	}
	return cache.Digest{}, false
}

// settledStat returns the stat at which rel's entry was recorded, if there
// is one and it can be trusted by stat alone.
func (fd *FileDigests) settledStat(rel string) (FileStat, bool) {
	e, ok := fd.entry(rel)
	if !ok || !e.stat.Settled(e.recorded) {
		return FileStat{}, false
	}
	return e.stat, true
}

// Record notes that the file rel, with stat fi, has digest d.
func (fd *FileDigests) Record(rel string, fi os.FileInfo, d cache.Digest) {
	fd.kv.Put(rel, encodeEntry(digestEntry{stat: StatOf(fi), digest: d, recorded: time.Now().UnixNano()}))
}

// Forget drops rel from the cache.
func (fd *FileDigests) Forget(rel string) {
	if fd.kv.View(rel, func([]byte) {}) {
		fd.kv.Delete(rel)
	}
}

// hashFile hashes the file at path through one of fd's buffers. A build
// that restores 10,000 actions hashes 100,000 files: a buffer allocated per
// file (a bufio.Reader, then io.Copy's own) was most of its allocations,
// and, with the collector's headroom, most of its peak memory.
func (fd *FileDigests) hashFile(path string) (cache.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return cache.Digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := fd.bufs.Copy(h, f); err != nil {
		return cache.Digest{}, fmt.Errorf("hash %s: %w", path, err)
	}
	var d cache.Digest
	h.Sum(d[:0])
	return d, nil
}
