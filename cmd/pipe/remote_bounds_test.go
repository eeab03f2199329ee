package main

// Bounded remotes: a slow or dripping remote cache cannot hold a build for
// long, and a healthy one is still used.

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/testenv"
)

// badRemote is a TEST DOUBLE: a loopback reverse proxy in front of a real
// cache server (nginx) that answers every request after Delay, or sends
// blob bodies one byte per Drip, and counts the AC lookups it sees.
type badRemote struct {
	URL   string
	Delay time.Duration
	Drip  time.Duration

	mu        sync.Mutex
	acLookups int
}

func newBadRemote(t *testing.T, upstream string) *badRemote {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &badRemote{}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(up) },
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if p.Drip > 0 && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/cas/") {
				resp.Body = &dripBody{rc: resp.Body, every: p.Drip, done: resp.Request.Context().Done()}
			}
			return nil
		},
		// A client giving up on a drip is expected.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/ac/") {
			p.mu.Lock()
			p.acLookups++
			p.mu.Unlock()
		}
		select {
		case <-time.After(p.Delay):
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *badRemote) lookups() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acLookups
}

type dripBody struct {
	rc    io.ReadCloser
	every time.Duration
	done  <-chan struct{}
}

func (b *dripBody) Read(buf []byte) (int, error) {
	select {
	case <-time.After(b.every):
	case <-b.done:
		return 0, io.ErrUnexpectedEOF
	}
	return b.rc.Read(buf[:min(len(buf), 1)])
}

func (b *dripBody) Close() error { return b.rc.Close() }

// chainWorkspace is twenty genrules, each depending on the one before and
// writing 100 KB of its own.
func chainWorkspace(t *testing.T) *workspace {
	var build strings.Builder
	for i := range 20 {
		srcs := "[]"
		if i > 0 {
			srcs = fmt.Sprintf(`[":a%d"]`, i-1)
		}
		fmt.Fprintf(&build, "genrule(name = \"a%d\", srcs = %s, outs = [\"a%d.txt\"], cmd = \"seq %d %d > $@\")\n", i, srcs, i, i, i+20000)
	}
	return newWorkspace(t, map[string]string{"BUILD.star": build.String()})
}

// buildWithin is buildEnv that kills pipe and fails the test when the
// build has not ended within limit: a bound that proves termination, for
// builds that would otherwise take minutes or never end.
func (ws *workspace) buildWithin(t *testing.T, limit time.Duration, args ...string) build {
	t.Helper()
	evFile := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := pipeCmd(ws, append([]string{"build", "--events", evFile}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		t.Fatalf("pipe build %s did not finish within %s\nstderr:\n%s", strings.Join(args, " "), limit, errb.String())
	}
	b := build{code: exitCode(t, err), stdout: out.String(), stderr: errb.String()}
	if _, err := os.Stat(evFile); err == nil {
		b.events = readEvents(t, evFile)
	}
	if b.code != 0 {
		t.Fatalf("pipe build %s: exit %d\nstderr:\n%s", strings.Join(args, " "), b.code, b.stderr)
	}
	return b
}

func TestRemoteCacheBounded(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNginx(t, "")
	direct := srv.URL + "/pipe"
	first := chainWorkspace(t)
	first.buildOK(t, "//...", "--remote-cache", direct, "--remote-upload")
	want := distDigests(t, first)

	for _, c := range []struct {
		name string
		bad  func(p *badRemote)
		args []string
		// lookups is how many reach the remote, at least and at most;
		// each is a hit when hits is set. The rest of the actions run
		// locally.
		minLookups, maxLookups int
		hits                   bool
		warning                string
	}{
		// Without the bounds: 20 hits × (AC + blob) × 2 s = 80 s. With
		// them: the second hit (at least 8 s) has cost more than 5 s
		// (the timeout) beyond what the two saved; on a machine slow
		// enough, the first.
		{"answers after 2s", func(p *badRemote) { p.Delay = 2 * time.Second }, nil, 1, 2, true, "costs more than building locally"},
		// Without the rate floor: one byte per 200 ms never stalls for
		// a whole timeout, and the first blob never arrives.
		{"drips a byte per 200ms", func(p *badRemote) { p.Drip = 200 * time.Millisecond }, []string{"--remote-timeout", "1s"}, 1, 1, false, "below --remote-min-rate"},
		{"healthy", func(p *badRemote) {}, nil, 20, 20, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := newBadRemote(t, srv.URL)
			c.bad(p)
			ws := chainWorkspace(t)
			b := ws.buildWithin(t, 40*time.Second, append([]string{"//...", "--remote-cache", p.URL + "/pipe"}, c.args...)...)
			n := p.lookups()
			if n < c.minLookups || n > c.maxLookups {
				t.Errorf("%d lookups reached the remote, want %d to %d", n, c.minLookups, c.maxLookups)
			}
			hits := len(b.labels("cached"))
			wantHits := 0
			if c.hits {
				wantHits = n
			}
			if hits != wantHits {
				t.Errorf("%d actions cached after %d lookups, want %d:\n%s", hits, n, wantHits, b.stderr)
			}
			if got := len(b.labels("executed")); got != 20-hits {
				t.Errorf("executed %d actions and %d cached, want 20 in all:\n%s", got, hits, b.stderr)
			}
			warnings := strings.Count(b.stderr, "warning: remote cache")
			switch {
			case c.warning == "" && warnings != 0:
				t.Errorf("%d remote warnings from a healthy remote:\n%s", warnings, b.stderr)
			case c.warning != "" && (warnings != 1 || !strings.Contains(b.stderr, c.warning)):
				t.Errorf("%d remote warnings, want one saying %q:\n%s", warnings, c.warning, b.stderr)
			}
			if got := distDigests(t, ws); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("dist/ differs from the first build's:\n%v\n%v", got, want)
			}
		})
	}
}

