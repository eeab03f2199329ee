// Package kvfile keeps a map from string keys to byte values in one file
// that a process reads by key and appends to, so the cost of using it is
// proportional to the keys a build touches rather than to the whole map.
//
// pipe's per-workspace caches (file digests by stat, evaluated packages)
// hold an entry per source file or package: 100,000 or more in a large
// monorepo. Reading and rewriting all of them for a build that touched ten
// cost more than the build. A file here is
//
//	header  magic, tag, count, base end, count × u64 record offsets sorted
//	        by key, crc32c of all of it
//	base    count records, written by the last compaction
//	tail    records appended since, in order; a later one wins
//
// and a record is
//
//	u32 crc32c of the rest | u32 key length | u32 value length or
//	deleted | key | value
//
// The file is mapped read-only: a lookup is a binary search of the index
// (touching a few pages) plus the small tail read when the file is opened.
// Saving appends the changed entries in one write; when the tail has grown
// to a fraction of the base, or the file is damaged, the whole map is
// rewritten to a new file that is renamed into place (compaction).
//
// Correctness rests on two rules. Every record carries its own checksum,
// checked before its value is used, and a tail is read up to its first bad
// record: a damaged or half-written file yields fewer entries, never a
// wrong one. And the caches built on this file validate each entry against
// the file system (a stat) before trusting it, so an entry lost, or an old
// one kept, by two processes saving at once costs work, never a result.
// The file is never truncated in place (which would fault a process that
// has it mapped): it only grows or is replaced by rename.
package kvfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pipebuild/pipe/internal/files"
)

const magic = "pipe-kv-1\n"

// deleted is the value length of a record that removes its key.
const deleted = ^uint32(0)

// recordHeader is the size of a record before its key.
const recordHeader = 12

// maxLen bounds a key or value, so a damaged length cannot ask for more
// than the file holds (checked anyway) or overflow on 32-bit platforms.
const maxLen = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Stats counts what a File did since it was opened; tests and -v use it to
// show that a build touched only what it needed.
type Stats struct {
	Entries    int  // entries in the file when it was opened
	Lookups    int  // Get calls answered from the file (not from Put)
	Appended   int  // records appended by Save
	Compacted  bool // whether Save rewrote the whole file
	Rewritten  int  // entries written by a compaction
	TailAtOpen int  // tail records read when the file was opened
}

// File is an open key-value file. Its methods are safe for concurrent use.
type File struct {
	path string
	tag  string

	mu      sync.Mutex
	data    []byte // the mapped file (nil when empty or unreadable)
	ino     uint64 // identity of the mapped file, to see a rename or append
	dev     uint64
	count   int    // base records
	index   []byte // count × u64 offsets
	baseEnd int    // end of the base records
	end     int    // end of the last good tail record
	damaged bool   // the header or tail is bad: rewrite on Save
	fresh   bool   // Save rewrote the file: no need to again
	tail    map[string]tailValue
	pending map[string]*[]byte // Put and Deleted since Open (nil: deleted)
	order   []string           // pending keys not saved yet, in the order first put
	unsaved map[string]bool
	stats   Stats
}

type tailValue struct {
	val     []byte // into data
	deleted bool
}

// Open maps the file at path written with tag. A missing file is empty; a
// file with another tag (another format or version of what is stored) or a
// damaged header is empty and rewritten on the next Save. Close releases
// the mapping.
func Open(path, tag string) *File {
	f := &File{path: path, tag: tag, tail: map[string]tailValue{}, pending: map[string]*[]byte{}, unsaved: map[string]bool{}}
	fh, err := os.Open(path)
	if err != nil {
		return f
	}
	defer fh.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil || st.Size == 0 {
		f.damaged = err != nil
		return f
	}
	f.ino, f.dev = uint64(st.Ino), uint64(st.Dev)
	if int64(int(st.Size)) != st.Size {
		f.damaged = true
		return f
	}
	data, err := unix.Mmap(int(fh.Fd()), 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.damaged = true
		return f
	}
	f.data = data
	f.parse()
	return f
}

