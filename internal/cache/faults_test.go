package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// faultFixture uploads, straight to the store, a result with a 4 MB blob
// (so transfers can be cut mid-body) besides the small ones.
func faultFixture(t *testing.T, s *remoteSetup) (ActionKey, *ActionResult, Digest) {
	t.Helper()
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true})
	res := remoteSample(t, writer.local)
	big, n, err := writer.local.PutReader(newGen(3, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	res.Outputs = append(res.Outputs, OutputFile{Path: "pkg/big.bin", Digest: big, Size: n})
	key := ActionKey(Sum([]byte("fault fixture")))
	w := &recorder{}
	writer.opt.Warn = w.warn
	writer.Upload(context.Background(), key, res)
	writer.Wait(context.Background())
	w.expect(t, 0)
	return key, res, big
}

// checkLocalClean fails if the local cache holds a blob whose bytes do not
// match its name, or leftover temp files.
func checkLocalClean(t *testing.T, c *Cache) {
	t.Helper()
	filepath.WalkDir(filepath.Join(c.Dir(), "cas"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		if hex.EncodeToString(h.Sum(nil)) != d.Name() {
			t.Errorf("local CAS holds corrupt blob %s", d.Name())
		}
		return nil
	})
	if left := tmpEntries(t, c); len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func eachFaultBackend(t *testing.T, f func(t *testing.T, s *remoteSetup)) {
	t.Run("nginx", func(t *testing.T) { f(t, setupNginx(t)) })
	t.Run("minio", func(t *testing.T) { f(t, setupS3(t, "minio")) })
}

const faultTimeout = 300 * time.Millisecond

func TestRemoteFetchFaults(t *testing.T) {
	cases := []struct {
		name    string
		f       faults
		words   []string
		bigGone bool // the big blob must not be in the local CAS
		breaker bool // the remote is abandoned for the rest of the build
	}{
		// S3's SDK retries 5xx with backoff, so there the timeout may be what
		// the warning names.
		{"500s", faults{Status500: true}, []string{"continuing without it"}, true, true},
		{"delay past timeout", faults{Delay: 3 * time.Second}, []string{"no answer within"}, true, true},
		{"no answer at all", faults{Hang: true}, []string{"no answer within"}, true, true},
		{"corrupted blob", faults{CorruptCAS: true}, []string{"corrupt", "discarded"}, true, false},
		{"truncated body", faults{TruncateCAS: true}, []string{"failed"}, true, true},
		{"stalled body", faults{StallCAS: true}, []string{"no progress"}, true, true},
		{"killed mid-transfer", faults{KillAfter: 1 << 20}, []string{"failed"}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
				ctx := context.Background()
				key, res, big := faultFixture(t, s)
				s.proxy.set(c.f)
				r, local, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: faultTimeout, Parallel: 4})
				start := time.Now()
				if _, ok := r.Fetch(ctx, key); ok {
					t.Fatal("Fetch succeeded through the fault")
				}
				first := time.Since(start)
				reqs := s.proxy.count("", "")
				for range 20 {
					if _, ok := r.Fetch(ctx, key); ok {
						t.Fatal("Fetch succeeded through the fault")
					}
				}
				total := time.Since(start)
				w.expect(t, 1, c.words...)
				checkLocalClean(t, local)
				if c.bigGone && local.Has(big) {
					t.Error("the damaged blob entered the local cache")
				}
				if first > 4*faultTimeout {
					t.Errorf("first failing Fetch took %s with a %s timeout", first, faultTimeout)
				}
				if c.breaker {
					if n := s.proxy.count("", ""); n != reqs {
						t.Errorf("after the remote failed, %d more requests were made", n-reqs)
					}
					if total > first+faultTimeout {
						t.Errorf("21 Fetches took %s, the first %s: the breaker did not hold", total, first)
					}
					return
				}
				// A corrupt blob is not the store being down: once it
				// serves good bytes again, Fetch works.
				s.proxy.set(faults{})
				got, ok := r.Fetch(ctx, key)
				if !ok {
					t.Fatalf("Fetch failed after the fault cleared: %q", w.list())
				}
				if got, want := got, canonical(res); len(got.Outputs) != len(want.Outputs) {
					t.Fatalf("got %d outputs, want %d", len(got.Outputs), len(want.Outputs))
				}
				checkBlobs(t, local, res)
				w.expect(t, 1)
			})
		})
	}
}

// TestRemoteDeadRemoteCostsOneTimeout: many actions looking up a remote
// that never answers, concurrently, cost about one timeout in total.
func TestRemoteDeadRemoteCostsOneTimeout(t *testing.T) {
	eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
		s.proxy.set(faults{Hang: true})
		const timeout = 500 * time.Millisecond
		r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Upload: true, Timeout: timeout})
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 8 {
					key := ActionKey(Sum([]byte{byte(i), byte(j)}))
					if _, ok := r.Fetch(context.Background(), key); ok {
						t.Error("hit from a dead remote")
					}
					r.Upload(context.Background(), key, &ActionResult{})
				}
			}()
		}
		wg.Wait()
		r.Wait(context.Background())
		if el := time.Since(start); el > 3*timeout {
			t.Errorf("128 lookups of a dead remote took %s (timeout %s)", el, timeout)
		}
		w.expect(t, 1, "no answer within")
	})
}

func TestRemoteRefusedConnection(t *testing.T) {
	s := setupNginx(t)
	key, _, _ := faultFixture(t, s)
	s.proxy.kill()
	r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: faultTimeout})
	start := time.Now()
	for range 50 {
		if _, ok := r.Fetch(context.Background(), key); ok {
			t.Fatal("hit from a dead remote")
		}
	}
	if el := time.Since(start); el > faultTimeout {
		t.Errorf("50 lookups of a refusing remote took %s", el)
	}
	w.expect(t, 1, "refused")
}

func TestRemoteUploadFaults(t *testing.T) {
	eachFaultBackend(t, func(t *testing.T, s *remoteSetup) {
		ctx := context.Background()
		for _, c := range []struct {
			name string
			f    faults
		}{
			{"PUT 500", faults{FailPUT: true}},
			{"no answer", faults{Hang: true}},
		} {
			t.Run(c.name, func(t *testing.T) {
				s.proxy.set(c.f)
				w := &recorder{}
				r := NewRemote(openTemp(t), s.proxied, RemoteOptions{Upload: true, AcceptCached: true, Timeout: faultTimeout, Warn: w.warn})
				key := ActionKey(Sum([]byte(c.name)))
				start := time.Now()
				for range 5 {
					r.Upload(ctx, key, remoteSample(t, r.local))
				}
				r.Wait(ctx)
				if el := time.Since(start); el > 4*faultTimeout {
					t.Errorf("5 failing uploads took %s", el)
				}
				w.expect(t, 1, "continuing without it")
				// A result whose blobs did not all arrive is never
				// recorded.
				if _, err := s.direct.GetAC(ctx, key); !errors.Is(err, ErrMiss) {
					t.Errorf("AC entry after a failed upload: %v", err)
				}
			})
		}
	})
}

// TestRemoteInterruptedIsSilent: Ctrl-C is not the remote's fault.
func TestRemoteInterruptedIsSilent(t *testing.T) {
	s := setupNginx(t)
	key, _, _ := faultFixture(t, s)
	s.proxy.set(faults{Hang: true})
	r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, ok := r.Fetch(ctx, key); ok {
		t.Fatal("hit")
	}
	w.expect(t, 0)
	s.proxy.set(faults{})
	if _, ok := r.Fetch(context.Background(), key); !ok {
		t.Fatal("an interruption disabled the remote")
	}
}