// The execution time a result records — what a remote hit saves, and what
// a remote's cost is held against — is the execution alone, not the remote
// lookup before it: the budget relies on it.
func TestRecordedDurationExcludesLookup(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNginx(t, "")
	p := newBadRemote(t, srv.URL)
	p.Delay = 1500 * time.Millisecond
	ws := newWorkspace(t, map[string]string{"BUILD.star": "genrule(name = \"g\", outs = [\"out.txt\"], cmd = \"echo hi > $@\")\n"})
	b := ws.buildWithin(t, 40*time.Second, "//...", "--remote-cache", p.URL+"/pipe")
	if p.lookups() != 1 || len(b.labels("executed")) != 1 {
		t.Fatalf("%d lookups, executed %q; want the one action looked up, then run", p.lookups(), b.labels("executed"))
	}
	var key cache.ActionKey
	if err := key.UnmarshalText([]byte(b.event(t, "//:g").Key)); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ws.Cache)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.GetAC(key)
	if err != nil {
		t.Fatal(err)
	}
	// The lookup alone took 1.5 s; echo takes milliseconds.
	if r.DurationMs >= 1500 {
		t.Errorf("the result records %d ms of execution: the 1.5 s remote lookup counted as executing", r.DurationMs)
	}
}

// The same bound holds over REAPI: a gRPC server answering every call
// after 2 s is dropped after a hit or two, with one warning.
func TestRemoteCacheBoundedGRPC(t *testing.T) {
	t.Parallel()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	first := chainWorkspace(t)
	first.buildOK(t, "//...", "--remote-cache", "grpc://"+srv.GRPCAddr, "--remote-upload")
	p := testenv.NewGRPCProxy(t, srv.GRPCAddr)
	p.Set(testenv.GRPCFault{Delay: 2 * time.Second})
	ws := chainWorkspace(t)
	// Without the bounds: 20 × (GetActionResult + BatchReadBlobs) × 2 s.
	b := ws.buildWithin(t, 40*time.Second, "//...", "--remote-cache", "grpc://"+p.Addr)
	lookups := p.Calls("GetActionResult")
	if lookups < 1 || lookups > 2 {
		t.Errorf("%d GetActionResult calls, want 1 or 2", lookups)
	}
	if hits := len(b.labels("cached")); hits != lookups || len(b.labels("executed")) != 20-hits {
		t.Errorf("%d cached, %d executed after %d lookups:\n%s", hits, len(b.labels("executed")), lookups, b.stderr)
	}
	if n := strings.Count(b.stderr, "warning: remote cache"); n != 1 || !strings.Contains(b.stderr, "costs more than building locally") {
		t.Errorf("%d remote warnings, want one saying the remote costs more than building locally:\n%s", n, b.stderr)
	}
	if got, want := distDigests(t, ws), distDigests(t, first); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dist/ differs from the first build's:\n%v\n%v", got, want)
	}
}