// parse reads the header and the tail of f.data.
func (f *File) parse() {
	d := f.data
	h, ok := parseHeader(d, f.tag)
	if !ok {
		f.damaged = true
		return
	}
	f.count, f.index, f.baseEnd = h.count, h.index, h.baseEnd
	f.stats.Entries = h.count
	off := h.baseEnd
	for off < len(d) {
		key, val, del, next, ok := record(d, off)
		if !ok {
			f.damaged = true
			break
		}
		f.tail[string(key)] = tailValue{val: val, deleted: del}
		f.stats.TailAtOpen++
		off = next
	}
	f.end = off
	f.stats.Entries += len(f.tail)
}

type header struct {
	count   int
	index   []byte
	baseEnd int
}

func parseHeader(d []byte, tag string) (header, bool) {
	n := len(magic) + 4 + len(tag) + 4 + 8
	if len(d) < n+4 || string(d[:len(magic)]) != magic {
		return header{}, false
	}
	p := len(magic)
	if int(binary.LittleEndian.Uint32(d[p:])) != len(tag) || string(d[p+4:p+4+len(tag)]) != tag {
		return header{}, false
	}
	p += 4 + len(tag)
	count := uint64(binary.LittleEndian.Uint32(d[p:]))
	baseEnd := binary.LittleEndian.Uint64(d[p+4:])
	p += 12
	if count > uint64(len(d)-p)/8 {
		return header{}, false
	}
	idxEnd := p + int(count)*8
	if idxEnd+4 > len(d) || crc32.Checksum(d[:idxEnd], castagnoli) != binary.LittleEndian.Uint32(d[idxEnd:]) {
		return header{}, false
	}
	if baseEnd < uint64(idxEnd+4) || baseEnd > uint64(len(d)) {
		return header{}, false
	}
	return header{count: int(count), index: d[p:idxEnd], baseEnd: int(baseEnd)}, true
}

// record decodes the record at off in d, checking its bounds and checksum.
func record(d []byte, off int) (key, val []byte, del bool, next int, ok bool) {
	if off < 0 || off > len(d)-recordHeader {
		return nil, nil, false, 0, false
	}
	sum := binary.LittleEndian.Uint32(d[off:])
	kl := binary.LittleEndian.Uint32(d[off+4:])
	vl := binary.LittleEndian.Uint32(d[off+8:])
	del = vl == deleted
	if del {
		vl = 0
	}
	if kl > maxLen || vl > maxLen {
		return nil, nil, false, 0, false
	}
	end := uint64(off) + recordHeader + uint64(kl) + uint64(vl)
	if end > uint64(len(d)) {
		return nil, nil, false, 0, false
	}
	if crc32.Checksum(d[off+4:end], castagnoli) != sum {
		return nil, nil, false, 0, false
	}
	k := off + recordHeader
	return d[k : k+int(kl)], d[k+int(kl) : end], del, int(end), true
}

// keyAt returns the key of the i-th base record without checking its
// checksum (the binary search only steers by it; the record found is
// checked before use).
func (f *File) keyAt(i int) ([]byte, bool) {
	off := binary.LittleEndian.Uint64(f.index[i*8:])
	if off > uint64(len(f.data)-recordHeader) || len(f.data) < recordHeader {
		return nil, false
	}
	o := int(off)
	kl := uint64(binary.LittleEndian.Uint32(f.data[o+4:]))
	if uint64(o)+recordHeader+kl > uint64(len(f.data)) {
		return nil, false
	}
	return f.data[o+recordHeader : o+recordHeader+int(kl)], true
}

// Get returns a copy of key's value.
func (f *File) Get(key string) ([]byte, bool) {
	var out []byte
	found := f.View(key, func(v []byte) { out = bytes.Clone(v) })
	return out, found
}

