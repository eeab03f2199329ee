package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// remoteSample stores the outputs of a representative action in c: plain
// and executable files, an empty file, two files with the same content, an
// output directory with nested subdirectories and symlinks.
func remoteSample(t testing.TB, c *Cache) *ActionResult {
	t.Helper()
	files := []struct {
		path string
		data string
		exec bool
	}{
		{"pkg/out.txt", "hello\n", false},
		{"pkg/tool", "#!/bin/sh\necho hi\n", true},
		{"pkg/empty", "", false},
		{"pkg/site/index.html", "<h1>hi</h1>", false},
		{"pkg/site/assets/app.js", "console.log(1)", false},
		{"pkg/site/assets/img/logo.png", "\x89PNG not really", false},
		{"pkg/site/assets/copy.txt", "hello\n", false},
		{"pkg/site/bin/run", "#!/bin/sh\n", true},
		{"pkg/site.a", "sorts between site and site/", false},
	}
	r := &ActionResult{Dirs: []string{"pkg/site"}, DurationMs: 1234,
		Symlinks: map[string]string{
			"pkg/site/current":     "index.html",
			"pkg/site/assets/up":   "../index.html",
			"pkg/site/assets/img2": "img",
		}}
	for _, f := range files {
		d, err := c.PutBytes([]byte(f.data))
		if err != nil {
			t.Fatal(err)
		}
		r.Outputs = append(r.Outputs, OutputFile{Path: f.path, Digest: d, Size: int64(len(f.data)), Executable: f.exec})
	}
	return r
}

// canonical is r as a remote returns it: Outputs sorted by path.
func canonical(r *ActionResult) *ActionResult {
	c := *r
	c.Outputs = append([]OutputFile(nil), r.Outputs...)
	sort.Slice(c.Outputs, func(i, j int) bool { return c.Outputs[i].Path < c.Outputs[j].Path })
	if len(c.Symlinks) == 0 {
		c.Symlinks = nil
	}
	return &c
}

