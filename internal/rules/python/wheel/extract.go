// Package wheel fetches and unpacks Python wheels for python_bundle:
// Fetcher brings wheels into the CAS with the lock's sha256 checked, and
// Extract lays one out as pip would in a --target directory. The finished
// bundle is zipped by ziparchive.
package wheel

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pipebuild/pipe/internal/ziparchive"
)

// DefaultMaxTotal is Lambda's limit on a function's unzipped size (250 MiB =
// 262,144,000 bytes): nothing bigger can be deployed, so nothing bigger is
// worth writing to disk.
const DefaultMaxTotal int64 = 250 << 20

// DefaultMaxFiles bounds the entries of one wheel. The largest real wheels
// (botocore, scipy, torch) hold tens of thousands; a million empty entries is
// an inode bomb, not a package.
const DefaultMaxFiles = 200_000

// ErrUnsafeEntry marks a wheel refused for its content (a path escape, a
// link, a duplicate, a collision, a size over the limit), as opposed to an
// I/O failure, so callers can tell "bad wheel" from "bad disk".
var ErrUnsafeEntry = errors.New("unsafe wheel entry")

// ExtractOptions tunes Extract. The zero value is ready to use.
type ExtractOptions struct {
	// Name is how errors refer to the wheel, normally its file name. The path
	// is often a CAS blob named by its hash, which tells the user nothing.
	// Default: the base name of the path.
	Name string
	// MaxTotal caps the sum of the declared sizes of the files written
	// (default DefaultMaxTotal). A bundle extracting several wheels passes
	// what is left of its budget.
	MaxTotal int64
	// MaxFiles caps the number of entries (default DefaultMaxFiles).
	MaxFiles int
	// Exclude, when set, drops files whose destination path (slash-separated,
	// relative to dir) it matches, so that e.g. __pycache__ shipped in a
	// wheel is never written only to be deleted again.
	Exclude func(rel string) bool
	// LibDir, when set, is the directory under dir (slash-separated) that
	// receives the importable content instead of dir itself.
	LibDir string
	// ScriptsDir, when set, is the directory under dir that receives the
	// wheel's .data/scripts (as pip --target puts them in bin/), 0755;
	// otherwise scripts are dropped.
	ScriptsDir string
	// Dropped, when set, is told of each entry Extract leaves out: a .data
	// directory's headers and data (and scripts without ScriptsDir), which a
	// Lambda function never reads.
	Dropped func(entry string)
}

// Extract unpacks the wheel at path into dir the way `pip install --target
// dir` lays it out, for an interpreter that imports from dir:
//
//   - root content (purelib or platlib, the distinction is moot for a target
//     directory) goes to dir;
//   - <name>-<ver>.data/purelib and .../platlib are merged into dir;
//   - <name>-<ver>.data/scripts, headers and data are dropped: pip --target
//     would put them in dir/bin, dir/include and dir itself, where a Lambda
//     function never looks (console scripts are not runnable there anyway);
//   - the .dist-info directory is kept, as importlib.metadata reads it. Its
//     RECORD is kept byte for byte as the wheel has it, so it still lists the
//     .data/ paths and omits nothing pip would add (INSTALLER, REQUESTED): it
//     is never used to uninstall from a bundle, and rewriting it would make the
//     bundle depend on more than the wheel's bytes;
//   - a file is 0755 if its zip entry has any execute bit (pip's rule: a
//     regular-file Unix mode with an x bit), else 0644;
//   - directory entries are not needed; directories are made as files need
//     them.
//
// Before writing anything, every entry is checked; a path that is absolute,
// contains "..", ".", an empty component, a backslash or a drive letter, a
// symbolic-link or device entry, a duplicate, two entries landing on one
// path, and a declared total over MaxTotal are refused, with an error naming
// the wheel and the entry. A file that already exists in dir (put there by
// another wheel) is refused too, and so is writing through a symbolic link
// already in dir out of it. The declared sizes are enforced while copying, so
// a zip bomb cannot write more than it declared. On error, the files this
// call created are removed; directories may remain.
//
// It returns the files written, slash-separated relative to dir, sorted.
func Extract(path, dir string, opt ExtractOptions) ([]string, error) {
	name := opt.Name
	if name == "" {
		name = filepath.Base(path)
	}
	if opt.MaxTotal <= 0 {
		opt.MaxTotal = DefaultMaxTotal
	}
	if opt.MaxFiles <= 0 {
		opt.MaxFiles = DefaultMaxFiles
	}
	zr, err := zip.OpenReader(path)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// ErrInsecurePath (GODEBUG=zipinsecurepath=0) still returns a usable
		// reader; plan refuses those names itself, with a better message.
		return nil, fmt.Errorf("wheel %s: not a readable zip file: %w", name, err)
	}
	defer zr.Close()

	entries, dirs, err := plan(name, &zr.Reader, opt)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wheel %s: %w", name, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("wheel %s: %w", name, err)
	}
	defer root.Close()
	for _, d := range dirs {
		if err := root.MkdirAll(d.dst, 0o755); err != nil {
			hint := ""
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				hint = fmt.Sprintf(" (a file on that path is already in %s, from another wheel)", dir)
			}
			return nil, fmt.Errorf("wheel %s: entry %q: create directory %s: %w%s", name, d.entry, d.dst, err, hint)
		}
	}
	if err := writeAll(name, dir, root, entries, !umaskHarmless()); err != nil {
		return nil, err
	}
	files := make([]string, len(entries))
	for i, e := range entries {
		files[i] = e.dst
	}
	sort.Strings(files)
	return files, nil
}

