package python

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/python/wheel"
)

// DefaultDownloadsBase is where python-build-standalone publishes its
// releases: <base>/<release>/<file>.
const DefaultDownloadsBase = "https://github.com/astral-sh/python-build-standalone/releases/download"

// interpreterTrees is the kind of cache tree a downloaded interpreter is
// unpacked into (cache.Cache.TreePath).
const interpreterTrees = "python"

// downloadRecord names the file a downloaded interpreter's tree keeps
// beside python/: the table entry it came from, so discovery can name it
// by its archive's hash.
const downloadRecord = "pipe-download.json"

//go:embed downloads.txt
var pinnedDownloads []byte

// PythonDownload is one pinned python-build-standalone archive.
type PythonDownload struct {
	Major, Minor, Patch int
	Release             string // "20241008"
	Arch                string // "x86_64" or "aarch64"
	SHA256              string // lower-case hex
	File                string // the release asset's file name
}

// Version is "3.12.7".
func (d PythonDownload) Version() string { return fmt.Sprintf("%d.%d.%d", d.Major, d.Minor, d.Patch) }

// TreeName is the cache tree the archive unpacks into.
func (d PythonDownload) TreeName() string { return strings.TrimSuffix(d.File, ".tar.gz") }

// URL is where the archive lives under base, spelt as the releases
// spell it ("+" as %2B).
func (d PythonDownload) URL(base string) string {
	esc := func(s string) string { return strings.ReplaceAll(url.PathEscape(s), "+", "%2B") }
	return strings.TrimRight(base, "/") + "/" + esc(d.Release) + "/" + esc(d.File)
}

// Identity is what action keys record of an interpreter from this
// archive: the archive, not where the cache put it.
func (d PythonDownload) Identity() string {
	return fmt.Sprintf("python-build-standalone %s sha256:%s", d.File, d.SHA256)
}

// DownloadTable is the set of archives pipe may download.
type DownloadTable []PythonDownload

// ParseDownloadTable reads a table in the format of downloads.txt: one
// archive per line, "version release arch sha256 file", # comments.
func ParseDownloadTable(data []byte, file string) (DownloadTable, error) {
	var t DownloadTable
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	seen := map[string]int{}
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		f := strings.Fields(s)
		if len(f) == 0 {
			continue
		}
		if len(f) != 5 {
			return nil, fmt.Errorf("%s:%d: want 5 fields (version release arch sha256 file), found %d", file, line, len(f))
		}
		r, err := ParsePythonRequest(f[0])
		if err != nil || !r.HasPatch {
			return nil, fmt.Errorf("%s:%d: version %q: want a release such as 3.12.7", file, line, f[0])
		}
		d := PythonDownload{Major: r.Major, Minor: r.Minor, Patch: r.Patch, Release: f[1], Arch: f[2], SHA256: strings.ToLower(f[3]), File: f[4]}
		if d.Release == "" || strings.ContainsAny(d.Release, "/\\") || d.Release == "." || d.Release == ".." {
			return nil, fmt.Errorf("%s:%d: release %q: want a release tag such as 20241008", file, line, f[1])
		}
		if d.Arch != "x86_64" && d.Arch != "aarch64" {
			return nil, fmt.Errorf("%s:%d: arch %q: want x86_64 or aarch64", file, line, f[2])
		}
		if _, err := cache.ParseDigest(d.SHA256); err != nil {
			return nil, fmt.Errorf("%s:%d: sha256 %q: want 64 hex digits", file, line, f[3])
		}
		if !strings.HasSuffix(d.File, ".tar.gz") || strings.ContainsAny(d.File, "/\\") || strings.HasPrefix(d.File, ".") {
			return nil, fmt.Errorf("%s:%d: file %q: want an archive name ending in .tar.gz", file, line, f[4])
		}
		key := d.Version() + " " + d.Arch
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("%s:%d: %s for %s is pinned twice (first at line %d)", file, line, d.Version(), d.Arch, prev)
		}
		seen[key] = line
		t = append(t, d)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", file, line+1, err)
	}
	return t, nil
}

// PinnedDownloads is the table this pipe ships (downloads.txt).
var PinnedDownloads = sync.OnceValue(func() DownloadTable {
	t, err := ParseDownloadTable(pinnedDownloads, "downloads.txt")
	if err != nil {
		panic(err) // the embedded table is tested
	}
	return t
})

// Find returns the newest archive for arch that r asks for.
func (t DownloadTable) Find(r PythonRequest, arch string) (PythonDownload, bool) {
	var best PythonDownload
	found := false
	for _, d := range t {
		if d.Arch != arch || !r.Matches(d.Major, d.Minor, d.Patch) {
			continue
		}
		if !found || d.Patch > best.Patch {
			best, found = d, true
		}
	}
	return best, found
}

// Versions lists the versions pinned for arch, newest first.
func (t DownloadTable) Versions(arch string) []string {
	var ds []PythonDownload
	for _, d := range t {
		if d.Arch == arch {
			ds = append(ds, d)
		}
	}
	sort.Slice(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.Minor != b.Minor {
			return a.Minor > b.Minor
		}
		return a.Patch > b.Patch
	})
	var out []string
	for _, d := range ds {
		out = append(out, d.Version())
	}
	return out
}