// View calls use with key's value, without copying it, and reports
// whether key was found. The value is valid only during the call, which
// holds f's lock: use must not keep it or call f. A lookup on a hot path
// (a file's digest, once per file of a large output) decodes from it
// directly.
func (f *File) View(key string, use func(val []byte)) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pending[key]; ok {
		if p == nil {
			return false
		}
		use(*p)
		return true
	}
	f.stats.Lookups++
	if t, ok := f.tail[key]; ok {
		if t.deleted {
			return false
		}
		use(t.val)
		return true
	}
	bad := false
	i := sort.Search(f.count, func(i int) bool {
		k, ok := f.keyAt(i)
		if !ok {
			bad = true
			return true
		}
		return string(k) >= key
	})
	if bad || i >= f.count {
		return false
	}
	k, v, del, _, ok := record(f.data, int(binary.LittleEndian.Uint64(f.index[i*8:])))
	if !ok || del || string(k) != key {
		return false
	}
	use(v)
	return true
}

// Put sets key to val (kept until Save).
func (f *File) Put(key string, val []byte) {
	v := bytes.Clone(val)
	f.mu.Lock()
	f.pend(key, &v)
	f.mu.Unlock()
}

// Delete removes key (on Save).
func (f *File) Delete(key string) {
	f.mu.Lock()
	f.pend(key, nil)
	f.mu.Unlock()
}

func (f *File) pend(key string, v *[]byte) {
	if !f.unsaved[key] {
		f.unsaved[key] = true
		f.order = append(f.order, key)
	}
	f.pending[key] = v
}

// Stats returns what f did so far.
func (f *File) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Close releases the mapping; f must not be used after.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data == nil {
		return nil
	}
	err := unix.Munmap(f.data)
	f.data, f.index, f.count, f.tail = nil, nil, 0, map[string]tailValue{}
	return err
}

// needsCompaction reports whether the tail has grown enough, relative to
// the base, that rewriting the whole file pays: each build then reads a
// bounded tail, and a rewrite costs about as much as the appends it folds
// in.
func needsCompaction(base, tail int) bool {
	return tail > 1024+base/8
}

// Save writes what was Put or Deleted since Open: appended, or by
// rewriting the file when it is damaged or its tail has grown (see
// needsCompaction). Concurrent Saves, in this process or others, are
// serialised by a lock file next to the file.
func (f *File) Save() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) == 0 && (f.fresh || !f.damaged && !needsCompaction(f.count, len(f.tail))) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	lock, err := os.OpenFile(f.path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("save %s: lock: %w", f.path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	// Another process may have appended or compacted since f was opened:
	// then work from the file as it is now, so its records are kept.
	cur := f
	var st unix.Stat_t
	err = unix.Stat(f.path, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		// Removed since f was opened: write what f holds.
		return f.compact(f)
	case err != nil:
		return fmt.Errorf("save %s: %w", f.path, err)
	case uint64(st.Ino) != f.ino || uint64(st.Dev) != f.dev || st.Size != int64(f.end) || f.data == nil:
		cur = Open(f.path, f.tag)
		defer cur.Close()
	}
	if cur.data != nil && !cur.damaged && !needsCompaction(cur.count, len(cur.tail)+len(f.order)) {
		return f.appendTo(cur)
	}
	return f.compact(cur)
}

// appendTo appends f's pending records to the file cur maps, whose end is
// its last good record.
func (f *File) appendTo(cur *File) error {
	var buf []byte
	for _, k := range f.order {
		buf = appendRecord(buf, k, f.pending[k])
	}
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	// One write: a process killed during it leaves a partial last record,
	// which its checksum or length rejects.
	if _, err := fh.Write(buf); err != nil {
		fh.Close()
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	if cur == f {
		// f's file now ends after these records: a later Save (a
		// long-lived process saves more than once) sees it unchanged by
		// others and appends again.
		f.end += len(buf)
	}
	f.stats.Appended += len(f.order)
	f.clearPending()
	return nil
}

func appendRecord(buf []byte, key string, val *[]byte) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(key)))
	if val == nil {
		buf = binary.LittleEndian.AppendUint32(buf, deleted)
	} else {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(*val)))
	}
	buf = append(buf, key...)
	if val != nil {
		buf = append(buf, *val...)
	}
	binary.LittleEndian.PutUint32(buf[start:], crc32.Checksum(buf[start+4:], castagnoli))
	return buf
}

