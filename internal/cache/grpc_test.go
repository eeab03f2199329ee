package cache

// Tests of the REAPI gRPC backend against bazel-remote, a real REAPI cache
// server, directly and through testenv.GRPCProxy (a test double that
// counts calls and injects faults).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/pipebuild/pipe/internal/testenv"
)

// grpcSetup is one bazel-remote reached directly and through a proxy.
type grpcSetup struct {
	server  *testenv.BazelRemote
	proxy   *testenv.GRPCProxy
	direct  Backend
	proxied Backend
}

func newGRPC(t testing.TB, url string, ep Endpoint) Backend {
	t.Helper()
	b, err := NewGRPCBackend(url, ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.(io.Closer).Close() })
	return b
}

func setupGRPC(t testing.TB) *grpcSetup {
	t.Helper()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	p := testenv.NewGRPCProxy(t, srv.GRPCAddr)
	return &grpcSetup{srv, p, newGRPC(t, "grpc://"+srv.GRPCAddr, Endpoint{}), newGRPC(t, "grpc://"+p.Addr, Endpoint{})}
}

func TestGRPCBackend(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()
	b := s.direct
	key := ActionKey(Sum([]byte("grpc backend")))
	if _, err := b.GetAC(ctx, key); !errors.Is(err, ErrMiss) {
		t.Fatalf("GetAC of an absent key: %v", err)
	}
	caps, err := b.(*grpcBackend).capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.zstd || !caps.zstdBatch || !caps.acUpdate || caps.batchLimit != defaultBatchLimit {
		t.Errorf("bazel-remote's capabilities read as %+v", caps)
	}

	small := []BlobData{}
	for _, s := range []string{"one", "two", strings.Repeat("compressible ", 1000)} {
		small = append(small, BlobData{SizedDigest{Sum([]byte(s)), int64(len(s))}, []byte(s)})
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 6<<20/16) // over the batch limit
	bigD := SizedDigest{Sum(big), int64(len(big))}
	all := []SizedDigest{bigD}
	for _, s := range small {
		all = append(all, s.SizedDigest)
	}
	if m, err := b.FindMissing(ctx, all); err != nil || len(m) != len(all) {
		t.Fatalf("FindMissing on an empty store = %v, %v", m, err)
	}
	if err := b.(BatchBackend).PutCASBatch(ctx, small); err != nil {
		t.Fatal(err)
	}
	if err := b.PutCAS(ctx, bigD, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if m, err := b.FindMissing(ctx, all); err != nil || len(m) != 0 {
		t.Fatalf("FindMissing after upload = %v, %v", m, err)
	}
	got := map[SizedDigest]string{}
	err = b.(BatchBackend).GetCASBatch(ctx, all[1:], func(d SizedDigest, data []byte) error {
		got[d] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range small {
		if got[s.SizedDigest] != string(s.Data) {
			t.Errorf("batch read %s = %q", s.SizedDigest, got[s.SizedDigest])
		}
	}
	var buf bytes.Buffer
	if n, err := b.GetCAS(ctx, bigD, &buf); err != nil || n != bigD.Size || !bytes.Equal(buf.Bytes(), big) {
		t.Fatalf("GetCAS of the big blob: %d, %v", n, err)
	}
	// Uploading what the store holds is no error (the server may end the
	// stream early).
	if err := b.PutCAS(ctx, bigD, bytes.NewReader(big)); err != nil {
		t.Fatalf("second upload: %v", err)
	}
	absent := SizedDigest{Sum([]byte("absent")), 6}
	if _, err := b.GetCAS(ctx, absent, &buf); !errors.Is(err, ErrMiss) {
		t.Errorf("GetCAS of an absent blob: %v", err)
	}
	if err := b.(BatchBackend).GetCASBatch(ctx, []SizedDigest{absent}, func(SizedDigest, []byte) error { return nil }); !errors.Is(err, ErrMiss) {
		t.Errorf("GetCASBatch of an absent blob: %v", err)
	}
	if n, err := b.GetCAS(ctx, SizedDigest{emptyDigest, 0}, &buf); err != nil || n != 0 {
		t.Errorf("the empty blob: %d, %v", n, err)
	}
	// The server checks what it is given against the digest.
	lie := SizedDigest{Sum([]byte("other")), int64(len(big))}
	if err := b.PutCAS(ctx, lie, bytes.NewReader(big)); err == nil {
		t.Error("upload under a wrong digest accepted")
	}

	ar := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "big", Digest: toPBDigest(bigD.Digest, bigD.Size)}}}
	value, _ := marshalDet(ar)
	if err := b.PutAC(ctx, key, value); err != nil {
		t.Fatal(err)
	}
	v, err := b.GetAC(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	back := &repb.ActionResult{}
	if err := proto.Unmarshal(v, back); err != nil || back.OutputFiles[0].Digest.Hash != bigD.Digest.String() {
		t.Fatalf("GetAC = %v, %v", back, err)
	}
}

func TestGRPCResourceNames(t *testing.T) {
	b := &grpcBackend{instance: "team/main"}
	d := SizedDigest{Sum([]byte("x")), 1}
	if got, want := b.resource(d, false, false), "team/main/blobs/"+d.Digest.String()+"/1"; got != want {
		t.Errorf("read name %q, want %q", got, want)
	}
	if got, want := b.resource(d, false, true), "team/main/compressed-blobs/zstd/"+d.Digest.String()+"/1"; got != want {
		t.Errorf("compressed read name %q, want %q", got, want)
	}
	w := b.resource(d, true, false)
	parts := strings.Split(w, "/")
	if len(parts) != 7 || parts[2] != "uploads" || len(parts[3]) != 36 || parts[4] != "blobs" {
		t.Errorf("write name %q", w)
	}
	b.instance = ""
	if got := b.resource(d, false, false); !strings.HasPrefix(got, "blobs/") {
		t.Errorf("no instance: %q", got)
	}
}

func TestGRPCRemoteRoundTrip(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()
	key := ActionKey(Sum([]byte("action 1")))
	ww := &recorder{}
	writer := NewRemote(openTemp(t), s.proxied, RemoteOptions{Upload: true, AcceptCached: true, Warn: ww.warn})
	res := remoteSample(t, writer.local)
	writer.Upload(ctx, key, res)
	writer.Wait(ctx)
	ww.expect(t, 0)
	if s.proxy.Calls("GetCapabilities") != 1 || s.proxy.Calls("UpdateActionResult") != 1 || s.proxy.Calls("BatchUpdateBlobs") != 1 || s.proxy.Calls("ByteStream") != 0 {
		t.Errorf("upload calls: capabilities %d, AC %d, batches %d, streams %d",
			s.proxy.Calls("GetCapabilities"), s.proxy.Calls("UpdateActionResult"), s.proxy.Calls("BatchUpdateBlobs"), s.proxy.Calls("ByteStream"))
	}
	if st := writer.Stats(); st.Uploaded != 1 || st.BytesUp == 0 {
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
	if _, ok := reader.Fetch(ctx, ActionKey(Sum([]byte("never built")))); ok {
		t.Error("Fetch of an unknown key hit")
	}
	if st := reader.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Errorf("reader stats %+v", st)
	}
	rw.expect(t, 0)
	// Without Upload (--remote-upload) the reader never writes.
	before := s.proxy.Calls("")
	reader.Upload(ctx, ActionKey(Sum([]byte("reader's own"))), remoteSample(t, readerCache))
	reader.Close(ctx)
	if n := s.proxy.Calls("") - before; n != 0 {
		t.Errorf("a read-only remote made %d calls to upload", n)
	}

	// A second writer of the same outputs sends only the AC entry:
	// FindMissingBlobs says the blobs are there.
	batches := s.proxy.Calls("BatchUpdateBlobs")
	again := NewRemote(openTemp(t), s.proxied, RemoteOptions{Upload: true, Warn: ww.warn})
	again.Upload(ctx, ActionKey(Sum([]byte("action 2"))), remoteSample(t, again.local))
	again.Close(ctx)
	ww.expect(t, 0)
	if n := s.proxy.Calls("BatchUpdateBlobs") - batches; n != 0 || s.proxy.Calls("ByteStream/Write") != 0 {
		t.Errorf("re-upload of present blobs made %d batch calls", n)
	}
}

// A blob over the batch limit goes through ByteStream both ways, and the
// small ones of the same result through batches; zstd shrinks what travels.
func TestGRPCLargeBlobByteStream(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()
	writer := NewRemote(openTemp(t), s.proxied, RemoteOptions{Upload: true})
	res := remoteSample(t, writer.local)
	const size = 24 << 20
	compressible := bytes.Repeat([]byte("pipe builds serverless Python APIs\n"), size/35)
	bigD, n, err := writer.local.PutReader(bytes.NewReader(compressible))
	if err != nil {
		t.Fatal(err)
	}
	random, rn, err := writer.local.PutReader(newGen(9, 6<<20))
	if err != nil {
		t.Fatal(err)
	}
	res.Outputs = append(res.Outputs, OutputFile{Path: "pkg/big.txt", Digest: bigD, Size: n}, OutputFile{Path: "pkg/random.bin", Digest: random, Size: rn})
	key := ActionKey(Sum([]byte("large")))
	w := &recorder{}
	writer.opt.Warn = w.warn
	writer.Upload(ctx, key, res)
	writer.Close(ctx)
	w.expect(t, 0)
	if got := s.proxy.Calls("ByteStream/Write"); got != 2 {
		t.Errorf("%d ByteStream writes, want 2 (the two large blobs)", got)
	}
	if got := s.proxy.Calls("BatchUpdateBlobs"); got != 1 {
		t.Errorf("%d batch uploads, want 1 (the small blobs)", got)
	}
	up, _ := s.proxy.Bytes()
	if up > n/10+rn+1<<20 {
		t.Errorf("%d bytes went up for a %d-byte compressible blob and a %d-byte random one: not compressed?", up, n, rn)
	}

	reader, c, rw := newReader(t, s.proxied, RemoteOptions{AcceptCached: true, Timeout: 2 * time.Second})
	if _, ok := reader.Fetch(ctx, key); !ok {
		t.Fatalf("not fetched: %q", rw.list())
	}
	checkBlobs(t, c, res)
	if got := s.proxy.Calls("ByteStream/Read"); got != 2 {
		t.Errorf("%d ByteStream reads, want 2", got)
	}
	if st := reader.Stats(); st.BytesDown < n+rn {
		t.Errorf("BytesDown = %d", st.BytesDown)
	}
}

// The AC entry pipe writes over gRPC is the one bazel-remote serves over
// Bazel's HTTP protocol, and the other way round.
func TestGRPCInteropWithHTTP(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()
	signKey := []byte("interop key")
	key := ActionKey(Sum([]byte("interop")))
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true, SigningKey: signKey})
	res := remoteSample(t, writer.local)
	writer.Upload(ctx, key, res)
	writer.Close(ctx)

	viaGRPC, err := s.direct.GetAC(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.server.HTTPURL + "/ac/" + key.String())
	if err != nil {
		t.Fatal(err)
	}
	viaHTTP, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ac/%s: %s", key, resp.Status)
	}
	a, b := &repb.ActionResult{}, &repb.ActionResult{}
	if err := proto.Unmarshal(viaGRPC, a); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(viaHTTP, b); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(a, b) {
		t.Fatalf("the HTTP interface serves another ActionResult:\n%v\n%v", a, b)
	}
	if err := verifyResult(signKey, key, b); err != nil {
		t.Errorf("the entry read over HTTP: %v", err)
	}
	// Its blobs are where Bazel's HTTP protocol looks for them.
	for _, o := range res.Outputs[:1] {
		resp, err := http.Get(s.server.HTTPURL + "/cas/" + o.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if Sum(data) != o.Digest {
			t.Errorf("/cas/%s over HTTP: %s, other bytes", o.Digest, resp.Status)
		}
	}

	// pipe's HTTP backend writes, its gRPC backend reads.
	hb, err := NewHTTPBackend(s.server.HTTPURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	key2 := ActionKey(Sum([]byte("interop over http")))
	hw := NewRemote(openTemp(t), hb, RemoteOptions{Upload: true})
	res2 := remoteSample(t, hw.local)
	res2.Outputs[0] = OutputFile{Path: "pkg/out.txt", Digest: mustPut(t, hw.local, "written over HTTP"), Size: 17}
	hw.Upload(ctx, key2, res2)
	hw.Close(ctx)
	reader, c, rw := newReader(t, s.direct, RemoteOptions{AcceptCached: true})
	got, ok := reader.Fetch(ctx, key2)
	if !ok {
		t.Fatalf("gRPC read of an HTTP-written entry missed: %q", rw.list())
	}
	if !reflect.DeepEqual(got, canonical(res2)) {
		t.Errorf("got %+v", got)
	}
	checkBlobs(t, c, res2)
}

func mustPut(t *testing.T, c *Cache, s string) Digest {
	t.Helper()
	d, err := c.PutBytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGRPCSigning(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()
	key := ActionKey(Sum([]byte("signed")))
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true, SigningKey: []byte("ours")})
	writer.Upload(ctx, key, remoteSample(t, writer.local))
	writer.Close(ctx)
	r, _, w := newReader(t, s.direct, RemoteOptions{AcceptCached: true, SigningKey: []byte("ours")})
	if _, ok := r.Fetch(ctx, key); !ok {
		t.Fatalf("signed entry rejected: %q", w.list())
	}
	r, _, w = newReader(t, s.direct, RemoteOptions{AcceptCached: true, SigningKey: []byte("theirs")})
	if _, ok := r.Fetch(ctx, key); ok {
		t.Fatal("entry signed with another key accepted")
	}
	w.expect(t, 1, "different key")
}

