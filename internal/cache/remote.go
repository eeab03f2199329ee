package cache

// Remote puts a shared cache (S3, Bazel's HTTP protocol, later REAPI gRPC)
// behind the local one. Its rule is that the remote can only ever make a
// build faster: anything that goes wrong — a dead or slow server, 5xx, a
// truncated or corrupt download, an unsigned entry — becomes a miss, one
// warning per kind of problem, and local execution.
//
// Bounds on time:
//   - small operations (AC get/put, HEAD) get RemoteOptions.Timeout each;
//   - blob transfers get no total deadline, since a 2 GB blob on a slow
//     link is legitimate, but are cancelled when no byte has moved for
//     Timeout (a stall timeout);
//   - the first connection-level failure (refused, reset, timed out,
//     stalled, truncated) or 5xx opens a circuit breaker: the remote is not
//     contacted again for the rest of the build, so a dead remote costs one
//     timeout rather than one per action.
//
// Integrity: every downloaded blob is written to a temp file while being
// hashed and renamed into the local CAS only when its size and sha256 match
// the digest that names it, so corrupt remote data never enters the local
// cache. Uploads re-hash the local blob before sending it.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// Backend is one remote store: Bazel's HTTP cache protocol or S3 today,
// REAPI gRPC later. Implementations must be safe for concurrent use and
// must honour ctx for cancellation.
type Backend interface {
	// GetAC returns the AC entry for key, or ErrMiss.
	GetAC(ctx context.Context, key ActionKey) ([]byte, error)
	PutAC(ctx context.Context, key ActionKey, value []byte) error
	// GetCAS streams blob d into w, or returns ErrMiss. It does not
	// verify; Remote does.
	GetCAS(ctx context.Context, d Digest, w io.Writer) (int64, error)
	// PutCAS stores size bytes from r as blob d. r may be an io.Seeker,
	// which lets a backend retry or hash before sending.
	PutCAS(ctx context.Context, d Digest, size int64, r io.Reader) error
	HasCAS(ctx context.Context, d Digest) (bool, error)
	// String names the store for messages, without credentials.
	String() string
}

// RemoteOptions configure a Remote.
type RemoteOptions struct {
	// Upload writes results (--remote-upload); by default the remote is
	// read-only, so untrusted jobs can read what trusted CI wrote.
	Upload bool
	// AcceptCached looks results up (--remote-accept-cached). The flag
	// defaults to true, but the zero value here is false: set it.
	AcceptCached bool
	// SigningKey (PIPE_REMOTE_CACHE_KEY) signs uploaded AC entries; a
	// reader with a key uses only entries signed with it. See sign.go.
	SigningKey []byte
	// Timeout bounds each small operation and, for blob transfers, how
	// long a transfer may make no progress. Zero means 5s.
	Timeout time.Duration
	// Parallel bounds concurrent blob transfers. Zero means 16.
	Parallel int
	// Warn receives at most one message per kind of problem. Nil prints
	// to stderr.
	Warn func(msg string)
}

// RemoteStats counts a build's remote traffic for the summary line. Hits
// and Misses count lookups that reached the remote (none are made once the
// breaker is open); a lookup that failed is a miss. The byte counts
// include AC entries and Tree blobs.
type RemoteStats struct {
	Hits, Misses       int
	BytesDown, BytesUp int64
}

// Remote is a remote cache in front of a local one. It implements the
// executor's RemoteCache interface.
type Remote struct {
	local *Cache
	b     Backend
	opt   RemoteOptions
	sem   chan struct{}

	// down is the circuit breaker: once set, nothing more is sent.
	down atomic.Bool
	// noUpload stops uploads after the store refused one (say, read-only
	// credentials) while reads go on.
	noUpload atomic.Bool
	// present remembers blobs known to be in the remote, so an output
	// shared by many actions is checked once per build.
	present sync.Map

	mu     sync.Mutex
	warned map[string]bool

	hits, misses       atomic.Int64
	bytesDown, bytesUp atomic.Int64
}

// NewRemote puts b in front of local.
func NewRemote(local *Cache, b Backend, opt RemoteOptions) *Remote {
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 16
	}
	if opt.Warn == nil {
		opt.Warn = func(msg string) { fmt.Fprintln(os.Stderr, "pipe: warning: "+msg) }
	}
	return &Remote{local: local, b: b, opt: opt, sem: make(chan struct{}, opt.Parallel), warned: map[string]bool{}}
}