// entry is one file Extract will write.
type entry struct {
	f    *zip.File
	dst  string // slash path relative to the target dir
	exec bool
	// sha256 is what the wheel's RECORD lists for the entry (nil: none).
	sha256 []byte
}

// dirEntry is a directory some entry needs; entry names the first such entry
// for errors.
type dirEntry struct{ dst, entry string }

const (
	sIFMT  = 0o170000
	sIFREG = 0o100000
	sIFDIR = 0o040000
	sIFLNK = 0o120000
)

// plan checks every entry and decides where it goes, so that a bad wheel is
// refused before a single byte reaches the target directory.
func plan(name string, zr *zip.Reader, opt ExtractOptions) ([]entry, []dirEntry, error) {
	unsafe := func(entryName, format string, args ...any) error {
		return fmt.Errorf("wheel %s: entry %q: %s: %w", name, entryName, fmt.Sprintf(format, args...), ErrUnsafeEntry)
	}
	if len(zr.File) > opt.MaxFiles {
		return nil, nil, fmt.Errorf("wheel %s: %d entries, over the limit of %d: %w", name, len(zr.File), opt.MaxFiles, ErrUnsafeEntry)
	}
	var (
		entries  []entry
		seen     = make(map[string]bool, len(zr.File))
		dstOf    = make(map[string]string, len(zr.File)) // destination → entry
		distInfo = map[string]bool{}
		total    uint64
	)
	for _, f := range zr.File {
		n := f.Name
		isDir := strings.HasSuffix(n, "/")
		clean := strings.TrimSuffix(n, "/")
		if reason := ziparchive.BadName(clean); reason != "" {
			return nil, nil, unsafe(n, "%s", reason)
		}
		if seen[n] {
			return nil, nil, unsafe(n, "duplicate entry")
		}
		seen[n] = true
		unixMode := f.ExternalAttrs >> 16
		switch {
		case unixMode&sIFMT == sIFLNK || f.Mode()&fs.ModeSymlink != 0:
			return nil, nil, unsafe(n, "symbolic link entries are refused (a link can point outside the bundle)")
		case isDir:
			continue
		case unixMode&sIFMT == sIFDIR:
			return nil, nil, unsafe(n, "directory mode on an entry without a trailing slash")
		case unixMode&sIFMT != 0 && unixMode&sIFMT != sIFREG:
			return nil, nil, unsafe(n, "special file (mode %o) refused", unixMode)
		}

		top, rest, _ := strings.Cut(clean, "/")
		dst := clean
		switch {
		case strings.HasSuffix(top, ".data"):
			// pip treats any top-level *.data directory as the data scheme
			// directory and insists on a known scheme key under it.
			key, sub, ok := strings.Cut(rest, "/")
			if !ok || sub == "" {
				return nil, nil, unsafe(n, "file directly under %s/; .data content must be under purelib, platlib, scripts, headers or data", top)
			}
			switch key {
			case "purelib", "platlib":
				dst = sub
			case "scripts":
				if opt.ScriptsDir == "" {
					if opt.Dropped != nil {
						opt.Dropped(n)
					}
					continue
				}
				dst = path.Join(opt.ScriptsDir, sub)
			case "headers", "data":
				if opt.Dropped != nil {
					opt.Dropped(n)
				}
				continue
			default:
				return nil, nil, unsafe(n, "unknown scheme %q under %s/ (want purelib, platlib, scripts, headers or data)", key, top)
			}
		case strings.HasSuffix(top, ".dist-info") && rest != "":
			distInfo[top] = true
		}
		scriptEntry := opt.ScriptsDir != "" && strings.HasSuffix(top, ".data") && strings.HasPrefix(rest, "scripts/")
		if opt.LibDir != "" && !scriptEntry {
			dst = path.Join(opt.LibDir, dst)
		}
		if opt.Exclude != nil && opt.Exclude(dst) {
			continue
		}
		if other, ok := dstOf[dst]; ok {
			return nil, nil, unsafe(n, "installs to %s, as entry %q does", dst, other)
		}
		dstOf[dst] = n
		total += f.UncompressedSize64
		if total > uint64(opt.MaxTotal) {
			return nil, nil, fmt.Errorf("wheel %s: unpacks to more than %d bytes (at entry %q), over the limit: %w", name, opt.MaxTotal, n, ErrUnsafeEntry)
		}
		exec := unixMode&sIFMT == sIFREG && unixMode&0o111 != 0 || scriptEntry
		entries = append(entries, entry{f: f, dst: dst, exec: exec})
	}

	if err := checkDistInfo(name, zr, distInfo); err != nil {
		return nil, nil, err
	}
	// pip checks every file against the hash the wheel's RECORD lists for
	// it; so does pipe, while writing (writeOne).
	hashes, err := recordHashes(name, zr, distInfo)
	if err != nil {
		return nil, nil, err
	}
	for i := range entries {
		entries[i].sha256 = hashes[entries[i].f.Name]
	}

	// A file and a directory of the same name within one wheel would make
	// the write fail half way; refuse it here.
	needDir := map[string]string{}
	for _, e := range entries {
		for d := path.Dir(e.dst); d != "."; d = path.Dir(d) {
			if _, ok := needDir[d]; ok {
				break
			}
			needDir[d] = e.f.Name
		}
	}
	hasSub := map[string]bool{}
	for d := range needDir {
		hasSub[path.Dir(d)] = true
	}
	var dirs []dirEntry
	for d, by := range needDir {
		if other, ok := dstOf[d]; ok {
			return nil, nil, unsafe(other, "is a file, but entry %q needs %s to be a directory", by, d)
		}
		// MkdirAll of the leaves makes their parents.
		if !hasSub[d] {
			dirs = append(dirs, dirEntry{dst: d, entry: by})
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].dst < dirs[j].dst })
	return entries, dirs, nil
}