// grpcFixture uploads a result with a 6 MiB random blob (streamed, so
// downloads can stall midway) straight to the server.
func grpcFixture(t *testing.T, s *grpcSetup) (ActionKey, *ActionResult) {
	t.Helper()
	writer := NewRemote(openTemp(t), s.direct, RemoteOptions{Upload: true})
	res := remoteSample(t, writer.local)
	big, n, err := writer.local.PutReader(newGen(5, 6<<20))
	if err != nil {
		t.Fatal(err)
	}
	res.Outputs = append(res.Outputs, OutputFile{Path: "pkg/big.bin", Digest: big, Size: n})
	key := ActionKey(Sum([]byte("grpc fault fixture")))
	w := &recorder{}
	writer.opt.Warn = w.warn
	writer.Upload(context.Background(), key, res)
	writer.Close(context.Background())
	w.expect(t, 0)
	return key, res
}

func TestGRPCFetchFaults(t *testing.T) {
	s := setupGRPC(t)
	key, res := grpcFixture(t, s)
	cases := []struct {
		name    string
		f       testenv.GRPCFault
		hit     bool     // the fault is ridden out
		words   []string // in the one warning
		breaker bool
	}{
		{"UNAVAILABLE", testenv.GRPCFault{Code: codes.Unavailable}, false, []string{"Unavailable", "continuing without it"}, true},
		{"RESOURCE_EXHAUSTED", testenv.GRPCFault{Code: codes.ResourceExhausted}, false, []string{"ResourceExhausted", "continuing without it"}, true},
		{"UNAVAILABLE twice, then fine", testenv.GRPCFault{Code: codes.Unavailable, Times: 2}, true, nil, false},
		{"RESOURCE_EXHAUSTED on batches once", testenv.GRPCFault{Method: "BatchReadBlobs", Code: codes.ResourceExhausted, Times: 1}, true, nil, false},
		{"stalled", testenv.GRPCFault{Stall: true}, false, []string{"no answer within"}, true},
		{"download stalls midway", testenv.GRPCFault{Method: "ByteStream/Read", StallAfter: 2}, false, []string{"no progress"}, true},
		{"killed", testenv.GRPCFault{KillAfter: 1}, false, []string{"continuing without it"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testenv.NewGRPCProxy(t, s.server.GRPCAddr)
			p.Set(c.f)
			b := newGRPC(t, "grpc://"+p.Addr, Endpoint{})
			r, local, w := newReader(t, b, RemoteOptions{AcceptCached: true, Timeout: faultTimeout})
			ctx := context.Background()
			start := time.Now()
			_, ok := r.Fetch(ctx, key)
			if el := time.Since(start); el > 4*faultTimeout+time.Second {
				t.Errorf("Fetch took %s", el)
			}
			checkLocalClean(t, local)
			if c.hit {
				if !ok {
					t.Fatalf("the fault was not ridden out: %q", w.list())
				}
				checkBlobs(t, local, res)
				w.expect(t, 0)
				return
			}
			if ok {
				t.Fatal("hit through a fault")
			}
			w.expect(t, 1, c.words...)
			calls := p.Calls("")
			r.Fetch(ctx, ActionKey(Sum([]byte("another"))))
			if c.breaker && p.Calls("") != calls {
				t.Errorf("the breaker did not open: %d more calls", p.Calls("")-calls)
			}
			w.expect(t, 1)
		})
	}
}

