package cache

// Uploads leave the critical path: Upload queues a result and returns, and
// a few background workers upload what is queued while the build goes on
// (dependents of the action run meanwhile). Each worker takes everything
// queued so far, up to uploadBatchResults, as one batch: one FindMissing
// round for all their blobs, small blobs packed into batch requests, then
// one AC entry per result. Batching matters as much as the background: a
// cold build of many small actions makes one round trip per batch rather
// than three per action.
//
// The order within a batch keeps the cache's promise: an AC entry is
// written only after every blob it names is in the store, and a result
// whose blob failed to upload gets no AC entry.
//
// Close, at the end of a build, waits for the queue (bounded by
// UploadWait, or cut short by an interrupt), then cancels what is left and
// says how many results were not shared. Failures along the way warn as
// every remote problem does: once per kind, the breaker opening on a store
// that is down, which empties the queue without further traffic.

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	// uploadWorkers bounds concurrent upload batches; the blob transfers
	// within them are bounded by Parallel.
	uploadWorkers = 4
	// uploadBatchResults bounds the results one batch carries, so the
	// first AC entries of a long build are not held back by the last.
	uploadBatchResults = 64
)

type uploadJob struct {
	key ActionKey
	res *ActionResult
}

// uploadQueue is Remote's queue of results to upload.
type uploadQueue struct {
	ctx    context.Context // cancelled by Close when it stops waiting
	cancel context.CancelFunc

	mu      sync.Mutex
	jobs    []uploadJob
	workers int
	closed  bool
	// idle is closed while no worker runs (and so nothing is queued).
	idle chan struct{}
}

func (q *uploadQueue) init() {
	// The queue outlives the executor's context (which ends when Execute
	// returns); Close decides when it stops.
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.idle = make(chan struct{})
	close(q.idle)
}

// wait returns true once the queue is empty and no worker runs, or false
// when ctx ends first.
func (q *uploadQueue) wait(ctx context.Context) bool {
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// Upload stores res, the result of an action that executed here, and its
// blobs under key when uploads are enabled. It queues the result and
// returns at once, unless InlineUploads is set; Close waits for the queue.
func (r *Remote) Upload(ctx context.Context, key ActionKey, res *ActionResult) {
	// Every executed result passes here, uploaded or not: its execution
	// time is what building locally costs, the measure of the lookups.
	r.noteExecuted(res)
	if !r.opt.Upload || res == nil || r.down.Load() || r.noUpload.Load() || ctx.Err() != nil {
		return
	}
	job := uploadJob{key, res}
	if r.opt.InlineUploads {
		r.uploadBatch(ctx, []uploadJob{job})
		return
	}
	q := &r.uploads
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.jobs = append(q.jobs, job)
	if q.workers < uploadWorkers {
		if q.workers == 0 {
			q.idle = make(chan struct{})
		}
		q.workers++
		go r.uploadWorker()
	}
}

func (r *Remote) uploadWorker() {
	q := &r.uploads
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.workers--
			if q.workers == 0 {
				close(q.idle)
			}
			q.mu.Unlock()
			return
		}
		n := min(len(q.jobs), uploadBatchResults)
		jobs := append([]uploadJob(nil), q.jobs[:n]...)
		q.jobs = q.jobs[n:]
		q.mu.Unlock()
		r.uploadBatch(q.ctx, jobs)
	}
}

// Wait returns once every queued upload is done, or false when ctx ends
// first. The queue stays open.
func (r *Remote) Wait(ctx context.Context) bool {
	return r.uploads.wait(ctx)
}

// Close waits for the queued uploads: at most UploadWait, and not at all
// once ctx ends (an interrupted build). Uploads still going then are
// cancelled, and one warning says how many results were not shared. Close
// then releases the connection OpenRemote made; r is not used afterwards.
func (r *Remote) Close(ctx context.Context) {
	q := &r.uploads
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, r.opt.UploadWait)
	drained := q.wait(wctx)
	cancel()
	why := ""
	if !drained {
		why = fmt.Sprintf("they were not done after %s", r.opt.UploadWait)
		if ctx.Err() != nil {
			why = "the build was interrupted"
		}
	}
	// Every operation honours the queue's context, so once it is
	// cancelled the workers return promptly.
	q.cancel()
	q.wait(context.Background())
	if n := r.abandoned.Load(); n > 0 && why != "" {
		r.opt.Warn(fmt.Sprintf("remote cache %s: %d result%s not uploaded: %s", r.b, n, plural(n), why))
	}
	if c, ok := r.b.(io.Closer); ok && r.ownsBackend {
		c.Close()
	}
}

