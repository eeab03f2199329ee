package cache

// Remote puts a shared cache (S3, Bazel's HTTP protocol, an REAPI server
// over gRPC) behind the local one. Its rule is that the remote can only
// ever make a build faster: anything that goes wrong — a dead or slow
// server, 5xx or UNAVAILABLE, a truncated or corrupt download, an unsigned
// entry — becomes a miss, one warning per kind of problem, and local
// execution.
//
// Bounds on time:
//   - small operations (AC get/put, FindMissing) get RemoteOptions.Timeout
//     each; a batch of blobs gets Timeout per MiB it carries;
//   - streamed blob transfers get no total deadline, since a 2 GB blob on a
//     slow link is legitimate, but are cancelled when no byte has moved for
//     Timeout (a stall timeout), or when they move less than MinRate
//     bytes per second (see bounds.go);
//   - lookups together may cost a build only what they save plus a budget
//     (bounds.go), after which the remote is not asked again;
//   - the first connection-level failure (refused, reset, timed out,
//     stalled, truncated) or 5xx opens a circuit breaker: the remote is not
//     contacted again for the rest of the build, so a dead remote costs one
//     timeout rather than one per action.
//
// Integrity: every downloaded blob is hashed as it arrives and enters the
// local CAS only when its size and sha256 match the digest that names it,
// so corrupt remote data never enters the local cache. Uploads re-hash the
// local blob before sending it.
//
// Uploads run in the background (upload.go); Close waits for them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// SizedDigest names a CAS blob as REAPI does: the sha256 of its bytes and
// their number. Stores that key blobs by hash alone (S3, Bazel's HTTP
// protocol) ignore the size; REAPI servers need it, and Remote checks every
// download against both.
type SizedDigest struct {
	Digest Digest
	Size   int64
}

func (b SizedDigest) String() string { return fmt.Sprintf("%s/%d", b.Digest, b.Size) }

// BlobData is a blob in memory, for the batch calls.
type BlobData struct {
	SizedDigest
	Data []byte
}

// Backend is one remote store: Bazel's HTTP cache protocol, S3, or an REAPI
// server over gRPC. Implementations must be safe for concurrent use and
// must honour ctx for cancellation.
type Backend interface {
	// GetAC returns the AC entry for key, or ErrMiss.
	GetAC(ctx context.Context, key ActionKey) ([]byte, error)
	PutAC(ctx context.Context, key ActionKey, value []byte) error
	// GetCAS streams blob b into w, or returns ErrMiss. It does not
	// verify; Remote does.
	GetCAS(ctx context.Context, b SizedDigest, w io.Writer) (int64, error)
	// PutCAS stores b.Size bytes from r as blob b. r may be an io.Seeker,
	// which lets a backend retry or hash before sending.
	PutCAS(ctx context.Context, b SizedDigest, r io.Reader) error
	// FindMissing returns those of bs the store lacks, in any order.
	FindMissing(ctx context.Context, bs []SizedDigest) ([]SizedDigest, error)
	// String names the store for messages, without credentials.
	String() string
}

// BatchBackend is a Backend that moves many small blobs in one request
// (REAPI's BatchReadBlobs and BatchUpdateBlobs): a hundred small outputs
// cost one round trip instead of a hundred. Remote hands it blobs of at
// most BatchLimit bytes in groups of at most BatchLimit bytes; larger blobs
// go through GetCAS and PutCAS, which stream.
type BatchBackend interface {
	Backend
	// BatchLimit is the most blob bytes one batch request carries. It may
	// be a default until the server has said otherwise; the batch calls
	// split what the server's real limit requires.
	BatchLimit() int64
	// GetCASBatch reads bs and calls got with each blob's bytes, as the
	// server sent them (Remote verifies). A blob the store lacks makes
	// the call return ErrMiss once the rest were delivered.
	GetCASBatch(ctx context.Context, bs []SizedDigest, got func(SizedDigest, []byte) error) error
	// PutCASBatch stores blobs.
	PutCASBatch(ctx context.Context, blobs []BlobData) error
}