// OpenRemote opens the remote cache at rawURL: s3://bucket/prefix or
// http(s)://host/prefix.
func OpenRemote(ctx context.Context, local *Cache, rawURL string, opt RemoteOptions) (*Remote, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote cache URL: %w", err)
	}
	var b Backend
	switch strings.ToLower(u.Scheme) {
	case "s3":
		b, err = NewS3Backend(ctx, rawURL)
	case "http", "https":
		b, err = NewHTTPBackend(rawURL, nil)
	case "grpc", "grpcs":
		return nil, fmt.Errorf("remote cache %q: REAPI gRPC caches are not supported yet; use s3://bucket/prefix or http(s)://host/prefix", u.Redacted())
	case "":
		return nil, fmt.Errorf("remote cache %q: no scheme; want s3://bucket/prefix or http(s)://host/prefix", u.Redacted())
	default:
		return nil, fmt.Errorf("remote cache %q: unsupported scheme %q; want s3://bucket/prefix or http(s)://host/prefix", u.Redacted(), u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return NewRemote(local, b, opt), nil
}

// Backend is the store behind r.
func (r *Remote) Backend() Backend { return r.b }

// Stats returns the counts so far.
func (r *Remote) Stats() RemoteStats {
	return RemoteStats{
		Hits:      int(r.hits.Load()),
		Misses:    int(r.misses.Load()),
		BytesDown: r.bytesDown.Load(),
		BytesUp:   r.bytesUp.Load(),
	}
}

// Problem kinds; each is warned about once.
const (
	kindDown      = "down"        // connection-level failure or 5xx: opens the breaker
	kindStatus    = "status"      // other unexpected status, e.g. 401/403
	kindCorrupt   = "corrupt"     // blob does not match its digest
	kindSignature = "signature"   // unsigned or foreign-key entry
	kindInvalid   = "invalid"     // undecodable or unsafe entry
	kindLocal     = "local"       // the local cache failed
	kindNoCreds   = "credentials" // the AWS credential chain found nothing: opens the breaker
)

type remoteError struct {
	kind string
	err  error
}

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

func kindOf(err error) string {
	var re *remoteError
	if errors.As(err, &re) {
		return re.kind
	}
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return kindNoCreds
	}
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) && sc.HTTPStatusCode() > 0 && sc.HTTPStatusCode() < 500 {
		return kindStatus
	}
	// Everything else — dial errors, resets, deadlines, stalls, bodies
	// cut short, 5xx — says the store is not working right now.
	return kindDown
}

// fail records a failed operation: it warns once per kind, and opens the
// breaker when the store itself is failing.
func (r *Remote) fail(op string, err error) {
	kind := kindOf(err)
	var msg string
	switch kind {
	case kindDown:
		r.down.Store(true)
		msg = fmt.Sprintf("remote cache %s failed (%s: %v); continuing without it for the rest of this build", r.b, op, err)
	case kindStatus:
		if op == "upload" {
			r.noUpload.Store(true)
			msg = fmt.Sprintf("remote cache %s refused an upload (%v); not uploading for the rest of this build", r.b, err)
		} else {
			msg = fmt.Sprintf("remote cache %s: %v; treating its entries as misses", r.b, err)
		}
	case kindNoCreds:
		r.down.Store(true)
		var ce *CredentialsError
		errors.As(err, &ce)
		msg = fmt.Sprintf("%s: %v; building without it (set AWS_PROFILE, or other credentials the chain reads, to use it)", r.b, ce)
	case kindCorrupt:
		msg = fmt.Sprintf("remote cache %s served corrupt data (%v); it was discarded and the action runs locally", r.b, err)
	case kindSignature:
		msg = fmt.Sprintf("remote cache %s: %v; with PIPE_REMOTE_CACHE_KEY set, pipe ignores entries not signed with that key", r.b, err)
	case kindInvalid:
		msg = fmt.Sprintf("remote cache %s holds an entry pipe cannot use (%v); ignoring it", r.b, err)
	case kindLocal:
		msg = fmt.Sprintf("remote cache %s: %s: %v", r.b, op, err)
	}
	key := op + "/" + kind
	if kind == kindDown || kind == kindNoCreds {
		// Down is down, whether a read or a write noticed.
		key = kind
	}
	r.mu.Lock()
	seen := r.warned[key]
	r.warned[key] = true
	r.mu.Unlock()
	if !seen {
		r.opt.Warn(msg)
	}
}