// encodeDecode runs r through the REAPI mapping and the wire format.
func encodeDecode(t *testing.T, r *ActionResult) *ActionResult {
	t.Helper()
	ar, blobs, err := toREAPI(r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wire, err := marshalDet(ar)
	if err != nil {
		t.Fatal(err)
	}
	back := &repb.ActionResult{}
	if err := proto.Unmarshal(wire, back); err != nil {
		t.Fatal(err)
	}
	trees := map[Digest][]byte{}
	for _, b := range blobs {
		if Sum(b.data) != b.digest {
			t.Fatalf("tree blob named %s hashes to %s", b.digest, Sum(b.data))
		}
		trees[b.digest] = b.data
	}
	got, err := fromREAPI(back, trees)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestREAPIRoundTrip(t *testing.T) {
	r := remoteSample(t, openTemp(t))
	got := encodeDecode(t, r)
	if want := canonical(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the result:\n got %+v\nwant %+v", got, want)
	}
	// Already canonical input comes back identical, field for field.
	if again := encodeDecode(t, got); !reflect.DeepEqual(again, got) {
		t.Fatalf("second round trip differs:\n got %+v\nwant %+v", again, got)
	}
}

func TestREAPIShape(t *testing.T) {
	r := remoteSample(t, openTemp(t))
	r.Symlinks["pkg/latest"] = "out.txt" // outside every output directory
	ar, blobs, err := toREAPI(r, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range ar.OutputFiles {
		files = append(files, f.Path)
	}
	if want := []string{"pkg/out.txt", "pkg/tool", "pkg/empty", "pkg/site.a"}; !reflect.DeepEqual(files, want) {
		t.Errorf("output_files = %v, want %v", files, want)
	}
	if len(ar.OutputSymlinks) != 1 || ar.OutputSymlinks[0].Path != "pkg/latest" || ar.OutputSymlinks[0].Target != "out.txt" {
		t.Errorf("output_symlinks = %v", ar.OutputSymlinks)
	}
	if len(ar.OutputDirectories) != 1 || len(blobs) != 1 {
		t.Fatalf("output_directories = %v, %d tree blobs", ar.OutputDirectories, len(blobs))
	}
	od := ar.OutputDirectories[0]
	tree := &repb.Tree{}
	if err := proto.Unmarshal(blobs[0].data, tree); err != nil {
		t.Fatal(err)
	}
	if od.TreeDigest.Hash != blobs[0].digest.String() || od.TreeDigest.SizeBytes != int64(len(blobs[0].data)) {
		t.Errorf("tree_digest %v does not name the tree blob", od.TreeDigest)
	}
	rootBytes, _ := marshalDet(tree.Root)
	if od.RootDirectoryDigest.Hash != Sum(rootBytes).String() {
		t.Errorf("root_directory_digest does not match the tree's root")
	}
	var names []string
	for _, f := range tree.Root.Files {
		names = append(names, f.Name)
	}
	for _, d := range tree.Root.Directories {
		names = append(names, d.Name+"/")
	}
	for _, s := range tree.Root.Symlinks {
		names = append(names, s.Name+"@"+s.Target)
	}
	if want := []string{"index.html", "assets/", "bin/", "current@index.html"}; !reflect.DeepEqual(names, want) {
		t.Errorf("tree root = %v, want %v", names, want)
	}
	if len(tree.Children) != 3 { // assets, assets/img, bin
		t.Errorf("tree has %d children, want 3", len(tree.Children))
	}
	m := ar.ExecutionMetadata
	if got := m.ExecutionCompletedTimestamp.AsTime().Sub(m.ExecutionStartTimestamp.AsTime()); got != 1234*time.Millisecond {
		t.Errorf("execution timestamps span %s, want 1.234s", got)
	}
	if ar.ExitCode != 0 || m.Worker != "pipe" {
		t.Errorf("exit_code %d worker %q", ar.ExitCode, m.Worker)
	}
}

func TestREAPINestedAndEmptyDirs(t *testing.T) {
	c := openTemp(t)
	d, _ := c.PutBytes([]byte("x"))
	r := &ActionResult{
		Dirs: []string{"out", "out/inner", "empty"},
		Outputs: []OutputFile{
			{Path: "out/a", Digest: d, Size: 1},
			{Path: "out/inner/b", Digest: d, Size: 1, Executable: true},
		},
		DurationMs: 0,
	}
	if got, want := encodeDecode(t, r), canonical(r); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestREAPIRejectsUnsafeEntries(t *testing.T) {
	dg := toPBDigest(Sum([]byte("x")), 1)
	for name, ar := range map[string]*repb.ActionResult{
		"parent path":   {OutputFiles: []*repb.OutputFile{{Path: "../etc/passwd", Digest: dg}}},
		"absolute path": {OutputFiles: []*repb.OutputFile{{Path: "/etc/passwd", Digest: dg}}},
		"unclean path":  {OutputFiles: []*repb.OutputFile{{Path: "a/../../b", Digest: dg}}},
		"symlink path":  {OutputSymlinks: []*repb.OutputSymlink{{Path: "../x", Target: "y"}}},
		"bad digest":    {OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}},
		"upper hex":     {OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: strings.ToUpper(dg.Hash), SizeBytes: 1}}}},
		"no digest":     {OutputFiles: []*repb.OutputFile{{Path: "a"}}},
		"conflict":      {OutputFiles: []*repb.OutputFile{{Path: "a", Digest: dg}, {Path: "a", Digest: dg, IsExecutable: true}}},
		"beneath link": {
			OutputSymlinks: []*repb.OutputSymlink{{Path: "out/etc", Target: "/etc"}},
			OutputFiles:    []*repb.OutputFile{{Path: "out/etc/cron.d/x", Digest: dg}},
		},
	} {
		if _, err := fromREAPI(ar, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A tree entry named ".." must not climb out of its directory.
	tree := &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "..", Digest: dg}}}}
	data, _ := marshalDet(tree)
	td := Sum(data)
	ar := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: toPBDigest(td, int64(len(data)))}}}
	if _, err := fromREAPI(ar, map[Digest][]byte{td: data}); err == nil {
		t.Error("tree entry '..' accepted")
	}
}

