package wheel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
)

// DefaultParallel bounds concurrent downloads when Fetcher.Parallel is 0:
// enough to hide latency, few enough not to be throttled by an index.
const DefaultParallel = 8

// DefaultStallTimeout is how long a download may receive nothing before it
// is abandoned. A whole-request timeout would fail big wheels on slow links;
// a stall is what a dead connection looks like.
const DefaultStallTimeout = 60 * time.Second

// retryDelay is the pause before the one retry; a variable for tests.
var retryDelay = 500 * time.Millisecond

// Fetcher downloads wheels into the CAS, verifying the lock's sha256.
type Fetcher struct {
	Cache *cache.Cache
	// Client makes the requests (default http.DefaultClient, which honours
	// HTTP(S)_PROXY). Its own Timeout, if any, applies too.
	Client *http.Client
	// Index is an optional mirror; see RewriteURL. The mirror does not change
	// what is built (every file is checked against the lock's sha256), so it
	// is not part of any action key.
	Index string
	// Parallel bounds concurrent downloads (default DefaultParallel).
	Parallel int
	// Progress, when set, is called after each distinct wheel is done
	// (present, downloaded or failed), never concurrently, with the count
	// done, the count in all and "name==version".
	Progress func(done, total int, name string)
	// StallTimeout fails a download that receives no data for this long
	// (default DefaultStallTimeout).
	StallTimeout time.Duration
}

// Request is one wheel to fetch, as the lock describes it.
type Request struct {
	Name, Version string
	URL           string
	SHA256        string // hex, optionally prefixed "sha256:" as uv.lock writes it
	Size          int64  // optional; checked when > 0
}

// ParseSHA256 reads a lock's hash: 64 hex digits, optionally prefixed with
// "sha256:" (uv.lock) — other algorithms are refused, since the CAS is keyed
// by sha256.
func ParseSHA256(s string) (cache.Digest, error) {
	if algo, hexDigits, ok := strings.Cut(s, ":"); ok {
		if !strings.EqualFold(algo, "sha256") {
			return cache.Digest{}, fmt.Errorf("hash %q: pipe verifies sha256 hashes only", s)
		}
		s = hexDigits
	}
	return cache.ParseDigest(strings.ToLower(s))
}