// clearPending marks the pending changes saved; they stay visible to Get,
// since f's mapping predates them.
func (f *File) clearPending() {
	f.unsaved = map[string]bool{}
	f.order = nil
}

// compact writes every live entry of cur with f's pending changes on top
// to a new file and renames it into place.
func (f *File) compact(cur *File) error {
	live := map[string][]byte{}
	for i := 0; i < cur.count; i++ {
		k, v, del, _, ok := record(cur.data, int(binary.LittleEndian.Uint64(cur.index[i*8:])))
		if ok && !del {
			live[string(k)] = v
		}
	}
	for k, t := range cur.tail {
		if t.deleted {
			delete(live, k)
		} else {
			live[k] = t.val
		}
	}
	for k, p := range f.pending {
		if p == nil {
			delete(live, k)
		} else {
			live[k] = *p
		}
	}
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf := Encode(f.tag, keys, func(k string) []byte { return live[k] })
	if err := files.WriteAtomic(f.path, buf, 0o644); err != nil {
		return fmt.Errorf("save %s: %w", f.path, err)
	}
	f.stats.Compacted = true
	f.fresh = true
	f.stats.Rewritten = len(keys)
	f.clearPending()
	return nil
}

// Encode returns a file holding keys (sorted, distinct) with their values,
// and an empty tail.
func Encode(tag string, keys []string, value func(string) []byte) []byte {
	// Sized up front: the file of a large workspace is tens of MB, and
	// growing the buffer by appending would allocate it several times.
	size := len(magic) + 4 + len(tag) + 4 + 8 + 8*len(keys) + 4
	for _, k := range keys {
		size += recordHeader + len(k) + len(value(k))
	}
	buf := make([]byte, 0, size)
	buf = append(buf, magic...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(tag)))
	buf = append(buf, tag...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(keys)))
	baseEndAt := len(buf)
	buf = binary.LittleEndian.AppendUint64(buf, 0)
	idx := len(buf)
	buf = append(buf, make([]byte, 8*len(keys)+4)...)
	for i, k := range keys {
		binary.LittleEndian.PutUint64(buf[idx+8*i:], uint64(len(buf)))
		v := value(k)
		buf = appendRecord(buf, k, &v)
	}
	binary.LittleEndian.PutUint64(buf[baseEndAt:], uint64(len(buf)))
	idxEnd := idx + 8*len(keys)
	binary.LittleEndian.PutUint32(buf[idxEnd:], crc32.Checksum(buf[:idxEnd], castagnoli))
	return buf
}

// Decode returns every live entry of a file's bytes d written with tag, and
// whether the whole of d was good. It is what Open and Get do, for tests
// and fuzzing.
func Decode(d []byte, tag string) (map[string][]byte, bool) {
	f := &File{tag: tag, data: d, tail: map[string]tailValue{}}
	f.parse()
	out := map[string][]byte{}
	if f.index == nil && f.damaged {
		return out, false
	}
	ok := !f.damaged
	for i := 0; i < f.count; i++ {
		k, found := f.keyAt(i)
		if !found {
			ok = false
			continue
		}
		if v, found := f.Get(string(k)); found {
			out[string(k)] = v
		}
	}
	for k := range f.tail {
		if v, found := f.Get(k); found {
			out[k] = v
		} else {
			delete(out, k)
		}
	}
	return out, ok
}
