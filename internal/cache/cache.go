// Package cache is pipe's local content-addressed store (CAS) and action
// cache (AC), shared by every workspace of a user like Go's build cache.
//
// Layout under the cache directory:
//
//	cas/ab/abcdef…   blob named by the sha256 of its bytes
//	ac/12/1234ab…    action result named by its action key
//	tmp/             temp files, renamed into place when complete
//	trim.txt         when the cache was last trimmed (see trim.go)
//
// Every write goes to tmp/ first and is renamed into place, so a crash at any
// moment leaves either a complete entry or none. Every read is checked against
// its digest; a corrupt entry is removed and reported as a miss.
//
// The directory must be on a local file system. Safety rests on rename
// within one directory being atomic and on modification times being this
// machine's (trimming measures use by mtime); several processes of one
// machine share it safely. On a network file system (NFS, SMB) renames and
// mtimes seen from several machines are not dependable, so sharing a cache
// directory between machines is not supported: share results through the
// remote cache (--remote-cache) instead.
package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/internal/files"
)

// Digest names a blob in the CAS: the sha256 of its content.
type Digest [32]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero value (no digest).
func (d Digest) IsZero() bool { return d == Digest{} }

func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest parses 64 hex characters.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 64 {
		return d, fmt.Errorf("digest %q: want 64 hex characters", s)
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %w", s, err)
	}
	return d, nil
}

// ActionKey names an entry of the action cache: the sha256 over everything
// that can change an action's outputs. It is a type of its own rather than a
// Digest so that code handing a blob digest where an action key is meant (or
// the other way round) does not compile; the two live in different tables
// and a mix-up would read or write the wrong entry.
type ActionKey [32]byte

func (k ActionKey) String() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is the zero value (no key).
func (k ActionKey) IsZero() bool { return k == ActionKey{} }

func (k ActionKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *ActionKey) UnmarshalText(b []byte) error {
	d, err := ParseDigest(string(b))
	if err != nil {
		return fmt.Errorf("action key: %w", err)
	}
	*k = ActionKey(d)
	return nil
}

// Sum returns the digest of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

// ErrMiss is returned when an entry is absent or was found corrupt.
var ErrMiss = errors.New("cache miss")

// OutputFile is one file an action produced.
type OutputFile struct {
	Path       string `json:"path"` // workspace-relative
	Digest     Digest `json:"digest"`
	Size       int64  `json:"size"`
	Executable bool   `json:"executable,omitempty"`
}

// ActionResult is what the AC records for a successful action.
type ActionResult struct {
	Outputs []OutputFile `json:"outputs"`
	// Dirs are the declared output directories; their files are in Outputs.
	Dirs []string `json:"dirs,omitempty"`
	// Symlinks inside output directories, path → target.
	Symlinks map[string]string `json:"symlinks,omitempty"`
	// DurationMs is how long the action took when it executed.
	DurationMs int64 `json:"duration_ms"`
}

// Cache is a local CAS + AC rooted at a directory.
type Cache struct {
	dir string

	mu      sync.Mutex
	filling map[Digest]*blobLock
	// bufs lends the copy buffers of the files going in and out.
	bufs files.Buffers
}

type blobLock struct {
	mu   sync.Mutex
	refs int
}

// LockBlob serializes, within this process, work that fills blob d: two
// actions that need the same download make one, and the second finds the
// blob present. It returns the unlock function.
func (c *Cache) LockBlob(d Digest) (unlock func()) {
	c.mu.Lock()
	if c.filling == nil {
		c.filling = map[Digest]*blobLock{}
	}
	l := c.filling[d]
	if l == nil {
		l = &blobLock{}
		c.filling[d] = l
	}
	l.refs++
	c.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.filling, d)
		}
		c.mu.Unlock()
	}
}

// DefaultDir is $PIPE_CACHE_DIR, else $XDG_CACHE_HOME/pipe, else ~/.cache/pipe.
func DefaultDir() (string, error) {
	if d := os.Getenv("PIPE_CACHE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pipe"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate the cache directory: %w (set PIPE_CACHE_DIR)", err)
	}
	return filepath.Join(home, ".cache", "pipe"), nil
}

// Open opens (creating if needed) the cache at dir.
func Open(dir string) (*Cache, error) {
	for _, sub := range []string{"cas", "ac", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("open cache %s: %w", dir, err)
		}
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache's root directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) casPath(d Digest) string {
	h := d.String()
	return filepath.Join(c.dir, "cas", h[:2], h)
}