// FetchAll makes every requested wheel present in the CAS and returns their
// digests in request order. A wheel already in the CAS (keyed by its sha256)
// is not downloaded again, so each wheel is downloaded once ever; its blob is
// re-hashed first, and a corrupt one is replaced. Requests for the same
// sha256 are fetched once.
//
// Downloads stream into the CAS, hashed on the way; a download whose sha256
// (or size, when the request has one) differs from the lock's fails before
// the CAS commits it, so nothing is stored under any digest. A network
// error, a stall, or an HTTP 5xx/429 is retried once. All requests are tried
// even when one fails; the error joins every failure, each naming the
// package, version, URL and reason. Cancelling ctx stops them all.
func (f *Fetcher) FetchAll(ctx context.Context, reqs []Request) ([]cache.Digest, error) {
	if f.Cache == nil {
		return nil, errors.New("fetch wheels: no cache")
	}
	digests := make([]cache.Digest, len(reqs))
	type job struct {
		req    Request
		digest cache.Digest
		err    error
	}
	var (
		jobs  []*job
		first = map[cache.Digest]*job{}
		errs  []error
	)
	for i, r := range reqs {
		d, err := ParseSHA256(r.SHA256)
		if r.SHA256 == "" {
			err = errors.New("the lock has no sha256 for it; pipe installs hash-pinned wheels only")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("fetch %s %s from %s: %w", r.Name, r.Version, redact(r.URL), err))
			continue
		}
		digests[i] = d
		if first[d] == nil {
			j := &job{req: r, digest: d}
			first[d] = j
			jobs = append(jobs, j)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	parallel := f.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	var (
		mu   sync.Mutex
		done int
		next int
		wg   sync.WaitGroup
	)
	for range min(parallel, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == len(jobs) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				j := jobs[next]
				next++
				mu.Unlock()
				j.err = f.fetch(ctx, j.req, j.digest)
				mu.Lock()
				done++
				if f.Progress != nil {
					f.Progress(done, len(jobs), j.req.Name+"=="+j.req.Version)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// One error for all rather than one per wheel not fetched.
		return nil, fmt.Errorf("fetch wheels: %w", context.Cause(ctx))
	}
	for _, j := range jobs {
		if j.err != nil {
			errs = append(errs, j.err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return digests, nil
}

// fetch makes one wheel present, downloading it at most twice.
func (f *Fetcher) fetch(ctx context.Context, r Request, d cache.Digest) error {
	// Bundles built in parallel often share wheels: the first downloads,
	// the others wait and find the blob present.
	unlock := f.Cache.LockBlob(d)
	defer unlock()
	if f.present(d) {
		return nil
	}
	where := redact(r.URL)
	u, err := RewriteURL(r.URL, f.Index)
	if err != nil {
		return fmt.Errorf("fetch %s %s from %s: %w", r.Name, r.Version, where, err)
	}
	if u != r.URL {
		where = redact(u) + " (mirror of " + redact(r.URL) + ")"
	}
	for attempt := range 2 {
		if attempt > 0 {
			select {
			case <-time.After(retryDelay):
			case <-ctx.Done():
			}
		}
		err = f.download(ctx, u, r, d)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fetch %s %s from %s: %w", r.Name, r.Version, where, context.Cause(ctx))
		}
		if !errors.As(err, new(transient)) {
			break
		}
	}
	retried := ""
	if errors.As(err, new(transient)) {
		retried = " (tried twice)"
	}
	return fmt.Errorf("fetch %s %s from %s: %w%s", r.Name, r.Version, where, err, retried)
}

// present reports whether a blob is in the CAS with the right bytes,
// removing it if not. Hashing costs one read of a file that is about to be
// unzipped anyway, and a corrupt wheel would otherwise fail much later.
func (f *Fetcher) present(d cache.Digest) bool {
	p := f.Cache.BlobPath(d)
	in, err := os.Open(p)
	if err != nil {
		return false
	}
	defer in.Close()
	h := sha256.New()
	if _, err := io.Copy(h, in); err != nil {
		return false
	}
	var got cache.Digest
	h.Sum(got[:0])
	if got != d {
		os.Remove(p)
		return false
	}
	return true
}

// transient marks failures worth one retry.
type transient struct{ error }

func (t transient) Unwrap() error { return t.error }

var errStalled = errors.New("stalled")

// download copies the wheel at u into the CAS, failing unless it hashes to d.
func (f *Fetcher) download(ctx context.Context, u string, r Request, d cache.Digest) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	switch pu.Scheme {
	case "file":
		if pu.Host != "" && pu.Host != "localhost" {
			return fmt.Errorf("file URL with host %q: want file:///path", pu.Host)
		}
		in, err := os.Open(pu.Path)
		if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(f.Index, "file://") {
			return fmt.Errorf("not in the offline index %s (copy the wheel there): %w", filepath.Dir(pu.Path), err)
		}
		if err != nil {
			return err
		}
		defer in.Close()
		return f.store(&verifier{r: in, want: d, size: r.Size, h: sha256.New()})
	case "http", "https":
	default:
		return fmt.Errorf("unsupported URL scheme %q (want https, http or file)", pu.Scheme)
	}

	stall := f.StallTimeout
	if stall <= 0 {
		stall = DefaultStallTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()
	timedOut := func(err error) error {
		if errors.Is(context.Cause(ctx), errStalled) {
			return transient{fmt.Errorf("timed out: no data for %s", stall)}
		}
		return err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already in the message
		}
		return timedOut(transient{err})
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		err := fmt.Errorf("HTTP %s", resp.Status)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return transient{err}
		}
		return err
	}
	if r.Size > 0 && resp.ContentLength >= 0 && resp.ContentLength != r.Size {
		return fmt.Errorf("size mismatch: the lock says %d bytes, the server sends %d", r.Size, resp.ContentLength)
	}
	body := &stallReader{r: resp.Body, timer: timer, d: stall}
	err = f.store(&verifier{r: body, want: d, size: r.Size, h: sha256.New()})
	var re readError
	if errors.As(err, &re) {
		return timedOut(transient{re.error})
	}
	return err
}

// store streams v into the CAS. v fails the copy on a hash or size
// mismatch, so PutReader discards its temp file and commits nothing.
func (f *Fetcher) store(v *verifier) error {
	got, _, err := f.Cache.PutReader(v)
	if v.err != nil {
		return v.err
	}
	if err != nil {
		return fmt.Errorf("store in the cache: %w", err)
	}
	if got != v.want {
		return fmt.Errorf("sha256 mismatch: the lock says %s, the download is %s", v.want, got)
	}
	return nil
}

// readError marks a failure reading the source, as opposed to writing the
// cache.
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

// verifier hashes what passes through it and, at the end, turns EOF into
// an error if the bytes are not the ones the lock names.
type verifier struct {
	r    io.Reader
	want cache.Digest
	size int64
	h    hash.Hash
	n    int64
	err  error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size > 0 && v.n > v.size {
		v.err = fmt.Errorf("size mismatch: the lock says %d bytes, the download is longer", v.size)
		return 0, v.err
	}
	switch {
	case err == io.EOF:
		var got cache.Digest
		v.h.Sum(got[:0])
		if v.size > 0 && v.n != v.size {
			v.err = fmt.Errorf("size mismatch: the lock says %d bytes, the download has %d", v.size, v.n)
		} else if got != v.want {
			v.err = fmt.Errorf("sha256 mismatch: the lock says %s, the download (%d bytes) is %s; the file changed upstream or the mirror serves another file", v.want, v.n, got)
		} else {
			return n, io.EOF
		}
		return 0, v.err
	case err != nil:
		return n, readError{err}
	}
	return n, nil
}

// stallReader pushes back the stall deadline on every byte received.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// RewriteURL maps a lock's wheel URL onto the mirror index (what
// workspace(python_index = …) or PIPE_PYTHON_INDEX set). With index:
//
//   - "" — the URL is returned unchanged;
//   - an http(s) base URL — the lock URL's host is replaced: its path (and
//     query) is appended to the base's path. So with index
//     https://mirror.corp/pypi, https://files.pythonhosted.org/packages/ab/cd/x.whl
//     becomes https://mirror.corp/pypi/packages/ab/cd/x.whl, the layout of
//     bandersnatch mirrors and of Artifactory/Nexus PyPI proxies. A trailing
//     /simple on the base (the PEP 503 page users give pip as --index-url)
//     is dropped, so the same value works here. Credentials in the base are
//     kept. Non-http lock URLs (file:// path sources) are left alone;
//   - file://DIR — offline builds: the wheel is looked up by its file name
//     (the last segment of the lock URL, unescaped) directly in DIR, like
//     pip's --find-links. DIR is a path, not URL-escaped; a relative one is
//     made absolute against the current directory, so callers resolve it
//     against the workspace root first.
//
// The result is checked against the lock's sha256 whatever index served it.
func RewriteURL(rawURL, index string) (string, error) {
	if index == "" {
		return rawURL, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("lock URL %q: %w", redact(rawURL), err)
	}
	if dir, ok := strings.CutPrefix(index, "file://"); ok {
		if dir == "" {
			return "", fmt.Errorf("python index %q: want file:///path/to/dir", index)
		}
		name := path.Base(u.Path)
		if name == "/" || name == "." || !strings.HasSuffix(name, ".whl") {
			return "", fmt.Errorf("lock URL %q names no wheel file to look up in %s", redact(rawURL), dir)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("python index %q: %w", index, err)
		}
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(abs, name))}).String(), nil
	}
	base, err := url.Parse(index)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("python index %q: want an http(s):// base URL or file:///dir", redactIndex(index))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return rawURL, nil
	}
	basePath := strings.TrimRight(base.EscapedPath(), "/")
	basePath = strings.TrimSuffix(basePath, "/simple")
	out := base.Scheme + "://"
	if base.User != nil {
		out += base.User.String() + "@"
	}
	out += base.Host + basePath + u.EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out, nil
}

// redact hides credentials of a mirror URL in messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

func redactIndex(s string) string {
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "xxxxx" + s[i:]
		}
	}
	return s
}