// Endpoint is how to reach the store, beyond its URL.
type Endpoint struct {
	// InstanceName selects an REAPI server's instance
	// (--remote-instance-name); only grpc(s):// stores have instances.
	InstanceName string
	// Headers go with every request (--remote-header): gRPC metadata, or
	// HTTP headers. S3 takes its credentials from the AWS chain instead.
	Headers []Header
	// TLSRoots, when set, are the only certificate authorities trusted
	// for grpcs:// and https:// (--remote-tls-ca); otherwise the system's.
	TLSRoots *x509.CertPool
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
	// MinRate is the slowest a streamed blob transfer may go, in bytes
	// per second averaged over each Timeout after the first
	// (--remote-min-rate). Zero means DefaultMinRate; negative, no floor.
	MinRate int64
	// Budget is how much more time lookups may wait on the remote in one
	// build than the execution time their hits save (--remote-budget).
	// Zero learns it from the build: the execution time of the actions
	// that ran here, plus Timeout. Negative means no limit.
	Budget time.Duration
	// Parallel bounds concurrent blob transfers, downloads and uploads
	// each. Zero means 16.
	Parallel int
	// InlineUploads uploads each result before Upload returns, holding
	// the caller (the executor's job slot) meanwhile. The default queues
	// results and uploads them in the background; Close waits for them.
	InlineUploads bool
	// UploadWait bounds how long Close waits for queued uploads. Zero
	// means 5 minutes: every transfer already fails after Timeout without
	// progress, so this only cuts off a slow but moving link.
	UploadWait time.Duration
	// Endpoint says how to reach the store; see OpenRemote.
	Endpoint Endpoint
	// Warn receives at most one message per kind of problem. Nil prints
	// to stderr.
	Warn func(msg string)
}

// RemoteStats counts a build's remote traffic for the summary line. Hits
// and Misses count lookups that reached the remote (none are made once the
// breaker is open); a lookup that failed is a miss. The byte counts are of
// blob and entry contents, before any compression on the wire, and include
// AC entries and Tree blobs. Uploaded counts results whose AC entry was
// written; NotUploaded those given up on (a failure, or Close's bound).
type RemoteStats struct {
	Hits, Misses          int
	BytesDown, BytesUp    int64
	Uploaded, NotUploaded int
}

// Remote is a remote cache in front of a local one. It implements the
// executor's RemoteCache interface.
type Remote struct {
	local *Cache
	b     Backend
	opt   RemoteOptions
	// sem bounds downloads and usem uploads, separately: background
	// uploads must not hold up the fetches a build is waiting for.
	sem, usem chan struct{}

	// down is the circuit breaker: once set, nothing more is sent.
	down atomic.Bool
	// life ends when the remote is dropped for this build (the breaker
	// opened, or lookups cost more than they save); lookups in flight
	// derive from it and stop at once.
	life context.Context
	stop context.CancelCauseFunc
	cost costAccount
	// noUpload stops uploads after the store refused one (say, read-only
	// credentials) while reads go on.
	noUpload atomic.Bool
	// present remembers blobs known to be in the remote, so an output
	// shared by many actions is checked once per build.
	present sync.Map

	mu     sync.Mutex
	warned map[string]bool

	hits, misses          atomic.Int64
	bytesDown, bytesUp    atomic.Int64
	uploaded, notUploaded atomic.Int64
	// abandoned counts results Close cut off.
	abandoned atomic.Int64

	uploads uploadQueue
	// ownsBackend: OpenRemote made b, so Close releases it.
	ownsBackend bool
}

// NewRemote puts b in front of local.
func NewRemote(local *Cache, b Backend, opt RemoteOptions) *Remote {
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 16
	}
	if opt.MinRate == 0 {
		opt.MinRate = DefaultMinRate
	}
	if opt.UploadWait <= 0 {
		opt.UploadWait = 5 * time.Minute
	}
	if opt.Warn == nil {
		opt.Warn = func(msg string) { fmt.Fprintln(os.Stderr, "pipe: warning: "+msg) }
	}
	r := &Remote{
		local: local, b: b, opt: opt,
		sem: make(chan struct{}, opt.Parallel), usem: make(chan struct{}, opt.Parallel),
		warned: map[string]bool{},
	}
	r.life, r.stop = context.WithCancelCause(context.Background())
	r.uploads.init()
	return r
}