func (c *Cache) acPath(key ActionKey) string {
	h := key.String()
	return filepath.Join(c.dir, "ac", h[:2], h)
}

// BlobPath is where the blob with digest d lives (whether or not it exists).
func (c *Cache) BlobPath(d Digest) string { return c.casPath(d) }

// Has reports whether the blob d is present. It does not verify it.
// Callers ask because they are about to use the blob, so it counts as a use.
func (c *Cache) Has(d Digest) bool {
	p := c.casPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		return false
	}
	markUsed(p, fi.ModTime(), time.Now())
	return true
}

// tempFile creates a temp file in the cache's tmp dir.
func (c *Cache) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "w-*")
	if errors.Is(err, os.ErrNotExist) {
		// Someone ran `pipe clean --cache` under us; recreate and retry once.
		if err := os.MkdirAll(filepath.Join(c.dir, "tmp"), 0o755); err != nil {
			return nil, err
		}
		f, err = os.CreateTemp(filepath.Join(c.dir, "tmp"), "w-*")
	}
	return f, err
}

// commit renames a finished temp file into place. It is not
// files.WriteAtomic: the temp file lives in the cache's own tmp/ (so a
// crash leaves debris where `pipe clean --cache` finds it, not beside the
// blobs), it was hashed while it was written and is named by that hash,
// and a shard directory removed under a running build is made again.
func commit(tmp, dst string) error {
	if err := os.Rename(tmp, dst); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			os.Remove(tmp)
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	return nil
}

// PutReader copies r into the CAS and returns its digest and size.
func (c *Cache) PutReader(r io.Reader) (Digest, int64, error) {
	f, err := c.tempFile()
	if err != nil {
		return Digest{}, 0, fmt.Errorf("cache put: %w", err)
	}
	h := sha256.New()
	n, err := c.bufs.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return Digest{}, 0, fmt.Errorf("cache put: %w", err)
	}
	var d Digest
	h.Sum(d[:0])
	if c.Has(d) {
		os.Remove(f.Name())
		return d, n, nil
	}
	os.Chmod(f.Name(), 0o444)
	if err := commit(f.Name(), c.casPath(d)); err != nil {
		return Digest{}, 0, fmt.Errorf("cache put %s: %w", d, err)
	}
	return d, n, nil
}

// PutFile copies the file at path into the CAS. It hashes first and copies
// only a blob the CAS lacks: most outputs of a rebuilt bundle are already
// there, and creating files is what costs on a slow disk.
func (c *Cache) PutFile(path string) (Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := c.bufs.Copy(h, f)
	if err != nil {
		return Digest{}, 0, err
	}
	var d Digest
	h.Sum(d[:0])
	if c.Has(d) {
		return d, n, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Digest{}, 0, err
	}
	got, n, err := c.PutReader(f)
	if err == nil && got != d {
		return Digest{}, 0, fmt.Errorf("cache put %s: file changed while being stored", path)
	}
	return got, n, err
}

// PutBytes stores b in the CAS.
func (c *Cache) PutBytes(b []byte) (Digest, error) {
	d, _, err := c.PutReader(bytes.NewReader(b))
	return d, err
}

// ErrCorrupt reports a CAS blob whose bytes no longer match its name.
var ErrCorrupt = errors.New("corrupt cache blob")