var errTimedOut = errors.New("timed out")

// opContext bounds a small operation.
func (r *Remote) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, r.opt.Timeout, fmt.Errorf("no answer within %s: %w", r.opt.Timeout, errTimedOut))
}

// stallContext is cancelled when touch has not been called for Timeout.
func (r *Remote) stallContext(ctx context.Context) (sctx context.Context, touch, stop func()) {
	sctx, cancel := context.WithCancelCause(ctx)
	cause := fmt.Errorf("transfer made no progress for %s: %w", r.opt.Timeout, errTimedOut)
	t := time.AfterFunc(r.opt.Timeout, func() { cancel(cause) })
	return sctx, func() { t.Reset(r.opt.Timeout) }, func() { t.Stop(); cancel(nil) }
}

// explain adds the reason an operation's context ended to err, so the
// warning says "timed out" rather than just "context canceled".
func explain(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, errTimedOut) && !errors.Is(err, errTimedOut) {
		return fmt.Errorf("%w (%v)", err, c)
	}
	return err
}

// forEach runs f(i) for i in [0,n) with at most Parallel transfers in
// flight across the whole Remote. The first error cancels the rest.
func (r *Remote) forEach(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
loop:
	for i := 0; i < n; i++ {
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-r.sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}(i)
	}
	wg.Wait()
	if first == nil {
		return ctx.Err()
	}
	return first
}

// Fetch looks key up in the remote and, on a hit, downloads every output
// blob the local CAS lacks. It returns a result only when all its blobs are
// in the local CAS.
func (r *Remote) Fetch(ctx context.Context, key ActionKey) (*ActionResult, bool) {
	if !r.opt.AcceptCached || r.down.Load() || ctx.Err() != nil {
		return nil, false
	}
	res, err := r.fetch(ctx, key)
	switch {
	case err == nil:
		r.hits.Add(1)
		return res, true
	case ctx.Err() != nil:
		// The build was interrupted: neither a miss nor the store's fault.
	case errors.Is(err, ErrMiss):
		r.misses.Add(1)
	default:
		r.misses.Add(1)
		r.fail("fetch", err)
	}
	return nil, false
}

type sizedDigest struct {
	d    Digest
	size int64
}

// emptyDigest is the sha256 of no bytes. Stores need not hold it (Bazel
// never uploads it), so it is never transferred.
var emptyDigest = Sum(nil)