func TestSignVerify(t *testing.T) {
	key, other := []byte("k1-secret"), []byte("k2-secret")
	action := ActionKey(Sum([]byte("action")))
	r := remoteSample(t, openTemp(t))
	signed := func(k []byte) *repb.ActionResult {
		ar, _, err := toREAPI(r, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if k != nil {
			if err := signResult(k, action, ar); err != nil {
				t.Fatal(err)
			}
		}
		// Verify what a reader would parse, after a non-deterministic
		// re-encoding such as a server might do.
		b, err := proto.Marshal(ar)
		if err != nil {
			t.Fatal(err)
		}
		back := &repb.ActionResult{}
		if err := proto.Unmarshal(b, back); err != nil {
			t.Fatal(err)
		}
		return back
	}
	if err := verifyResult(key, action, signed(key)); err != nil {
		t.Errorf("own signature: %v", err)
	}
	if err := verifyResult(key, action, signed(nil)); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	if err := verifyResult(key, action, signed(other)); !errors.Is(err, ErrOtherKey) {
		t.Errorf("other key: %v", err)
	}
	if err := verifyResult(key, ActionKey(Sum([]byte("another action"))), signed(key)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("entry moved to another action key: %v", err)
	}
	tampered := signed(key)
	tampered.OutputFiles[0].IsExecutable = !tampered.OutputFiles[0].IsExecutable
	if err := verifyResult(key, action, tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered: %v", err)
	}
	tampered = signed(key)
	tampered.OutputDirectories[0].TreeDigest.Hash = Sum([]byte("evil tree")).String()
	if err := verifyResult(key, action, tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tree swapped: %v", err)
	}
}

// recorder collects warnings.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *recorder) warn(m string) {
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	w.mu.Unlock()
}

func (w *recorder) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// expectWarnings fails unless exactly n warnings were given, each
// containing every one of words.
func (w *recorder) expect(t *testing.T, n int, words ...string) {
	t.Helper()
	got := w.list()
	for _, m := range got {
		t.Logf("warning: %s", m)
	}
	if len(got) != n {
		t.Fatalf("%d warnings, want %d: %q", len(got), n, got)
	}
	for _, m := range got {
		for _, word := range words {
			if !strings.Contains(m, word) {
				t.Errorf("warning %q does not mention %q", m, word)
			}
		}
	}
}

// remoteSetup is one real store reached two ways: directly, and through a
// faultProxy that counts and can break the traffic.
type remoteSetup struct {
	direct  Backend
	proxied Backend
	proxy   *faultProxy
}

func setupNginx(t *testing.T) *remoteSetup {
	ng := testenv.StartNginx(t, "")
	p := newFaultProxy(t, ng.URL)
	direct, err := NewHTTPBackend(ng.URL+"/cache", nil)
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := NewHTTPBackend(p.URL+"/cache", nil)
	if err != nil {
		t.Fatal(err)
	}
	return &remoteSetup{direct, proxied, p}
}

func setupS3(t *testing.T, server string) *remoteSetup {
	s := testenv.SharedS3(t, server)
	bucket := s.NewBucket(t)
	p := newFaultProxy(t, s.Endpoint)
	return &remoteSetup{s3backend(t, s, bucket, "ci/cache", ""), s3backend(t, s, bucket, "ci/cache", p.URL), p}
}

// eachBackend runs f against every real store.
func eachBackend(t *testing.T, f func(t *testing.T, s *remoteSetup)) {
	t.Run("nginx", func(t *testing.T) { f(t, setupNginx(t)) })
	t.Run("minio", func(t *testing.T) { f(t, setupS3(t, "minio")) })
	t.Run("moto", func(t *testing.T) { f(t, setupS3(t, "moto")) })
}

func newReader(t *testing.T, b Backend, opt RemoteOptions) (*Remote, *Cache, *recorder) {
	t.Helper()
	c := openTemp(t)
	w := &recorder{}
	opt.Warn = w.warn
	return NewRemote(c, b, opt), c, w
}

// checkBlobs verifies every output of r is in c with the right bytes.
func checkBlobs(t *testing.T, c *Cache, r *ActionResult) {
	t.Helper()
	for _, o := range r.Outputs {
		b, err := c.ReadBlob(o.Digest)
		if err != nil {
			t.Errorf("%s: %v", o.Path, err)
			continue
		}
		if int64(len(b)) != o.Size {
			t.Errorf("%s: %d bytes, want %d", o.Path, len(b), o.Size)
		}
	}
}

func TestRemoteRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *remoteSetup) {
		ctx := context.Background()
		key := ActionKey(Sum([]byte("action 1")))
		writerCache := openTemp(t)
		res := remoteSample(t, writerCache)
		ww := &recorder{}
		writer := NewRemote(writerCache, s.proxied, RemoteOptions{Upload: true, AcceptCached: true, Warn: ww.warn})
		writer.Upload(ctx, key, res)
		writer.Wait(ctx)
		ww.expect(t, 0)
		if s.proxy.count("PUT", "ac") != 1 || s.proxy.count("PUT", "cas") == 0 {
			t.Fatalf("upload made %d AC and %d CAS PUTs", s.proxy.count("PUT", "ac"), s.proxy.count("PUT", "cas"))
		}
		if st := writer.Stats(); st.BytesUp == 0 {
			t.Errorf("writer stats %+v", st)
		}

		reader, readerCache, rw := newReader(t, s.proxied, RemoteOptions{AcceptCached: true})
		got, ok := reader.Fetch(ctx, key)
		rw.expect(t, 0)
		if !ok {
			t.Fatal("Fetch missed an uploaded result")
		}
		if want := canonical(res); !reflect.DeepEqual(got, want) {
			t.Fatalf("fetched %+v\nwant %+v", got, want)
		}
		checkBlobs(t, readerCache, res)
		if st := reader.Stats(); st.Hits != 1 || st.Misses != 0 || st.BytesDown == 0 {
			t.Errorf("reader stats %+v", st)
		}
		if _, ok := reader.Fetch(ctx, ActionKey(Sum([]byte("never built")))); ok {
			t.Error("Fetch of an unknown key hit")
		}
		if st := reader.Stats(); st.Misses != 1 {
			t.Errorf("after a miss: stats %+v", st)
		}
		rw.expect(t, 0)

		// A second writer finds the blobs present and writes only the AC.
		casPuts := s.proxy.count("PUT", "cas")
		again := NewRemote(openTemp(t), s.proxied, RemoteOptions{Upload: true, Warn: ww.warn})
		againRes := remoteSample(t, again.local)
		again.Upload(ctx, ActionKey(Sum([]byte("action 2"))), againRes)
		again.Wait(ctx)
		ww.expect(t, 0)
		if n := s.proxy.count("PUT", "cas"); n != casPuts {
			t.Errorf("re-upload of present blobs made %d CAS PUTs", n-casPuts)
		}
	})
}

func TestRemoteReadOnlyNeverWrites(t *testing.T) {
	s := setupNginx(t)
	ctx := context.Background()
	r, c, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: true})
	res := remoteSample(t, c)
	r.Upload(ctx, ActionKey(Sum([]byte("a"))), res)
	r.Wait(ctx)
	r.Fetch(ctx, ActionKey(Sum([]byte("a"))))
	r.Upload(ctx, ActionKey(Sum([]byte("a"))), res)
	r.Wait(ctx)
	if n := s.proxy.count("PUT", ""); n != 0 {
		t.Fatalf("read-only remote made %d PUTs", n)
	}
	if n := s.proxy.count("", ""); n != 1 {
		t.Fatalf("read-only remote made %d requests, want the one AC GET", n)
	}
	w.expect(t, 0)
}

func TestRemoteAcceptCachedFalseNeverReads(t *testing.T) {
	s := setupNginx(t)
	ctx := context.Background()
	key := ActionKey(Sum([]byte("a")))
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true})
	writer.Upload(ctx, key, remoteSample(t, writer.local))
	writer.Wait(ctx)
	r, _, w := newReader(t, s.proxied, RemoteOptions{AcceptCached: false})
	for range 3 {
		if _, ok := r.Fetch(ctx, key); ok {
			t.Fatal("Fetch hit with AcceptCached=false")
		}
	}
	if n := s.proxy.count("", ""); n != 0 {
		t.Fatalf("AcceptCached=false made %d requests", n)
	}
	if st := r.Stats(); st != (RemoteStats{}) {
		t.Errorf("stats %+v", st)
	}
	w.expect(t, 0)
}

