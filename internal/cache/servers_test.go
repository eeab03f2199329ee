package cache

// faultProxy, a test double that sits between pipe and a real server (from
// testenv) to inject failures, and the test's shared servers.

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	testenv.StopShared()
	os.Exit(code)
}

// s3backend returns an S3 backend for s3://bucket/prefix reaching the
// server at endpoint (the server itself, or a faultProxy in front of it).
func s3backend(t testing.TB, s *testenv.S3Server, bucket, prefix, endpoint string) *s3Backend {
	t.Helper()
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	b, err := newS3Backend(context.Background(), "s3://"+bucket+"/"+prefix, s.Config(endpoint)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// faults is what faultProxy does to the traffic.
type faults struct {
	Status500 bool          // every request answers 500
	FailPUT   bool          // PUTs answer 500
	Delay     time.Duration // wait before forwarding
	Hang      bool          // never answer; the client must give up
	// The rest apply to successful CAS GET bodies.
	CorruptCAS  bool  // flip one byte
	TruncateCAS bool  // send half, then cut the connection
	StallCAS    bool  // send a little, then send nothing more
	KillAfter   int64 // after this many body bytes the proxy dies for good
	// DripCAS sends one byte per interval: never a stall, never done.
	DripCAS time.Duration
}

// faultProxy is a TEST DOUBLE: a real loopback HTTP reverse proxy in front
// of a real cache server (nginx, MinIO) that counts requests and injects
// the failures a remote cache meets in the wild.
type faultProxy struct {
	srv  *httptest.Server
	URL  string
	rp   *httputil.ReverseProxy
	mu   sync.Mutex
	f    faults
	reqs map[string]int // "GET cas", "PUT ac", …
	dead atomic.Bool
}

func newFaultProxy(t testing.TB, upstream string) *faultProxy {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{reqs: map[string]int{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			// S3 signatures cover the Host the client saw.
			pr.Out.Host = pr.In.Host
		},
		FlushInterval:  -1,
		ModifyResponse: p.modify,
		// Injected aborts are expected; their log lines are noise.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	t.Cleanup(func() {
		if !p.dead.Load() {
			p.srv.Close()
		}
	})
	return p
}

func (p *faultProxy) set(f faults) {
	p.mu.Lock()
	p.f = f
	p.mu.Unlock()
}

func (p *faultProxy) faults() faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f
}

// count returns how many requests matched method and kind ("ac", "cas");
// empty strings match all.
func (p *faultProxy) count(method, kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.reqs {
		m, kd, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && (kind == "" || kd == kind) {
			n += v
		}
	}
	return n
}

func pathKind(p string) string {
	switch {
	case strings.Contains(p, "/cas/"):
		return "cas"
	case strings.Contains(p, "/ac/"):
		return "ac"
	}
	return "other"
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.reqs[r.Method+" "+pathKind(r.URL.Path)]++
	f := p.f
	p.mu.Unlock()
	if f.Hang {
		<-r.Context().Done()
		return
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if f.Status500 || (f.FailPUT && r.Method == http.MethodPut) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// kill makes the proxy die like a crashed server: open connections are cut
// and the port refuses new ones.
func (p *faultProxy) kill() {
	if p.dead.Swap(true) {
		return
	}
	p.srv.Listener.Close()
	p.srv.CloseClientConnections()
}

func (p *faultProxy) modify(resp *http.Response) error {
	f := p.faults()
	if resp.Request.Method != http.MethodGet || pathKind(resp.Request.URL.Path) != "cas" || resp.StatusCode != http.StatusOK {
		return nil
	}
	resp.Body = &faultBody{rc: resp.Body, f: f, p: p, size: resp.ContentLength, ctx: resp.Request.Context()}
	return nil
}

// errInjected makes ReverseProxy abort the response mid-body, which cuts
// the client's connection.
var errInjected = errors.New("injected fault")

type faultBody struct {
	rc   io.ReadCloser
	f    faults
	p    *faultProxy
	size int64
	n    int64
	ctx  context.Context
}

func (b *faultBody) Read(buf []byte) (int, error) {
	if b.f.DripCAS > 0 && len(buf) > 0 {
		select {
		case <-time.After(b.f.DripCAS):
		case <-b.ctx.Done():
			return 0, errInjected
		}
		buf = buf[:1]
	}
	limit := int64(-1)
	switch {
	case b.f.TruncateCAS:
		limit = b.size / 2
	case b.f.StallCAS:
		limit = min(b.size/2, 4096)
	case b.f.KillAfter > 0:
		limit = b.f.KillAfter
	}
	if limit >= 0 && b.n >= limit {
		switch {
		case b.f.StallCAS:
			<-b.ctx.Done()
		case b.f.KillAfter > 0:
			b.p.kill()
		}
		return 0, errInjected
	}
	if limit >= 0 && int64(len(buf)) > limit-b.n {
		buf = buf[:limit-b.n]
	}
	n, err := b.rc.Read(buf)
	if n > 0 && b.f.CorruptCAS && b.n == 0 {
		buf[0] ^= 0xff
	}
	b.n += int64(n)
	return n, err
}

func (b *faultBody) Close() error { return b.rc.Close() }