func TestGRPCUploadFaults(t *testing.T) {
	s := setupGRPC(t)
	for i, f := range []testenv.GRPCFault{
		{Method: "BatchUpdateBlobs", Code: codes.Unavailable},
		{Method: "BatchUpdateBlobs", Code: codes.ResourceExhausted},
		{Method: "ByteStream/Write", Stall: true},
		{Method: "ByteStream/Write", Code: codes.Internal},
		{Method: "FindMissingBlobs", Code: codes.PermissionDenied},
	} {
		t.Run(f.Method+" "+f.Code.String(), func(t *testing.T) {
			p := testenv.NewGRPCProxy(t, s.server.GRPCAddr)
			p.Set(f)
			w := &recorder{}
			r := NewRemote(openTemp(t), newGRPC(t, "grpc://"+p.Addr, Endpoint{}), RemoteOptions{Upload: true, Timeout: faultTimeout, Warn: w.warn})
			res := remoteSample(t, r.local)
			// A blob of its own, so the store lacks it.
			big, n, err := r.local.PutReader(newGen(uint64(100+i), 5<<20))
			if err != nil {
				t.Fatal(err)
			}
			res.Outputs = append(res.Outputs, OutputFile{Path: "pkg/big.bin", Digest: big, Size: n})
			key := ActionKey(Sum([]byte(t.Name())))
			r.Upload(context.Background(), key, res)
			r.Close(context.Background())
			w.expect(t, 1)
			// A result whose blobs did not all arrive is never recorded.
			if _, err := s.direct.GetAC(context.Background(), key); !errors.Is(err, ErrMiss) {
				t.Errorf("AC entry after a failed upload: %v", err)
			}
			if st := r.Stats(); st.Uploaded != 0 || st.NotUploaded != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Uploads leave the caller at once; Close waits for them, within its
// bound, and says what it gave up on.
func TestUploadsInBackground(t *testing.T) {
	s := setupGRPC(t)
	ctx := context.Background()

	t.Run("batched", func(t *testing.T) {
		p := testenv.NewGRPCProxy(t, s.server.GRPCAddr)
		w := &recorder{}
		r := NewRemote(openTemp(t), newGRPC(t, "grpc://"+p.Addr, Endpoint{}), RemoteOptions{Upload: true, Warn: w.warn})
		const n = 100
		for i := range n {
			d := mustPut(t, r.local, strings.Repeat("x", i+1))
			r.Upload(ctx, ActionKey(Sum([]byte{byte(i)})), &ActionResult{Outputs: []OutputFile{{Path: "out", Digest: d, Size: int64(i + 1)}}})
		}
		r.Close(ctx)
		w.expect(t, 0)
		if got := p.Calls("UpdateActionResult"); got != n {
			t.Errorf("%d AC updates, want %d", got, n)
		}
		if got := p.Calls("FindMissingBlobs"); got >= n/2 {
			t.Errorf("%d FindMissingBlobs calls for %d results: not batched", got, n)
		}
		if st := r.Stats(); st.Uploaded != n {
			t.Errorf("stats %+v", st)
		}
	})

	stalled := func(t *testing.T, opt RemoteOptions) (*Remote, *recorder) {
		p := testenv.NewGRPCProxy(t, s.server.GRPCAddr)
		p.Set(testenv.GRPCFault{Method: "UpdateActionResult", Stall: true})
		w := &recorder{}
		opt.Upload, opt.Warn, opt.Timeout = true, w.warn, 10*time.Second
		r := NewRemote(openTemp(t), newGRPC(t, "grpc://"+p.Addr, Endpoint{}), opt)
		res := remoteSample(t, r.local)
		start := time.Now()
		for i := range 3 {
			r.Upload(ctx, ActionKey(Sum([]byte{byte(i)})), res)
		}
		if el := time.Since(start); el > 100*time.Millisecond && !opt.InlineUploads {
			t.Errorf("queueing 3 uploads took %s", el)
		}
		return r, w
	}
	t.Run("bounded wait", func(t *testing.T) {
		r, w := stalled(t, RemoteOptions{UploadWait: 300 * time.Millisecond})
		start := time.Now()
		r.Close(ctx)
		if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
			t.Errorf("Close took %s with a 300ms bound", el)
		}
		w.expect(t, 1, "3 results were not uploaded", "not done after 300ms")
		// After Close, Upload does nothing.
		r.Upload(ctx, ActionKey{}, &ActionResult{})
		if st := r.Stats(); st.NotUploaded != 3 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		r, w := stalled(t, RemoteOptions{})
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		r.Close(cctx)
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("an interrupted Close took %s", el)
		}
		w.expect(t, 1, "interrupted")
	})
}

// testCert makes a CA and a certificate for 127.0.0.1 signed by it, as
// PEM files in dir.
func testCert(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	now := time.Now()
	ca, caKey, caPEM := mk(&x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pipe test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, key, certPEM := mk(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, data := range map[string][]byte{caFile: caPEM, certFile: certPEM, keyFile: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func TestGRPCSOverTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, cert, key := testCert(t, dir)
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{TLSCert: cert, TLSKey: key})
	ctx := context.Background()
	t.Setenv("PIPE_REMOTE_CACHE", "")
	t.Setenv("PIPE_REMOTE_TLS_CA", "")
	url := "grpcs://" + srv.GRPCAddr
	// --remote-tls-ca: the roots come from the file.
	w := &recorder{}
	writer, err := RemoteSpec{URL: url, Endpoint: EndpointSettings{TLSCA: caFile}, Options: RemoteOptions{Upload: true, AcceptCached: true, Warn: w.warn}}.Open(ctx, openTemp(t))
	if err != nil {
		t.Fatal(err)
	}
	k := ActionKey(Sum([]byte("tls")))
	writer.Upload(ctx, k, remoteSample(t, writer.local))
	writer.Close(ctx)
	w.expect(t, 0)
	reader, err := RemoteSpec{URL: url, Endpoint: EndpointSettings{TLSCA: caFile}, Options: RemoteOptions{AcceptCached: true, Warn: w.warn}}.Open(ctx, openTemp(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reader.Fetch(ctx, k); !ok {
		t.Fatalf("fetch over TLS: %q", w.list())
	}
	reader.Close(ctx)
	// The same roots serve https:// (bazel-remote's HTTP port over TLS).
	hr, err := RemoteSpec{URL: srv.HTTPURL, Endpoint: EndpointSettings{TLSCA: caFile}, Options: RemoteOptions{AcceptCached: true, Warn: w.warn}}.Open(ctx, openTemp(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := hr.Fetch(ctx, k); !ok {
		t.Fatalf("fetch over https with the CA file: %q", w.list())
	}
	// The system's roots do not know the test CA: one warning, a miss.
	sys, err := RemoteSpec{URL: url, Options: RemoteOptions{AcceptCached: true, Warn: w.warn}}.Open(ctx, openTemp(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sys.Fetch(ctx, k); ok {
		t.Error("hit from a server whose certificate nothing trusts")
	}
	sys.Close(ctx)
	w.expect(t, 1, "certificate")
	// A CA file for a plaintext URL is a mistake worth stopping for.
	if _, err := (RemoteSpec{URL: "grpc://" + srv.GRPCAddr, Endpoint: EndpointSettings{TLSCA: caFile}}).Open(ctx, openTemp(t)); err == nil || !strings.Contains(err.Error(), "grpcs://") {
		t.Errorf("CA with grpc://: %v", err)
	}
	if _, err := (RemoteSpec{URL: url, Endpoint: EndpointSettings{TLSCA: filepath.Join(dir, "key.pem")}}).Open(ctx, openTemp(t)); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a key file as CA: %v", err)
	}
}

// Headers carry credentials: bazel-remote with basic auth takes them as
// an authorization header, or from the URL.
func TestGRPCHeadersAndAuth(t *testing.T) {
	dir := t.TempDir()
	sum := sha1.Sum([]byte("hunter2"))
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:{SHA}"+base64.StdEncoding.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{Htpasswd: htpasswd})
	ctx := context.Background()
	for _, v := range []string{"PIPE_REMOTE_CACHE", "PIPE_REMOTE_HEADERS", "PIPE_REMOTE_CACHE_USER", "PIPE_REMOTE_CACHE_PASSWORD", "PIPE_REMOTE_CACHE_TOKEN", "PIPE_REMOTE_INSTANCE_NAME"} {
		t.Setenv(v, "")
	}
	open := func(spec RemoteSpec) (*Remote, *recorder) {
		t.Helper()
		w := &recorder{}
		spec.Options = RemoteOptions{Upload: true, AcceptCached: true, Warn: w.warn}
		r, err := spec.Open(ctx, openTemp(t))
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	k := ActionKey(Sum([]byte("auth")))
	// Without credentials the server refuses: reads are misses, uploads
	// stop, one warning each.
	r, w := open(RemoteSpec{URL: "grpc://" + srv.GRPCAddr})
	if _, ok := r.Fetch(ctx, k); ok {
		t.Fatal("hit without credentials")
	}
	r.Upload(ctx, k, remoteSample(t, r.local))
	r.Close(ctx)
	w.expect(t, 2, "Unauthenticated")

	auth := "authorization=" + basicAuth("ci", "hunter2")
	r, w = open(RemoteSpec{URL: "grpc://" + srv.GRPCAddr, Endpoint: EndpointSettings{Headers: []string{auth}}})
	res := remoteSample(t, r.local)
	r.Upload(ctx, k, res)
	r.Close(ctx)
	w.expect(t, 0)
	// From the environment, one header per line, and from the URL.
	t.Setenv("PIPE_REMOTE_HEADERS", "x-team=pipe\n"+auth)
	r, w = open(RemoteSpec{URL: "grpc://" + srv.GRPCAddr})
	if _, ok := r.Fetch(ctx, k); !ok {
		t.Errorf("$PIPE_REMOTE_HEADERS: %q", w.list())
	}
	r.Close(ctx)
	t.Setenv("PIPE_REMOTE_HEADERS", "")
	// Headers go to http(s):// caches too.
	r, w = open(RemoteSpec{URL: srv.HTTPURL, Endpoint: EndpointSettings{Headers: []string{auth}}})
	if _, ok := r.Fetch(ctx, k); !ok {
		t.Errorf("--remote-header over HTTP: %q", w.list())
	}
	r.Close(ctx)
	r, w = open(RemoteSpec{URL: "grpc://ci:hunter2@" + srv.GRPCAddr})
	if _, ok := r.Fetch(ctx, k); !ok {
		t.Errorf("user:password in the URL: %q", w.list())
	}
	if strings.Contains(r.Backend().String(), "hunter2") {
		t.Errorf("String() shows the password: %s", r.Backend())
	}
	r.Close(ctx)
	// Bad headers are settings errors, named by where they came from.
	if _, err := (RemoteSpec{URL: "grpc://" + srv.GRPCAddr, Endpoint: EndpointSettings{Headers: []string{"x-api-key: hunter3"}}}).Open(ctx, openTemp(t)); err == nil || !strings.Contains(err.Error(), "--remote-header") || strings.Contains(err.Error(), "hunter3") {
		t.Errorf("malformed header: %v", err)
	}
}