// OpenRemote opens the remote cache at rawURL: s3://bucket/prefix,
// http(s)://host/prefix, or grpc(s)://host:port for an REAPI server. It
// does not contact the store: a store that is down costs the build one
// warning later, not an error now.
func OpenRemote(ctx context.Context, local *Cache, rawURL string, opt RemoteOptions) (*Remote, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote cache URL: %w", err)
	}
	const want = "want s3://bucket/prefix, http(s)://host/prefix or grpc(s)://host:port"
	scheme := strings.ToLower(u.Scheme)
	ep := opt.Endpoint
	if ep.InstanceName != "" && scheme != "grpc" && scheme != "grpcs" {
		return nil, fmt.Errorf("remote cache %q: an instance name applies only to grpc:// and grpcs:// caches", u.Redacted())
	}
	if (len(ep.Headers) > 0 || ep.TLSRoots != nil) && scheme == "s3" {
		return nil, fmt.Errorf("remote cache %q: headers and TLS roots apply to grpc(s):// and http(s):// caches; S3 takes its credentials and endpoint from the AWS configuration", u.Redacted())
	}
	var b Backend
	switch scheme {
	case "s3":
		b, err = NewS3Backend(ctx, rawURL)
	case "http", "https":
		b, err = newHTTPBackend(rawURL, nil, ep)
	case "grpc", "grpcs":
		b, err = NewGRPCBackend(rawURL, ep)
	case "":
		return nil, fmt.Errorf("remote cache %q: no scheme; %s", u.Redacted(), want)
	default:
		return nil, fmt.Errorf("remote cache %q: unsupported scheme %q; %s", u.Redacted(), u.Scheme, want)
	}
	if err != nil {
		return nil, err
	}
	r := NewRemote(local, b, opt)
	r.ownsBackend = true
	return r, nil
}

// Backend is the store behind r.
func (r *Remote) Backend() Backend { return r.b }

// Stats returns the counts so far.
func (r *Remote) Stats() RemoteStats {
	return RemoteStats{
		Hits:        int(r.hits.Load()),
		Misses:      int(r.misses.Load()),
		BytesDown:   r.bytesDown.Load(),
		BytesUp:     r.bytesUp.Load(),
		Uploaded:    int(r.uploaded.Load()),
		NotUploaded: int(r.notUploaded.Load()),
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
	if refusedByServer(err) {
		return kindStatus
	}
	// Everything else — dial errors, resets, deadlines, stalls, bodies
	// cut short, 5xx, gRPC's UNAVAILABLE or RESOURCE_EXHAUSTED — says the
	// store is not working right now.
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
		r.stop(err)
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
		r.stop(err)
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

// explain adds the reason an operation's context ended to err, so the
// warning says "timed out" rather than just "context canceled".
func explain(ctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded {
		// gRPC sends the deadline along; the server side may report it
		// expired a moment before this side notices.
		// The deadline is at most 100ms away (or passed, its timer not yet
		// run): waiting for it costs no more than that.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 100*time.Millisecond {
			<-ctx.Done()
		}
	}
	if c := context.Cause(ctx); c != nil && errors.Is(c, errTimedOut) && !errors.Is(err, errTimedOut) {
		return fmt.Errorf("%w (%v)", err, c)
	}
	return err
}

// forEach runs f(i) for i in [0,n) with at most cap(sem) calls in flight
// across the whole Remote. The first error cancels the rest.
func (r *Remote) forEach(ctx context.Context, sem chan struct{}, n int, f func(ctx context.Context, i int) error) error {
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
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
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
	if !r.opt.AcceptCached || r.dropped() || ctx.Err() != nil {
		return nil, false
	}
	start := time.Now()
	lctx, cancel := r.lookupContext(ctx)
	res, err := r.fetch(lctx, key)
	// Dropped while it waited (by another lookup's failure, or the
	// budget): already warned about.
	dropped := lctx.Err() != nil && ctx.Err() == nil
	cancel()
	switch {
	case err == nil:
		r.hits.Add(1)
	case ctx.Err() != nil:
		// The build was interrupted: neither a miss nor the store's fault.
		return nil, false
	case errors.Is(err, ErrMiss), dropped:
		r.misses.Add(1)
	default:
		r.misses.Add(1)
		r.fail("fetch", err)
	}
	// What the lookup cost, and saved, counts toward the budget (after
	// fail, so a store that failed is warned about as failing).
	r.account(time.Since(start), res)
	return res, err == nil
}

// emptyDigest is the sha256 of no bytes. Stores need not hold it (REAPI
// servers hold it implicitly, Bazel never uploads it), so it is never
// transferred.
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
	tds, err := treeDigests(ar)
	if err != nil {
		return nil, &remoteError{kindInvalid, fmt.Errorf("action %s: %w", key, err)}
	}
	trees, err := r.getTrees(ctx, tds)
	if err != nil {
		return nil, err
	}
	res, err := fromREAPI(ar, trees)
	if err != nil {
		return nil, &remoteError{kindInvalid, fmt.Errorf("action %s: %w", key, err)}
	}
	var need []SizedDigest
	seen := map[Digest]bool{}
	for _, o := range res.Outputs {
		if !seen[o.Digest] && !r.local.Has(o.Digest) {
			seen[o.Digest] = true
			need = append(need, SizedDigest{o.Digest, o.Size})
		}
	}
	if err := r.downloadAll(ctx, need); err != nil {
		return nil, err
	}
	return res, nil
}