// Downloader installs pinned interpreters into the shared cache.
type Downloader struct {
	// Base is the releases' base URL (http(s):// or file://).
	Base  string
	Cache *cache.Cache
	// Client makes the requests (default http.DefaultClient).
	Client *http.Client
	// Progress, when set, hears what is going on.
	Progress func(msg string)
}

// maxInterpreterBytes bounds what an archive may unpack to: a full
// CPython is ~200 MB, so a gigabyte is a bomb, not an interpreter.
const maxInterpreterBytes = 1 << 30

// Install makes the archive's interpreter present in the cache and returns
// its path. The archive is fetched into the CAS (once per machine) and
// checked against the pinned sha256 before a byte of it is unpacked; the
// tree appears in one rename, so a half-unpacked interpreter is never
// found.
func (d *Downloader) Install(ctx context.Context, dl PythonDownload) (string, error) {
	bin := func(root string) string {
		return filepath.Join(root, "python", "bin", fmt.Sprintf("python%d.%d", dl.Major, dl.Minor))
	}
	if root, ok := d.Cache.Tree(interpreterTrees, dl.TreeName()); ok {
		return bin(root), nil
	}
	base := d.Base
	if base == "" {
		base = DefaultDownloadsBase
	}
	if d.Progress != nil {
		d.Progress("downloading Python " + dl.Version())
	}
	f := &wheel.Fetcher{Cache: d.Cache, Client: d.Client}
	digests, err := f.FetchAll(ctx, []wheel.Request{{Name: "Python", Version: dl.Version(), URL: dl.URL(base), SHA256: dl.SHA256}})
	if err != nil {
		return "", fmt.Errorf("%w\nthe archive is pinned by its sha256 in pipe; set PIPE_PYTHON_DOWNLOADS (or workspace(python_downloads = …)) to a mirror of python-build-standalone's releases, or install Python %d.%d yourself", err, dl.Major, dl.Minor)
	}
	tmp, err := d.Cache.TempDir()
	if err != nil {
		return "", err
	}
	if d.Progress != nil {
		d.Progress("unpacking Python " + dl.Version())
	}
	if err := untarGz(d.Cache.BlobPath(digests[0]), tmp, dl.File); err != nil {
		cache.RemoveTree(tmp)
		return "", err
	}
	if _, err := os.Stat(bin(tmp)); err != nil {
		cache.RemoveTree(tmp)
		return "", fmt.Errorf("%s holds no python/bin/python%d.%d: not a python-build-standalone install_only archive", dl.File, dl.Major, dl.Minor)
	}
	rec, _ := json.MarshalIndent(dl, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, downloadRecord), append(rec, '\n'), 0o644); err != nil {
		cache.RemoveTree(tmp)
		return "", err
	}
	root, err := d.Cache.CommitTree(tmp, interpreterTrees, dl.TreeName())
	if err != nil {
		return "", err
	}
	return bin(root), nil
}

// untarGz unpacks a .tar.gz into dir, refusing absolute paths, "..",
// links that point out of dir, special files and more than
// maxInterpreterBytes.
func untarGz(archive, dir, name string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: not a gzip archive: %w", name, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	var total int64
	bad := func(entry, why string) error {
		return fmt.Errorf("%s: entry %q: %s; the archive is refused", name, entry, why)
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if h.Name == "" || path.IsAbs(h.Name) || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(h.Name, "\\") {
			return bad(h.Name, "its path leaves the archive")
		}
		if p == "." {
			continue
		}
		if dir := path.Dir(p); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
		}
		mode := os.FileMode(h.Mode).Perm() & 0o755
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxInterpreterBytes {
				return bad(h.Name, fmt.Sprintf("the archive unpacks to more than %d bytes", int64(maxInterpreterBytes)))
			}
			out, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o200)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
			_, err = io.Copy(out, io.LimitReader(tr, h.Size))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
		case tar.TypeSymlink:
			t := h.Linkname
			if path.IsAbs(t) || strings.HasPrefix(path.Clean(path.Join(path.Dir(p), t)), "../") || path.Clean(path.Join(path.Dir(p), t)) == ".." {
				return bad(h.Name, fmt.Sprintf("it links to %q, outside the archive", t))
			}
			if err := root.Symlink(t, p); err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
		case tar.TypeLink:
			t := path.Clean(h.Linkname)
			if path.IsAbs(h.Linkname) || t == ".." || strings.HasPrefix(t, "../") {
				return bad(h.Name, fmt.Sprintf("it hard-links %q, outside the archive", h.Linkname))
			}
			if err := root.Link(t, p); err != nil {
				return fmt.Errorf("%s: %s: %w", name, h.Name, err)
			}
		default:
			return bad(h.Name, fmt.Sprintf("type %q entries are not unpacked", h.Typeflag))
		}
	}
}

// downloadedInterpreters lists the interpreters pipe downloaded into the
// cache at cacheDir, from each tree's record.
func downloadedInterpreters(cacheDir string, reads *engine.HostReads) []PythonDownload {
	dir := cache.TreeKindDir(cacheDir, interpreterTrees)
	reads.Stat(dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []PythonDownload
	for _, e := range ents {
		rec := filepath.Join(dir, e.Name(), downloadRecord)
		reads.Stat(rec)
		b, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		var d PythonDownload
		if json.Unmarshal(b, &d) == nil && d.TreeName() == e.Name() {
			out = append(out, d)
		}
	}
	return out
}

// downloadTimeout bounds one interpreter download (~30 MB).
const downloadTimeout = 10 * time.Minute