// checkDistInfo requires what pip requires of a wheel's metadata: exactly
// one .dist-info directory, with a WHEEL file of a major version it knows.
func checkDistInfo(name string, zr *zip.Reader, distInfo map[string]bool) error {
	var dirs []string
	for d := range distInfo {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	switch len(dirs) {
	case 0:
		return fmt.Errorf("wheel %s: no .dist-info directory; is it a wheel? %w", name, ErrUnsafeEntry)
	case 1:
	default:
		return fmt.Errorf("wheel %s: several .dist-info directories (%s); a wheel has one: %w", name, strings.Join(dirs, ", "), ErrUnsafeEntry)
	}
	wheelFile := dirs[0] + "/WHEEL"
	var f *zip.File
	for _, zf := range zr.File {
		if zf.Name == wheelFile {
			f = zf
			break
		}
	}
	if f == nil {
		return fmt.Errorf("wheel %s: no %s: %w", name, wheelFile, ErrUnsafeEntry)
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("wheel %s: read %s: %w", name, wheelFile, err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(io.LimitReader(rc, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "Wheel-Version") {
			continue
		}
		major, _, _ := strings.Cut(strings.TrimSpace(v), ".")
		if major != "1" {
			return fmt.Errorf("wheel %s: Wheel-Version %s is not supported (pipe reads version 1 wheels): %w", name, strings.TrimSpace(v), ErrUnsafeEntry)
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("wheel %s: read %s: %w", name, wheelFile, err)
	}
	return fmt.Errorf("wheel %s: %s has no Wheel-Version: %w", name, wheelFile, ErrUnsafeEntry)
}

// writeAll writes the planned entries with a few workers: inflating and
// creating files costs CPU and syscalls per file, and a wheel holds
// thousands of small files. Each file is created with O_EXCL, so a file
// from another wheel, even one extracting concurrently into the same dir,
// is never overwritten.
func writeAll(name, dir string, root *os.Root, entries []entry, chmod bool) error {
	created := make([]bool, len(entries))
	var (
		mu       sync.Mutex
		firstErr error
		next     int
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil || next >= len(entries) {
			return 0, false
		}
		next++
		return next - 1, true
	}
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	workers := min(len(entries), max(8, 2*runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			for {
				i, ok := take()
				if !ok {
					return
				}
				c, err := writeOne(name, dir, root, entries[i], buf, chmod)
				created[i] = c
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for i, c := range created {
			if c {
				root.Remove(entries[i].dst)
			}
		}
	}
	return firstErr
}

// writeOne writes one entry; created reports whether a file now exists
// that this call made (and so must be removed on failure).
func writeOne(name, dir string, root *os.Root, e entry, buf []byte, chmod bool) (created bool, err error) {
	mode := os.FileMode(0o644)
	if e.exec {
		mode = 0o755
	}
	out, err := root.OpenFile(e.dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("wheel %s: entry %q: %s already exists in %s (another wheel installs the same file): %w",
			name, e.f.Name, e.dst, dir, ErrUnsafeEntry)
	}
	if err != nil {
		return false, fmt.Errorf("wheel %s: entry %q: %w", name, e.f.Name, err)
	}
	fail := func(err error) (bool, error) {
		out.Close()
		return true, fmt.Errorf("wheel %s: entry %q: %w", name, e.f.Name, err)
	}
	// The umask may have taken bits off; the mode is part of the output.
	if chmod {
		if err := out.Chmod(mode); err != nil {
			return fail(err)
		}
	}
	in, err := e.f.Open()
	if err != nil {
		return fail(err)
	}
	// archive/zip already fails on more bytes than declared; the limit
	// makes that independent of its implementation.
	want := int64(e.f.UncompressedSize64)
	var w io.Writer = onlyWriter{out}
	h := sha256.New()
	if e.sha256 != nil {
		w = io.MultiWriter(w, h)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(in, want+1), buf)
	in.Close()
	if errors.Is(err, zip.ErrFormat) || errors.Is(err, zip.ErrChecksum) {
		return fail(fmt.Errorf("content does not match its declared size (%d bytes) or checksum; a corrupt wheel or a zip bomb: %w: %w", want, ErrUnsafeEntry, err))
	}
	if err != nil {
		return fail(err)
	}
	if n != want {
		return fail(fmt.Errorf("holds %d bytes but declares %d: %w", n, want, ErrUnsafeEntry))
	}
	if e.sha256 != nil && !bytes.Equal(h.Sum(nil), e.sha256) {
		return fail(fmt.Errorf("content does not match the sha256 the wheel's RECORD lists for it: the wheel is damaged or was altered after it was built; fetch it again from its source: %w", ErrUnsafeEntry))
	}
	if err := out.Close(); err != nil {
		return true, fmt.Errorf("wheel %s: entry %q: %w", name, e.f.Name, err)
	}
	return true, nil
}

// umaskHarmless reports whether the process umask leaves 0644 and 0755
// alone (022, 002, 0), sparing a chmod per file. Linux shows the umask in
// /proc without changing it; elsewhere, or if unreadable, say no.
func umaskHarmless() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err == nil && m&0o755 == 0
		}
	}
	return false
}

// onlyWriter hides *os.File's ReadFrom, which would bypass CopyBuffer's
// reusable buffer and allocate one per file.
type onlyWriter struct{ io.Writer }

// recordHashes reads the sha256 of every file the wheel's RECORD lists,
// by entry name. A wheel without a RECORD, or a RECORD line without a
// sha256 (RECORD itself, signatures), has nothing to check; a RECORD that
// is not CSV, or a hash that is not base64, is refused.
func recordHashes(name string, zr *zip.Reader, distInfo map[string]bool) (map[string][]byte, error) {
	var rec *zip.File
	for _, f := range zr.File {
		dir, base := path.Split(f.Name)
		if base == "RECORD" && distInfo[strings.TrimSuffix(dir, "/")] {
			rec = f
			break
		}
	}
	if rec == nil {
		return nil, nil
	}
	if rec.UncompressedSize64 > 64<<20 {
		return nil, fmt.Errorf("wheel %s: %s is %d bytes, over 64 MiB: %w", name, rec.Name, rec.UncompressedSize64, ErrUnsafeEntry)
	}
	rc, err := rec.Open()
	if err != nil {
		return nil, fmt.Errorf("wheel %s: %s: %w", name, rec.Name, err)
	}
	defer rc.Close()
	r := csv.NewReader(io.LimitReader(rc, 64<<20))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("wheel %s: %s is not a valid RECORD: %w", name, rec.Name, err)
	}
	out := make(map[string][]byte, len(rows))
	for _, row := range rows {
		if len(row) < 2 || row[1] == "" {
			continue
		}
		algo, digest, ok := strings.Cut(row[1], "=")
		if !ok || algo != "sha256" {
			continue // another algorithm: pip accepts those; pipe checks sha256
		}
		sum, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(digest, "="))
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("wheel %s: %s lists %q for %s, not a sha256: %w", name, rec.Name, row[1], row[0], ErrUnsafeEntry)
		}
		out[row[0]] = sum
	}
	return out, nil
}