func TestRemoteSigning(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *remoteSetup) {
		ctx := context.Background()
		keyA, keyB := []byte("key A"), []byte("key B")
		upload := func(name string, signing []byte) ActionKey {
			action := ActionKey(Sum([]byte(name)))
			w := &recorder{}
			r := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true, SigningKey: signing, Warn: w.warn})
			r.Upload(ctx, action, remoteSample(t, r.local))
			r.Wait(ctx)
			w.expect(t, 0)
			return action
		}
		unsigned, byA, byB := upload("unsigned", nil), upload("by A", keyA), upload("by B", keyB)

		t.Run("reader with key rejects unsigned", func(t *testing.T) {
			r, c, w := newReader(t, s.direct, RemoteOptions{AcceptCached: true, SigningKey: keyA})
			for range 3 {
				if _, ok := r.Fetch(ctx, unsigned); ok {
					t.Fatal("unsigned entry accepted")
				}
			}
			w.expect(t, 1, "not signed", "PIPE_REMOTE_CACHE_KEY")
			if ents, _ := os.ReadDir(filepath.Join(c.Dir(), "cas")); len(ents) != 0 {
				t.Errorf("a rejected entry's blobs were downloaded: %d", len(ents))
			}
		})
		t.Run("reader with key rejects another key", func(t *testing.T) {
			r, _, w := newReader(t, s.direct, RemoteOptions{AcceptCached: true, SigningKey: keyA})
			for range 3 {
				if _, ok := r.Fetch(ctx, byB); ok {
					t.Fatal("entry signed with another key accepted")
				}
			}
			w.expect(t, 1, "different key")
			// Its own entries still work after the warning.
			if _, ok := r.Fetch(ctx, byA); !ok {
				t.Fatal("own signed entry rejected")
			}
			w.expect(t, 1)
		})
		t.Run("reader without key accepts signed", func(t *testing.T) {
			r, _, w := newReader(t, s.direct, RemoteOptions{AcceptCached: true})
			if _, ok := r.Fetch(ctx, byA); !ok {
				t.Fatal("signed entry rejected by a reader without a key")
			}
			w.expect(t, 0)
		})
		t.Run("tampered entry", func(t *testing.T) {
			raw, err := s.direct.GetAC(ctx, byA)
			if err != nil {
				t.Fatal(err)
			}
			ar := &repb.ActionResult{}
			if err := proto.Unmarshal(raw, ar); err != nil {
				t.Fatal(err)
			}
			// The poisoner points an output at content of their choosing.
			evil := []byte("evil")
			ar.OutputFiles[0].Digest = toPBDigest(Sum(evil), int64(len(evil)))
			if err := s.direct.PutCAS(ctx, SizedDigest{Sum(evil), int64(len(evil))}, bytes.NewReader(evil)); err != nil {
				t.Fatal(err)
			}
			poisoned, _ := proto.Marshal(ar)
			if err := s.direct.PutAC(ctx, byA, poisoned); err != nil {
				t.Fatal(err)
			}
			r, c, w := newReader(t, s.direct, RemoteOptions{AcceptCached: true, SigningKey: keyA})
			if _, ok := r.Fetch(ctx, byA); ok {
				t.Fatal("tampered entry accepted")
			}
			w.expect(t, 1, "does not match")
			if c.Has(Sum(evil)) {
				t.Error("the poisoned blob entered the local cache")
			}
		})
	})
}

// genReader yields size deterministic pseudo-random bytes without holding
// them: large-blob tests must stream.
type genReader struct {
	state uint64
	left  int64
}

func newGen(seed uint64, size int64) *genReader { return &genReader{state: seed | 1, left: size} }

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	for i := range p {
		g.state ^= g.state << 13
		g.state ^= g.state >> 7
		g.state ^= g.state << 17
		p[i] = byte(g.state)
	}
	g.left -= int64(len(p))
	return len(p), nil
}

func genDigest(seed uint64, size int64) Digest {
	h := sha256.New()
	io.Copy(h, newGen(seed, size))
	var d Digest
	h.Sum(d[:0])
	return d
}

// hashWriter counts and hashes, holding nothing.
type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return w.h.Write(p) }