// CopyOut writes blob d to dst atomically (temp file beside dst, then
// rename), verifying the digest as it copies. A blob that fails verification
// is deleted and ErrCorrupt returned; a missing blob returns ErrMiss.
// It streams and hashes between the temp file and the rename, which is
// why it does not go through files.WriteAtomic or files.Copy.
func (c *Cache) CopyOut(d Digest, dst string, executable bool) error {
	src, err := os.Open(c.casPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("blob %s: %w", d, ErrMiss)
	}
	if err != nil {
		return err
	}
	defer src.Close()
	if fi, err := src.Stat(); err == nil {
		markUsed(c.casPath(d), fi.ModTime(), time.Now())
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if executable {
		// As for staged tools (engine.copyFile): no fork while an
		// executable is open for writing, or running it can fail with
		// "Text file busy".
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".pipe-tmp-*")
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = c.bufs.Copy(io.MultiWriter(tmp, h), src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	var got Digest
	h.Sum(got[:0])
	if got != d {
		os.Remove(tmp.Name())
		os.Remove(c.casPath(d))
		return fmt.Errorf("blob %s: content hashes to %s: %w", d, got, ErrCorrupt)
	}
	mode := os.FileMode(0o644)
	if executable {
		mode = 0o755
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// ReadBlob returns the verified bytes of blob d.
func (c *Cache) ReadBlob(d Digest) ([]byte, error) {
	b, err := os.ReadFile(c.casPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrMiss)
	}
	if err != nil {
		return nil, err
	}
	if Sum(b) != d {
		os.Remove(c.casPath(d))
		return nil, fmt.Errorf("blob %s: %w", d, ErrCorrupt)
	}
	c.markBlobUsed(d, time.Now())
	return b, nil
}

// acMagic starts every AC entry; the digest of the body follows it, so a
// truncated or edited entry is detected on read.
const acMagic = "pipe-ac-1 "

// GetAC returns the result recorded for key, or ErrMiss.
// A hit marks the entry used (see trim.go), and its blobs with it: a hit
// whose outputs are already in place reads no blob, and the blobs must not
// age out from under an entry that is still in use.
func (c *Cache) GetAC(key ActionKey) (*ActionResult, error) {
	p := c.acPath(key)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("read action cache: %w", err)
	}
	fi, err := f.Stat()
	var b []byte
	if err == nil {
		b, err = io.ReadAll(f)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read action cache: %w", err)
	}
	r, ok := decodeAC(b)
	if !ok {
		os.Remove(p)
		return nil, ErrMiss
	}
	if now := time.Now(); markUsed(p, fi.ModTime(), now) {
		for _, o := range r.Outputs {
			c.markBlobUsed(o.Digest, now)
		}
	}
	return r, nil
}

func decodeAC(b []byte) (*ActionResult, bool) {
	head, body, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(head, []byte(acMagic)) {
		return nil, false
	}
	want, err := ParseDigest(string(head[len(acMagic):]))
	if err != nil || Sum(body) != want {
		return nil, false
	}
	var r ActionResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, false
	}
	return &r, true
}

// PutAC records r as the result of key. Call it only after every output
// blob is in the CAS, so a reader never sees a result whose blobs are absent.
// When the entry already held a result with other outputs, r replaces it
// and PutAC returns a *ReplacedError: the same key with two results means
// the action is not deterministic, which must not pass silently.
func (c *Cache) PutAC(key ActionKey, r *ActionResult) error {
	var prev *ActionResult
	if b, err := os.ReadFile(c.acPath(key)); err == nil {
		prev, _ = decodeAC(b)
	}
	if err := c.putAC(key, r); err != nil {
		return err
	}
	if prev != nil {
		if d := CompareResults(prev, r); d != nil {
			return &ReplacedError{Key: key, Diff: d}
		}
	}
	return nil
}

func (c *Cache) putAC(key ActionKey, r *ActionResult) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(acMagic)
	buf.WriteString(Sum(body).String())
	buf.WriteByte('\n')
	buf.Write(body)
	f, err := c.tempFile()
	if err != nil {
		return fmt.Errorf("write action cache: %w", err)
	}
	_, err = f.Write(buf.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write action cache: %w", err)
	}
	if err := commit(f.Name(), c.acPath(key)); err != nil {
		return fmt.Errorf("write action cache: %w", err)
	}
	return nil
}

// Clean removes every entry of the cache. It refuses a directory that does
// not look like a pipe cache, so a mistyped PIPE_CACHE_DIR cannot wipe $HOME.
func (c *Cache) Clean() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		switch e.Name() {
		case "cas", "ac", "tmp", treesDir, trimFile:
		default:
			if !strings.HasPrefix(e.Name(), ".") {
				return fmt.Errorf("clean cache %s: it holds %q, which pipe did not write; remove it by hand", c.dir, e.Name())
			}
		}
	}
	os.Remove(filepath.Join(c.dir, trimFile))
	for _, sub := range []string{"cas", "ac", "tmp", treesDir} {
		p := filepath.Join(c.dir, sub)
		makeWritable(p)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clean cache: %w", err)
		}
	}
	return nil
}

// makeWritable lets RemoveAll delete read-only blobs' directories.
func makeWritable(root string) {
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