func (r *Remote) fetch(ctx context.Context, key ActionKey) (*ActionResult, error) {
	octx, cancel := r.opContext(ctx)
	data, err := r.b.GetAC(octx, key)
	err = explain(octx, err)
	cancel()
	r.bytesDown.Add(int64(len(data)))
	if err != nil {
		return nil, err
	}
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(data, ar); err != nil {
		return nil, &remoteError{kindInvalid, fmt.Errorf("action %s: decode ActionResult: %w", key, err)}
	}
	if r.opt.SigningKey != nil {
		if err := verifyResult(r.opt.SigningKey, key, ar); err != nil {
			return nil, &remoteError{kindSignature, fmt.Errorf("action %s: %w", key, err)}
		}
	}
	if ar.ExitCode != 0 {
		// Other clients may cache failures; pipe reruns them.
		return nil, ErrMiss
	}
	tds, sizes, err := treeDigests(ar)
	if err != nil {
		return nil, &remoteError{kindInvalid, fmt.Errorf("action %s: %w", key, err)}
	}
	trees := map[Digest][]byte{}
	for i, td := range tds {
		b, err := r.getSmall(ctx, td, sizes[i])
		if err != nil {
			return nil, err
		}
		trees[td] = b
	}
	res, err := fromREAPI(ar, trees)
	if err != nil {
		return nil, &remoteError{kindInvalid, fmt.Errorf("action %s: %w", key, err)}
	}
	var need []sizedDigest
	seen := map[Digest]bool{}
	for _, o := range res.Outputs {
		if !seen[o.Digest] && !r.local.Has(o.Digest) {
			seen[o.Digest] = true
			need = append(need, sizedDigest{o.Digest, o.Size})
		}
	}
	// Largest first, so the long transfers overlap the many small ones.
	sort.Slice(need, func(i, j int) bool { return need[i].size > need[j].size })
	err = r.forEach(ctx, len(need), func(ctx context.Context, i int) error {
		return r.download(ctx, need[i].d, need[i].size)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// getSmall downloads a blob that is parsed in memory (a Tree), verified.
func (r *Remote) getSmall(ctx context.Context, d Digest, size int64) ([]byte, error) {
	if size > maxACSize {
		return nil, &remoteError{kindInvalid, fmt.Errorf("tree %s is %d bytes, more than pipe reads", d, size)}
	}
	sctx, touch, stop := r.stallContext(ctx)
	defer stop()
	var buf bufWriter
	vw := &verifyWriter{w: &buf, h: sha256.New(), want: d, size: size, touch: touch}
	_, err := r.b.GetCAS(sctx, d, vw)
	r.bytesDown.Add(vw.n)
	if err != nil {
		return nil, explain(sctx, err)
	}
	if err := vw.check(); err != nil {
		return nil, err
	}
	return buf.b, nil
}

type bufWriter struct{ b []byte }

func (w *bufWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// verifyWriter hashes what passes through and stops a body that runs past
// the expected size, so a hostile server cannot fill the disk.
type verifyWriter struct {
	w     io.Writer
	h     hash.Hash
	want  Digest
	size  int64
	n     int64
	touch func()
}

func (v *verifyWriter) Write(p []byte) (int, error) {
	v.touch()
	if v.n+int64(len(p)) > v.size {
		return 0, &remoteError{kindCorrupt, fmt.Errorf("blob %s: more than the %d bytes its digest names", v.want, v.size)}
	}
	n, err := v.w.Write(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err != nil {
		return n, &remoteError{kindLocal, err}
	}
	return n, nil
}

func (v *verifyWriter) check() error {
	if v.n != v.size {
		return &remoteError{kindCorrupt, fmt.Errorf("blob %s: got %d bytes, want %d", v.want, v.n, v.size)}
	}
	var got Digest
	v.h.Sum(got[:0])
	if got != v.want {
		return &remoteError{kindCorrupt, fmt.Errorf("blob %s: content hashes to %s", v.want, got)}
	}
	return nil
}

// download streams blob d into the local CAS, verified.
func (r *Remote) download(ctx context.Context, d Digest, size int64) error {
	unlock := r.local.LockBlob(d)
	defer unlock()
	if r.local.Has(d) {
		return nil
	}
	if size == 0 {
		if d != emptyDigest {
			return &remoteError{kindInvalid, fmt.Errorf("blob %s has size 0 but is not the empty blob", d)}
		}
		if _, err := r.local.PutBytes(nil); err != nil {
			return &remoteError{kindLocal, err}
		}
		return nil
	}
	f, err := r.local.tempFile()
	if err != nil {
		return &remoteError{kindLocal, fmt.Errorf("write local cache: %w", err)}
	}
	sctx, touch, stop := r.stallContext(ctx)
	vw := &verifyWriter{w: f, h: sha256.New(), want: d, size: size, touch: touch}
	_, err = r.b.GetCAS(sctx, d, vw)
	err = explain(sctx, err)
	stop()
	r.bytesDown.Add(vw.n)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &remoteError{kindLocal, fmt.Errorf("write local cache: %w", cerr)}
	}
	if err == nil {
		err = vw.check()
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	os.Chmod(f.Name(), 0o444)
	if err := commit(f.Name(), r.local.casPath(d)); err != nil {
		return &remoteError{kindLocal, fmt.Errorf("write local cache: %w", err)}
	}
	r.present.Store(d, true)
	return nil
}

// Upload stores res and its blobs under key when uploads are enabled.
// Blobs go first and the AC entry last, so a reader never finds an entry
// whose blobs are absent.
func (r *Remote) Upload(ctx context.Context, key ActionKey, res *ActionResult) {
	if !r.opt.Upload || res == nil || r.down.Load() || r.noUpload.Load() || ctx.Err() != nil {
		return
	}
	if err := r.upload(ctx, key, res); err != nil && ctx.Err() == nil {
		r.fail("upload", err)
	}
}

func (r *Remote) upload(ctx context.Context, key ActionKey, res *ActionResult) error {
	ar, trees, err := toREAPI(res, time.Now())
	if err != nil {
		return &remoteError{kindLocal, fmt.Errorf("encode result of %s: %w", key, err)}
	}
	if r.opt.SigningKey != nil {
		if err := signResult(r.opt.SigningKey, key, ar); err != nil {
			return &remoteError{kindLocal, err}
		}
	}
	value, err := marshalDet(ar)
	if err != nil {
		return &remoteError{kindLocal, fmt.Errorf("encode result of %s: %w", key, err)}
	}
	type item struct {
		d    Digest
		size int64
		data []byte // for Tree blobs; nil means the local CAS file
	}
	var items []item
	seen := map[Digest]bool{}
	for _, o := range res.Outputs {
		if o.Size > 0 && !seen[o.Digest] {
			seen[o.Digest] = true
			items = append(items, item{o.Digest, o.Size, nil})
		}
	}
	for _, t := range trees {
		if !seen[t.digest] {
			seen[t.digest] = true
			items = append(items, item{t.digest, int64(len(t.data)), t.data})
		}
	}
	err = r.forEach(ctx, len(items), func(ctx context.Context, i int) error {
		it := items[i]
		if _, ok := r.present.Load(it.d); ok {
			return nil
		}
		octx, cancel := r.opContext(ctx)
		has, err := r.b.HasCAS(octx, it.d)
		err = explain(octx, err)
		cancel()
		if err != nil {
			return err
		}
		if !has {
			if err := r.put(ctx, it.d, it.size, it.data); err != nil {
				return err
			}
		}
		r.present.Store(it.d, true)
		return nil
	})
	if err != nil {
		return err
	}
	octx, cancel := r.opContext(ctx)
	defer cancel()
	if err := explain(octx, r.b.PutAC(octx, key, value)); err != nil {
		return err
	}
	r.bytesUp.Add(int64(len(value)))
	return nil
}

// put uploads one blob, from data or else from the local CAS.
func (r *Remote) put(ctx context.Context, d Digest, size int64, data []byte) error {
	var src io.ReadSeeker
	if data != nil {
		src = bytes.NewReader(data)
	} else {
		f, err := os.Open(r.local.casPath(d))
		if err != nil {
			return &remoteError{kindLocal, fmt.Errorf("output blob %s: %w", d, err)}
		}
		defer f.Close()
		// A local blob that rotted must not be published under its name.
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return &remoteError{kindLocal, fmt.Errorf("read local blob %s: %w", d, err)}
		}
		var got Digest
		h.Sum(got[:0])
		if got != d || n != size {
			return &remoteError{kindLocal, fmt.Errorf("local blob %s is corrupt; not uploading it", d)}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return &remoteError{kindLocal, err}
		}
		src = f
	}
	sctx, touch, stop := r.stallContext(ctx)
	defer stop()
	pr := &progressReader{r: src, touch: touch}
	err := explain(sctx, r.b.PutCAS(sctx, d, size, pr))
	r.bytesUp.Add(pr.n)
	return err
}

// progressReader feeds the stall timer. It stays seekable so backends can
// rewind for retries or signing.
type progressReader struct {
	r     io.ReadSeeker
	touch func()
	n     int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.touch()
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

func (p *progressReader) Seek(off int64, whence int) (int64, error) {
	pos, err := p.r.Seek(off, whence)
	if err == nil && whence == io.SeekStart && off == 0 {
		// A backend rewinding to send again (or after hashing) sends the
		// bytes once more; count only what finally goes out.
		p.n = 0
	}
	return pos, err
}

// entry is one object of the remote layout: ac/<action key> or
// cas/<blob digest>. Backends name objects through it, so the two kinds of
// identity never meet as one type.
type entry struct{ kind, name string }

func acEntry(k ActionKey) entry { return entry{"ac", k.String()} }
func casEntry(d Digest) entry   { return entry{"cas", d.String()} }

func (e entry) String() string { return e.kind + "/" + e.name }