func TestRemoteLargeBlobStreams(t *testing.T) {
	const size = 64 << 20
	eachBackend(t, func(t *testing.T, s *remoteSetup) {
		if strings.Contains(t.Name(), "moto") {
			t.Skip("moto keeps objects in memory; 64 MB adds nothing over MinIO")
		}
		ctx := context.Background()
		d := genDigest(42, size)

		// The backend streams an unseekable body up and down.
		if err := s.direct.PutCAS(ctx, SizedDigest{d, size}, newGen(42, size)); err != nil {
			t.Fatal(err)
		}
		if has, err := hasBlob(ctx, s.direct, SizedDigest{d, size}); err != nil || !has {
			t.Fatalf("HasCAS = %v, %v", has, err)
		}
		hw := &hashWriter{h: sha256.New()}
		if n, err := s.direct.GetCAS(ctx, SizedDigest{d, size}, hw); err != nil || n != size {
			t.Fatalf("GetCAS = %d, %v", n, err)
		}
		var got Digest
		hw.h.Sum(got[:0])
		if got != d {
			t.Fatal("GetCAS returned other bytes")
		}

		// Through Remote: upload from one local cache, fetch into another.
		writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true})
		d2, n, err := writer.local.PutReader(newGen(7, size))
		if err != nil || n != size {
			t.Fatal(n, err)
		}
		res := &ActionResult{Outputs: []OutputFile{{Path: "big.bin", Digest: d2, Size: size}}}
		w := &recorder{}
		writer.opt.Warn = w.warn
		writer.Upload(ctx, ActionKey(Sum([]byte("big"))), res)
		writer.Wait(ctx)
		w.expect(t, 0)
		reader, c, rw := newReader(t, s.direct, RemoteOptions{AcceptCached: true, Timeout: 2 * time.Second})
		if _, ok := reader.Fetch(ctx, ActionKey(Sum([]byte("big")))); !ok {
			t.Fatalf("large blob not fetched: %q", rw.list())
		}
		checkBlobs(t, c, res)
		if st := reader.Stats(); st.BytesDown < size {
			t.Errorf("BytesDown = %d", st.BytesDown)
		}
	})
}

func TestOpenRemoteURLs(t *testing.T) {
	ctx := context.Background()
	c := openTemp(t)
	for _, bad := range []string{"ftp://host/x", "host/x", "grpc://host:8980/instance", "grpcs://", "grpc://h:1?x=1", "s3:///prefix", "http://", "http://h/x?y=1", "%zz"} {
		if _, err := OpenRemote(ctx, c, bad, RemoteOptions{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []struct{ url, shown string }{
		{"grpc://cache.example:8980", "grpc://cache.example:8980"},
		{"grpcs://remote.example", "grpcs://remote.example:443"},
		{"GRPC://[::1]:9092/", "grpc://[::1]:9092"},
	} {
		r, err := OpenRemote(ctx, c, good.url, RemoteOptions{})
		if err != nil {
			t.Errorf("%q: %v", good.url, err)
			continue
		}
		if s := r.Backend().String(); s != good.shown {
			t.Errorf("%q shown as %q, want %q", good.url, s, good.shown)
		}
		r.Close(ctx)
	}
	// An instance name means nothing to the other stores.
	if _, err := OpenRemote(ctx, c, "http://h/x", RemoteOptions{Endpoint: Endpoint{InstanceName: "main"}}); err == nil || !strings.Contains(err.Error(), "instance name") {
		t.Errorf("instance name on http: %v", err)
	}
	r, err := OpenRemote(ctx, c, "https://ci:hunter2@cache.example.com/pipe/", RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Backend().String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "cache.example.com/pipe") {
		t.Errorf("String() = %q", s)
	}
	r, err = OpenRemote(ctx, c, "s3://bucket/some/prefix", RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var zero Digest
	if b := r.Backend().(*s3Backend); b.bucket != "bucket" || b.key(casEntry(zero)) != "some/prefix/cas/"+zero.String() {
		t.Errorf("bucket %q key %q", b.bucket, b.key(casEntry(zero)))
	}
}

// hasBlob asks b whether it holds blob.
func hasBlob(ctx context.Context, b Backend, blob SizedDigest) (bool, error) {
	missing, err := b.FindMissing(ctx, []SizedDigest{blob})
	return err == nil && len(missing) == 0, err
}