func plural(n int64) string {
	if n == 1 {
		return " was"
	}
	return "s were"
}

// uploadBatch uploads jobs and counts the outcome.
func (r *Remote) uploadBatch(ctx context.Context, jobs []uploadJob) {
	if r.down.Load() || r.noUpload.Load() || ctx.Err() != nil {
		r.notUploaded.Add(int64(len(jobs)))
		if ctx.Err() != nil {
			r.abandoned.Add(int64(len(jobs)))
		}
		return
	}
	done, err := r.upload(ctx, jobs)
	r.uploaded.Add(int64(done))
	r.notUploaded.Add(int64(len(jobs) - done))
	switch {
	case ctx.Err() != nil:
		r.abandoned.Add(int64(len(jobs) - done))
	case err != nil:
		r.fail("upload", err)
	}
}

// upload stores the results of jobs, blobs first and AC entries last. It
// returns how many AC entries it wrote and the first error.
func (r *Remote) upload(ctx context.Context, jobs []uploadJob) (int, error) {
	type entry struct {
		key   ActionKey
		value []byte
		blobs []Digest
	}
	var (
		entries []entry
		first   error
		unknown []SizedDigest
		seen    = map[Digest]bool{}
		trees   = map[Digest][]byte{}
	)
	for _, j := range jobs {
		value, tr, err := r.encodeResult(j.key, j.res)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		e := entry{key: j.key, value: value}
		add := func(b SizedDigest) {
			e.blobs = append(e.blobs, b.Digest)
			if seen[b.Digest] {
				return
			}
			seen[b.Digest] = true
			if _, ok := r.present.Load(b.Digest); !ok {
				unknown = append(unknown, b)
			}
		}
		for _, o := range j.res.Outputs {
			if o.Size > 0 {
				add(SizedDigest{o.Digest, o.Size})
			}
		}
		for _, t := range tr {
			trees[t.digest] = t.data
			add(SizedDigest{t.digest, int64(len(t.data))})
		}
		entries = append(entries, e)
	}
	missing, err := r.findMissing(ctx, unknown)
	if err != nil {
		return 0, err
	}
	stored, err := r.putAll(ctx, missing, trees)
	if err != nil && first == nil {
		first = err
	}
	if ctx.Err() != nil || r.down.Load() {
		return 0, first
	}
	// A blob is in the store when FindMissing did not name it or putAll
	// stored it; anything else (failed, or never tried after the store
	// failed) keeps its results from getting an AC entry.
	absent := map[Digest]bool{}
	for _, b := range missing {
		if !stored[b.Digest] {
			absent[b.Digest] = true
		}
	}
	for _, b := range unknown {
		if !absent[b.Digest] {
			r.present.Store(b.Digest, true)
		}
	}
	var ready []entry
	for _, e := range entries {
		ok := true
		for _, d := range e.blobs {
			ok = ok && !absent[d]
		}
		if ok {
			ready = append(ready, e)
		}
	}
	if first != nil && kindOf(first) == kindDown {
		// The store is failing: AC writes would only wait for it too.
		return 0, first
	}
	var (
		mu   sync.Mutex
		done int
	)
	err = r.forEach(ctx, r.usem, len(ready), func(ctx context.Context, i int) error {
		octx, cancel := r.opContext(ctx)
		defer cancel()
		if err := explain(octx, r.b.PutAC(octx, ready[i].key, ready[i].value)); err != nil {
			return err
		}
		r.bytesUp.Add(int64(len(ready[i].value)))
		mu.Lock()
		done++
		mu.Unlock()
		return nil
	})
	if err != nil && first == nil {
		first = err
	}
	return done, first
}

// encodeResult turns res into the AC entry the store keeps (signed when a
// key is set) and the Tree blobs it refers to.
func (r *Remote) encodeResult(key ActionKey, res *ActionResult) ([]byte, []blob, error) {
	ar, trees, err := toREAPI(res, time.Now())
	if err != nil {
		return nil, nil, &remoteError{kindLocal, fmt.Errorf("encode result of %s: %w", key, err)}
	}
	if r.opt.SigningKey != nil {
		if err := signResult(r.opt.SigningKey, key, ar); err != nil {
			return nil, nil, &remoteError{kindLocal, err}
		}
	}
	value, err := marshalDet(ar)
	if err != nil {
		return nil, nil, &remoteError{kindLocal, fmt.Errorf("encode result of %s: %w", key, err)}
	}
	return value, trees, nil
}