// batchLimit is the backend's batch limit, or 0 when it has no batch calls.
func (r *Remote) batchLimit() (BatchBackend, int64) {
	if bb, ok := r.b.(BatchBackend); ok {
		if n := bb.BatchLimit(); n > 0 {
			return bb, n
		}
	}
	return nil, 0
}

// packBatches groups small blobs into batches of at most limit bytes,
// largest first so the groups come out full.
func packBatches(bs []SizedDigest, limit int64) [][]SizedDigest {
	sort.Slice(bs, func(i, j int) bool { return bs[i].Size > bs[j].Size })
	var out [][]SizedDigest
	var cur []SizedDigest
	var n int64
	for _, b := range bs {
		if len(cur) > 0 && n+b.Size > limit {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, b)
		n += b.Size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// splitBySize separates the blobs a batch call takes from those that must
// stream, dropping empty blobs, which are never transferred.
func splitBySize(bs []SizedDigest, limit int64) (small, large []SizedDigest, empty bool) {
	for _, b := range bs {
		switch {
		case b.Size == 0:
			empty = true
		case b.Size <= limit:
			small = append(small, b)
		default:
			large = append(large, b)
		}
	}
	return small, large, empty
}

// downloadAll fetches blobs into the local CAS: small ones in batches when
// the backend has batch calls, the rest streamed, largest first so the long
// transfers overlap the many small ones.
func (r *Remote) downloadAll(ctx context.Context, need []SizedDigest) error {
	bb, limit := r.batchLimit()
	small, large, empty := splitBySize(need, limit)
	if empty {
		if _, err := r.local.PutBytes(nil); err != nil {
			return &remoteError{kindLocal, err}
		}
	}
	for _, b := range need {
		if b.Size == 0 && b.Digest != emptyDigest {
			return &remoteError{kindInvalid, fmt.Errorf("blob %s has size 0 but is not the empty blob", b.Digest)}
		}
	}
	sort.Slice(large, func(i, j int) bool { return large[i].Size > large[j].Size })
	groups := packBatches(small, limit)
	return r.forEach(ctx, r.sem, len(large)+len(groups), func(ctx context.Context, i int) error {
		if i < len(large) {
			return r.download(ctx, large[i])
		}
		return r.downloadBatch(ctx, bb, groups[i-len(large)])
	})
}

// batchContext bounds one batch call: Timeout, and Timeout more for each
// MiB it carries, since a batch makes no visible progress until it is done.
func (r *Remote) batchContext(ctx context.Context, bytes int64) (context.Context, context.CancelFunc) {
	d := r.opt.Timeout * time.Duration(1+bytes>>20)
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer within %s: %w", d, errTimedOut))
}

func (r *Remote) downloadBatch(ctx context.Context, bb BatchBackend, group []SizedDigest) error {
	var total int64
	want := map[SizedDigest]bool{}
	for _, b := range group {
		total += b.Size
		want[b] = true
	}
	bctx, cancel := r.batchContext(ctx, total)
	defer cancel()
	err := bb.GetCASBatch(bctx, group, func(b SizedDigest, data []byte) error {
		if !want[b] {
			return &remoteError{kindCorrupt, fmt.Errorf("blob %s: sent but not asked for", b)}
		}
		delete(want, b)
		r.bytesDown.Add(int64(len(data)))
		return r.storeBlob(b, data)
	})
	if err != nil {
		return explain(bctx, err)
	}
	for b := range want {
		return &remoteError{kindCorrupt, fmt.Errorf("blob %s: asked for but not sent", b)}
	}
	return nil
}

// storeBlob puts a blob that arrived whole into the local CAS, verified.
func (r *Remote) storeBlob(b SizedDigest, data []byte) error {
	if int64(len(data)) != b.Size {
		return &remoteError{kindCorrupt, fmt.Errorf("blob %s: got %d bytes, want %d", b.Digest, len(data), b.Size)}
	}
	if got := Sum(data); got != b.Digest {
		return &remoteError{kindCorrupt, fmt.Errorf("blob %s: content hashes to %s", b.Digest, got)}
	}
	unlock := r.local.LockBlob(b.Digest)
	defer unlock()
	if !r.local.Has(b.Digest) {
		if _, err := r.local.PutBytes(data); err != nil {
			return &remoteError{kindLocal, fmt.Errorf("write local cache: %w", err)}
		}
	}
	r.present.Store(b.Digest, true)
	return nil
}

// getTrees downloads the Tree blobs of a result, verified: in one batch
// when the backend has batch calls, else one by one.
func (r *Remote) getTrees(ctx context.Context, tds []SizedDigest) (map[Digest][]byte, error) {
	trees := map[Digest][]byte{}
	bb, limit := r.batchLimit()
	var batch []SizedDigest
	for _, td := range tds {
		if _, dup := trees[td.Digest]; dup {
			continue
		}
		if bb != nil && td.Size > 0 && td.Size <= limit {
			batch = append(batch, td)
			trees[td.Digest] = nil
			continue
		}
		b, err := r.getSmall(ctx, td)
		if err != nil {
			return nil, err
		}
		trees[td.Digest] = b
	}
	for _, group := range packBatches(batch, limit) {
		var total int64
		for _, b := range group {
			total += b.Size
		}
		bctx, cancel := r.batchContext(ctx, total)
		err := bb.GetCASBatch(bctx, group, func(b SizedDigest, data []byte) error {
			r.bytesDown.Add(int64(len(data)))
			if int64(len(data)) != b.Size || Sum(data) != b.Digest {
				return &remoteError{kindCorrupt, fmt.Errorf("tree %s: content does not match its digest", b.Digest)}
			}
			trees[b.Digest] = data
			return nil
		})
		err = explain(bctx, err)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	for _, td := range batch {
		if trees[td.Digest] == nil {
			return nil, &remoteError{kindCorrupt, fmt.Errorf("tree %s: asked for but not sent", td.Digest)}
		}
	}
	return trees, nil
}

// getSmall downloads a blob that is parsed in memory (a Tree), verified.
func (r *Remote) getSmall(ctx context.Context, b SizedDigest) ([]byte, error) {
	if b.Size > maxACSize {
		return nil, &remoteError{kindInvalid, fmt.Errorf("tree %s is %d bytes, more than pipe reads", b.Digest, b.Size)}
	}
	if b.Size == 0 {
		if b.Digest != emptyDigest {
			return nil, &remoteError{kindInvalid, fmt.Errorf("tree %s has size 0 but is not the empty blob", b.Digest)}
		}
		return nil, nil
	}
	sctx, progress, stop := r.transferContext(ctx)
	defer stop()
	var buf bufWriter
	vw := &verifyWriter{w: &buf, h: sha256.New(), want: b.Digest, size: b.Size, progress: progress}
	_, err := r.b.GetCAS(sctx, b, vw)
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
	w    io.Writer
	h    hash.Hash
	want Digest
	size int64
	n    int64
	// progress feeds the transfer's stall timer and rate floor.
	progress func(n int)
}

func (v *verifyWriter) Write(p []byte) (int, error) {
	v.progress(len(p))
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

// download streams blob b into the local CAS, verified.
func (r *Remote) download(ctx context.Context, b SizedDigest) error {
	d := b.Digest
	unlock := r.local.LockBlob(d)
	defer unlock()
	if r.local.Has(d) {
		return nil
	}
	f, err := r.local.tempFile()
	if err != nil {
		return &remoteError{kindLocal, fmt.Errorf("write local cache: %w", err)}
	}
	sctx, progress, stop := r.transferContext(ctx)
	vw := &verifyWriter{w: f, h: sha256.New(), want: d, size: b.Size, progress: progress}
	_, err = r.b.GetCAS(sctx, b, vw)
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

// findMissingChunk bounds the digests one FindMissing call asks about, so
// each call fits one operation's timeout even where a backend answers
// with a HEAD per blob.
const findMissingChunk = 256

// findMissing asks the store which of bs it lacks.
func (r *Remote) findMissing(ctx context.Context, bs []SizedDigest) ([]SizedDigest, error) {
	var out []SizedDigest
	for i := 0; i < len(bs); i += findMissingChunk {
		octx, cancel := r.opContext(ctx)
		m, err := r.b.FindMissing(octx, bs[i:min(i+findMissingChunk, len(bs))])
		err = explain(octx, err)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// putAll uploads blobs, small ones in batches when the backend has batch
// calls. trees holds blobs that are not in the local CAS. It returns the
// blobs now stored and the first error; a failure of the store itself
// stops the rest, which are then neither stored nor failed, so callers go
// by what was stored.
func (r *Remote) putAll(ctx context.Context, bs []SizedDigest, trees map[Digest][]byte) (map[Digest]bool, error) {
	bb, limit := r.batchLimit()
	small, large, _ := splitBySize(bs, limit)
	sort.Slice(large, func(i, j int) bool { return large[i].Size > large[j].Size })
	groups := packBatches(small, limit)
	var (
		mu     sync.Mutex
		stored = map[Digest]bool{}
		first  error
	)
	err := r.forEach(ctx, r.usem, len(large)+len(groups), func(ctx context.Context, i int) error {
		var err error
		var which []SizedDigest
		if i < len(large) {
			which = large[i : i+1]
			err = r.put(ctx, large[i], trees[large[i].Digest])
		} else {
			which = groups[i-len(large)]
			err = r.putBatch(ctx, bb, which, trees)
		}
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			for _, b := range which {
				stored[b.Digest] = true
			}
			return nil
		}
		if first == nil {
			first = err
		}
		if kindOf(err) == kindDown {
			return err
		}
		return nil
	})
	if first == nil {
		first = err
	}
	return stored, first
}

// readLocal reads a small local blob for a batch, verified: a local blob
// that rotted must not be published under its name.
func (r *Remote) readLocal(b SizedDigest, trees map[Digest][]byte) ([]byte, error) {
	if data, ok := trees[b.Digest]; ok {
		return data, nil
	}
	data, err := os.ReadFile(r.local.casPath(b.Digest))
	if err != nil {
		return nil, &remoteError{kindLocal, fmt.Errorf("output blob %s: %w", b.Digest, err)}
	}
	if int64(len(data)) != b.Size || Sum(data) != b.Digest {
		return nil, &remoteError{kindLocal, fmt.Errorf("local blob %s is corrupt; not uploading it", b.Digest)}
	}
	return data, nil
}

func (r *Remote) putBatch(ctx context.Context, bb BatchBackend, group []SizedDigest, trees map[Digest][]byte) error {
	blobs := make([]BlobData, 0, len(group))
	var total int64
	for _, b := range group {
		data, err := r.readLocal(b, trees)
		if err != nil {
			return err
		}
		blobs = append(blobs, BlobData{b, data})
		total += b.Size
	}
	bctx, cancel := r.batchContext(ctx, total)
	defer cancel()
	if err := bb.PutCASBatch(bctx, blobs); err != nil {
		return explain(bctx, err)
	}
	r.bytesUp.Add(total)
	return nil
}

// put uploads one blob, from data or else from the local CAS, streamed.
func (r *Remote) put(ctx context.Context, b SizedDigest, data []byte) error {
	var src io.ReadSeeker
	if data != nil {
		src = bytes.NewReader(data)
	} else {
		f, err := os.Open(r.local.casPath(b.Digest))
		if err != nil {
			return &remoteError{kindLocal, fmt.Errorf("output blob %s: %w", b.Digest, err)}
		}
		defer f.Close()
		// A local blob that rotted must not be published under its name.
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return &remoteError{kindLocal, fmt.Errorf("read local blob %s: %w", b.Digest, err)}
		}
		var got Digest
		h.Sum(got[:0])
		if got != b.Digest || n != b.Size {
			return &remoteError{kindLocal, fmt.Errorf("local blob %s is corrupt; not uploading it", b.Digest)}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return &remoteError{kindLocal, err}
		}
		src = f
	}
	sctx, progress, stop := r.transferContext(ctx)
	defer stop()
	pr := &progressReader{r: src, progress: progress}
	err := explain(sctx, r.b.PutCAS(sctx, b, pr))
	r.bytesUp.Add(pr.n)
	return err
}

// progressReader feeds the stall timer and rate floor: the backend reads
// as fast as the store takes the bytes. It stays seekable so backends can
// rewind for retries or signing.
type progressReader struct {
	r        io.ReadSeeker
	progress func(n int)
	n        int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.progress(n)
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
