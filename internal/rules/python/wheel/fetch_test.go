package wheel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
)

func init() { retryDelay = 10 * time.Millisecond }

// index is a test wheel server: path → body, with request counting and a
// record of the most requests in flight at once.
type index struct {
	mu       sync.Mutex
	files    map[string][]byte
	status   map[string]int                                    // path → forced status
	hook     func(w http.ResponseWriter, r *http.Request) bool // handled if true
	delay    time.Duration
	requests atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64
	paths    []string
}

func newIndex(t *testing.T) (*index, *httptest.Server) {
	ix := &index{files: map[string][]byte{}, status: map[string]int{}}
	srv := httptest.NewServer(ix)
	t.Cleanup(srv.Close)
	return ix, srv
}

func (ix *index) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ix.requests.Add(1)
	n := ix.inFlight.Add(1)
	defer ix.inFlight.Add(-1)
	for {
		m := ix.maxSeen.Load()
		if n <= m || ix.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	ix.mu.Lock()
	ix.paths = append(ix.paths, r.URL.Path)
	body, ok := ix.files[r.URL.Path]
	status := ix.status[r.URL.Path]
	hook := ix.hook
	ix.mu.Unlock()
	if hook != nil && hook(w, r) {
		return
	}
	time.Sleep(ix.delay)
	if status != 0 {
		http.Error(w, "nope", status)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(body)
}

func (ix *index) add(path string, body []byte) {
	ix.mu.Lock()
	ix.files[path] = body
	ix.mu.Unlock()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func openCache(t *testing.T) *cache.Cache {
	c, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// casFiles lists every file in the cache's cas/ and tmp/.
func casFiles(t *testing.T, c *cache.Cache) []string {
	var out []string
	for _, sub := range []string{"cas", "tmp"} {
		filepath.WalkDir(filepath.Join(c.Dir(), sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func TestFetchAllDownloadsOnce(t *testing.T) {
	ix, srv := newIndex(t)
	a, b := []byte("wheel a"), []byte("wheel b")
	ix.add("/packages/aa/bb/a-1.0-py3-none-any.whl", a)
	ix.add("/packages/cc/dd/b-2.0-py3-none-any.whl", b)
	reqs := []Request{
		{Name: "a", Version: "1.0", URL: srv.URL + "/packages/aa/bb/a-1.0-py3-none-any.whl", SHA256: "sha256:" + sum(a), Size: int64(len(a))},
		{Name: "b", Version: "2.0", URL: srv.URL + "/packages/cc/dd/b-2.0-py3-none-any.whl", SHA256: strings.ToUpper(sum(b))},
		// The same file again, from another request: fetched once.
		{Name: "a", Version: "1.0", URL: srv.URL + "/packages/aa/bb/a-1.0-py3-none-any.whl", SHA256: sum(a)},
	}
	c := openCache(t)
	var progress []string
	f := &Fetcher{Cache: c, Progress: func(done, total int, name string) {
		progress = append(progress, fmt.Sprintf("%d/%d", done, total))
	}}
	ds, err := f.FetchAll(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.requests.Load(); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
	for i, want := range [][]byte{a, b, a} {
		if ds[i] != cache.Sum(want) {
			t.Errorf("digest %d: %s", i, ds[i])
		}
		if got, err := c.ReadBlob(ds[i]); err != nil || string(got) != string(want) {
			t.Errorf("blob %d: %q, %v", i, got, err)
		}
	}
	if strings.Join(progress, " ") != "1/2 2/2" {
		t.Errorf("progress %q", progress)
	}

	ds2, err := f.FetchAll(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.requests.Load(); got != 2 {
		t.Errorf("second FetchAll made %d requests", got-2)
	}
	if fmt.Sprint(ds2) != fmt.Sprint(ds) {
		t.Error("digests differ")
	}

	// A corrupted blob is not trusted: it is fetched again.
	p := c.BlobPath(ds[0])
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("bit rot"), 0o644)
	if _, err := f.FetchAll(context.Background(), reqs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := ix.requests.Load(); got != 3 {
		t.Errorf("corrupt blob: %d requests, want 3", got)
	}
	if got, err := c.ReadBlob(ds[0]); err != nil || string(got) != string(a) {
		t.Errorf("blob after repair: %q, %v", got, err)
	}
}

func TestFetchAllHashMismatch(t *testing.T) {
	ix, srv := newIndex(t)
	served := []byte("<html>a captive portal</html>")
	ix.add("/x-1.0-py3-none-any.whl", served)
	expected := sum([]byte("the real wheel"))
	url := srv.URL + "/x-1.0-py3-none-any.whl"
	c := openCache(t)
	f := &Fetcher{Cache: c}
	ds, err := f.FetchAll(context.Background(), []Request{{Name: "x", Version: "1.0", URL: url, SHA256: expected}})
	if err == nil {
		t.Fatal("accepted")
	}
	if ds != nil {
		t.Errorf("digests returned with an error: %v", ds)
	}
	for _, want := range []string{"fetch x 1.0 from " + url, "sha256 mismatch", expected, sum(served)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if files := casFiles(t, c); len(files) != 0 {
		t.Errorf("left in the cache: %q", files)
	}
	if ix.requests.Load() != 1 {
		t.Errorf("a mismatch was retried: %d requests", ix.requests.Load())
	}

	// Size: the lock's size is checked too.
	_, err = f.FetchAll(context.Background(), []Request{{Name: "x", Version: "1.0", URL: url, SHA256: sum(served), Size: 5}})
	if err == nil || !strings.Contains(err.Error(), "size mismatch: the lock says 5 bytes, the server sends 29") {
		t.Errorf("got %v", err)
	}
	if files := casFiles(t, c); len(files) != 0 {
		t.Errorf("left in the cache: %q", files)
	}
}

func TestFetchAllHTTPErrors(t *testing.T) {
	ix, srv := newIndex(t)
	ix.status["/broken-1.0-py3-none-any.whl"] = 500
	good := []byte("good")
	ix.add("/good-1.0-py3-none-any.whl", good)
	c := openCache(t)
	f := &Fetcher{Cache: c}
	reqs := []Request{
		{Name: "missing", Version: "1.0", URL: srv.URL + "/missing-1.0-py3-none-any.whl", SHA256: sum([]byte("m"))},
		{Name: "broken", Version: "1.0", URL: srv.URL + "/broken-1.0-py3-none-any.whl", SHA256: sum([]byte("b"))},
		{Name: "good", Version: "1.0", URL: srv.URL + "/good-1.0-py3-none-any.whl", SHA256: sum(good)},
	}
	_, err := f.FetchAll(context.Background(), reqs)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"fetch missing 1.0 from " + reqs[0].URL + ": HTTP 404 Not Found",
		"fetch broken 1.0 from " + reqs[1].URL + ": HTTP 500 Internal Server Error (tried twice)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	// 404 once, 500 twice (retried), good once: all tried despite failures.
	if got := ix.requests.Load(); got != 4 {
		t.Errorf("%d requests, want 4", got)
	}
	if !c.Has(cache.Sum(good)) {
		t.Error("the good wheel was not fetched")
	}

	// Bad lock entries are refused before any request.
	_, err = f.FetchAll(context.Background(), []Request{{Name: "nohash", Version: "1", URL: "https://x/y.whl"}, {Name: "md5", Version: "1", URL: "https://x/z.whl", SHA256: "md5:abc"}})
	if err == nil || !strings.Contains(err.Error(), "fetch nohash 1 from https://x/y.whl: the lock has no sha256") || !strings.Contains(err.Error(), "sha256 hashes only") {
		t.Errorf("got %v", err)
	}
}

func TestFetchAllRetriesNetworkErrorOnce(t *testing.T) {
	ix, srv := newIndex(t)
	body := []byte("flaky wheel")
	ix.add("/flaky.whl", body)
	var calls atomic.Int64
	ix.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if calls.Add(1) > 1 {
			return false
		}
		// Promise more than is sent, then drop the connection.
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("partial"))
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
		return true
	}
	c := openCache(t)
	ds, err := (&Fetcher{Cache: c}).FetchAll(context.Background(), []Request{{Name: "flaky", Version: "1", URL: srv.URL + "/flaky.whl", SHA256: sum(body)}})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || ds[0] != cache.Sum(body) {
		t.Errorf("%d calls, digest %s", calls.Load(), ds[0])
	}
}

func TestFetchAllStallTimeout(t *testing.T) {
	ix, srv := newIndex(t)
	ix.hook = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("some"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return true
	}
	c := openCache(t)
	start := time.Now()
	_, err := (&Fetcher{Cache: c, StallTimeout: 100 * time.Millisecond}).FetchAll(context.Background(),
		[]Request{{Name: "slow", Version: "3", URL: srv.URL + "/slow.whl", SHA256: sum([]byte("x"))}})
	if err == nil || !strings.Contains(err.Error(), "fetch slow 3 from "+srv.URL+"/slow.whl: timed out: no data for 100ms (tried twice)") {
		t.Errorf("got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if ix.requests.Load() != 2 {
		t.Errorf("%d requests", ix.requests.Load())
	}
	if files := casFiles(t, c); len(files) != 0 {
		t.Errorf("left in the cache: %q", files)
	}
}

func TestFetchAllCancel(t *testing.T) {
	ix, srv := newIndex(t)
	ix.delay = 10 * time.Second
	ix.hook = func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := (&Fetcher{Cache: openCache(t)}).FetchAll(ctx, []Request{{Name: "c", Version: "1", URL: srv.URL + "/c.whl", SHA256: sum(nil)}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

func TestFetchAllParallelBound(t *testing.T) {
	ix, srv := newIndex(t)
	ix.delay = 30 * time.Millisecond
	var reqs []Request
	for i := range 20 {
		body := []byte(fmt.Sprintf("wheel %d", i))
		p := fmt.Sprintf("/w%d-1.0-py3-none-any.whl", i)
		ix.add(p, body)
		reqs = append(reqs, Request{Name: fmt.Sprint("w", i), Version: "1.0", URL: srv.URL + p, SHA256: sum(body)})
	}
	if _, err := (&Fetcher{Cache: openCache(t), Parallel: 3}).FetchAll(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	if m := ix.maxSeen.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d requests in flight, want 3 (2 tolerated)", m)
	}
	if ix.requests.Load() != 20 {
		t.Errorf("%d requests", ix.requests.Load())
	}

	// Default bound.
	ix2, srv2 := newIndex(t)
	ix2.delay = 30 * time.Millisecond
	for i := range reqs {
		ix2.add(fmt.Sprintf("/w%d-1.0-py3-none-any.whl", i), []byte(fmt.Sprintf("wheel %d", i)))
		reqs[i].URL = strings.Replace(reqs[i].URL, srv.URL, srv2.URL, 1)
	}
	if _, err := (&Fetcher{Cache: openCache(t)}).FetchAll(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	if m := ix2.maxSeen.Load(); m > DefaultParallel || m < 4 {
		t.Errorf("default: %d in flight", m)
	}
}

func TestFetchAllMirror(t *testing.T) {
	ix, srv := newIndex(t)
	body := []byte("mirrored wheel")
	ix.add("/pypi/packages/ab/cd/ef0123/fastapi-0.110.0-py3-none-any.whl", body)
	c := openCache(t)
	f := &Fetcher{Cache: c, Index: srv.URL + "/pypi/simple/"}
	req := Request{Name: "fastapi", Version: "0.110.0", URL: "https://files.pythonhosted.org/packages/ab/cd/ef0123/fastapi-0.110.0-py3-none-any.whl", SHA256: sum(body)}
	ds, err := f.FetchAll(context.Background(), []Request{req})
	if err != nil {
		t.Fatal(err)
	}
	if ds[0] != cache.Sum(body) || ix.requests.Load() != 1 {
		t.Errorf("digest %s, %d requests", ds[0], ix.requests.Load())
	}
	// Errors show both the mirror URL and the lock's.
	req.URL = strings.Replace(req.URL, "fastapi-0.110.0", "fastapi-0.111.0", 1)
	req.Version = "0.111.0"
	req.SHA256 = sum([]byte("fastapi 0.111.0"))
	_, err = f.FetchAll(context.Background(), []Request{req})
	want := "fetch fastapi 0.111.0 from " + srv.URL + "/pypi/packages/ab/cd/ef0123/fastapi-0.111.0-py3-none-any.whl (mirror of " + req.URL + "): HTTP 404"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// noNetwork fails any request: the offline index must not touch the network.
type noNetwork struct{ t *testing.T }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("network request to %s", r.URL)
	return nil, errors.New("offline")
}

func TestFetchAllFileIndex(t *testing.T) {
	dir := t.TempDir()
	body := []byte("offline wheel")
	os.WriteFile(filepath.Join(dir, "torch-2.0.0+cpu-cp312-cp312-linux_x86_64.whl"), body, 0o644)
	c := openCache(t)
	f := &Fetcher{Cache: c, Index: "file://" + dir, Client: &http.Client{Transport: noNetwork{t}}}
	req := Request{Name: "torch", Version: "2.0.0+cpu", URL: "https://download.pytorch.org/whl/cpu/torch-2.0.0%2Bcpu-cp312-cp312-linux_x86_64.whl", SHA256: sum(body)}
	ds, err := f.FetchAll(context.Background(), []Request{req})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadBlob(ds[0]); err != nil || string(got) != string(body) {
		t.Errorf("%q, %v", got, err)
	}
	req.URL = "https://files.pythonhosted.org/packages/aa/bb/absent-1.0-py3-none-any.whl"
	req.Name, req.Version = "absent", "1.0"
	req.SHA256 = sum([]byte("absent wheel"))
	_, err = f.FetchAll(context.Background(), []Request{req})
	if err == nil || !strings.Contains(err.Error(), "fetch absent 1.0 from file://"+dir+"/absent-1.0-py3-none-any.whl (mirror of "+req.URL+")") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
	// A mismatch from a file index leaves nothing either.
	os.WriteFile(filepath.Join(dir, "absent-1.0-py3-none-any.whl"), []byte("other"), 0o644)
	_, err = f.FetchAll(context.Background(), []Request{req})
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("got %v", err)
	}
	if files := casFiles(t, c); len(files) != 1 {
		t.Errorf("cache holds %q", files)
	}
}

func TestRewriteURL(t *testing.T) {
	const pypi = "https://files.pythonhosted.org/packages/ab/cd/ef0123/pydantic_core-2.16.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
	const tail = "/packages/ab/cd/ef0123/pydantic_core-2.16.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
	cases := []struct{ url, index, want, err string }{
		{pypi, "", pypi, ""},
		{pypi, "https://mirror.corp", "https://mirror.corp" + tail, ""},
		{pypi, "https://mirror.corp/", "https://mirror.corp" + tail, ""},
		{pypi, "http://10.0.0.5:8080/api/pypi/pypi-remote/simple", "http://10.0.0.5:8080/api/pypi/pypi-remote" + tail, ""},
		{pypi, "https://mirror.corp/pypi/simple/", "https://mirror.corp/pypi" + tail, ""},
		{pypi, "https://user:tok@mirror.corp/pypi", "https://user:tok@mirror.corp/pypi" + tail, ""},
		{pypi + "#sha256=abc", "https://m", "https://m" + tail, ""},
		{"https://download.pytorch.org/whl/cpu/torch-2.0.0%2Bcpu-cp312-cp312-linux_x86_64.whl", "https://m/base",
			"https://m/base/whl/cpu/torch-2.0.0%2Bcpu-cp312-cp312-linux_x86_64.whl", ""},
		{"https://host/dl?file=x.whl", "https://m", "https://m/dl?file=x.whl", ""},
		{"file:///work/wheels/x-1.0-py3-none-any.whl", "https://m", "file:///work/wheels/x-1.0-py3-none-any.whl", ""},
		{pypi, "file:///srv/wheels", "file:///srv/wheels/pydantic_core-2.16.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ""},
		{pypi, "file:///srv/wheels/", "file:///srv/wheels/pydantic_core-2.16.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ""},
		{"https://h/torch-2.0.0%2Bcpu-cp312-cp312-linux_x86_64.whl", "file:///srv/my wheels", "file:///srv/my%20wheels/torch-2.0.0+cpu-cp312-cp312-linux_x86_64.whl", ""},
		{"https://h/packages/", "file:///srv", "", "names no wheel file"},
		{pypi, "mirror.corp", "", `python index "mirror.corp": want an http(s):// base URL or file:///dir`},
		{pypi, "ftp://mirror.corp", "", "want an http(s)://"},
		{pypi, "https://u:secret@/x", "", `python index "https://xxxxx@/x"`},
		{pypi, "file://", "", "want file:///path/to/dir"},
	}
	for _, c := range cases {
		got, err := RewriteURL(c.url, c.index)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("RewriteURL(%q, %q) = %q, %v; want error %q", c.url, c.index, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("RewriteURL(%q, %q) = %q, %v\nwant %q", c.url, c.index, got, err, c.want)
		}
	}
	// A relative directory is made absolute.
	got, err := RewriteURL(pypi, "file://wheels")
	wd, _ := os.Getwd()
	if err != nil || got != "file://"+filepath.Join(wd, "wheels")+"/pydantic_core-2.16.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" {
		t.Errorf("relative: %q, %v", got, err)
	}
}

func TestParseSHA256(t *testing.T) {
	h := sum([]byte("x"))
	for _, s := range []string{h, "sha256:" + h, "SHA256:" + strings.ToUpper(h)} {
		if d, err := ParseSHA256(s); err != nil || d.String() != h {
			t.Errorf("%q: %v %v", s, d, err)
		}
	}
	for _, s := range []string{"", "sha256:", "md5:" + h, h[:10], "sha256:" + h + "00"} {
		if _, err := ParseSHA256(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
