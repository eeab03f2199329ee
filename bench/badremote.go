package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pipebuild/pipe/bench/internal/timing"
)

// badRemoteBench measures a chain of 20 actions (each works 100 ms and
// writes 100 KB) built from a remote cache that holds all their results,
// through a loopback proxy in front of bazel-remote's HTTP port that is:
//
//   - healthy: forwards as is;
//   - slow: answers every request after 2 s (inside the 5 s timeout);
//   - dripping: sends blob bodies one byte per 200 ms;
//
// and, for reference, the same build with no remote at all. Each pipe
// binary given (say main's and a branch's) takes its turn in every round,
// so a busy moment of a shared machine hurts all alike; a build that has
// not finished within -limit is killed and reported as such.
func badRemoteBench(args []string) error {
	fs := flag.NewFlagSet("badremote", flag.ExitOnError)
	pipes := fs.String("pipe", "pipe", "pipe binaries to compare, comma-separated")
	bazelRemote := fs.String("bazel-remote", "", "bazel-remote binary (default: on PATH or in $(go env GOPATH)/bin)")
	runs := fs.Int("runs", 3, "builds per binary and server")
	limit := fs.Duration("limit", 120*time.Second, "kill a build that has not finished after this")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	bin, err := findBazelRemote(*bazelRemote)
	if err != nil {
		return err
	}
	srv, err := startBazelRemote(bin, filepath.Join(dir, "server"), linkShape{}, "")
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("machine: %s; bazel-remote %s\n", timing.Machine(), bin)

	src := filepath.Join(dir, "src")
	if err := genChain(src); err != nil {
		return err
	}
	bins := strings.Split(*pipes, ",")
	n := 0
	fresh := func() (ws, cache string, err error) {
		n++
		ws = filepath.Join(dir, fmt.Sprintf("ws%d", n))
		if out, err := exec.Command("cp", "-r", src, ws).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("copy: %v %s", err, out)
		}
		return ws, filepath.Join(dir, fmt.Sprintf("cache%d", n)), nil
	}
	// Each binary fills the remote with its own results (action keys may
	// differ between versions).
	for _, p := range bins {
		ws, cache, err := fresh()
		if err != nil {
			return err
		}
		if _, _, err := pipeBuild(p, ws, cache, "--remote-cache", srv.url("http"), "--remote-upload"); err != nil {
			return err
		}
	}

	type mode struct {
		name  string
		delay time.Duration
		drip  time.Duration
		local bool
	}
	modes := []mode{
		{name: "no remote", local: true},
		{name: "healthy remote"},
		{name: "every answer after 2 s", delay: 2 * time.Second},
		{name: "blobs drip 1 byte / 200 ms", drip: 200 * time.Millisecond},
	}
	type cell struct {
		times  []time.Duration
		killed int
		counts string
	}
	cells := map[string]*cell{}
	for round := range *runs {
		for _, m := range modes {
			for _, p := range bins {
				ws, cache, err := fresh()
				if err != nil {
					return err
				}
				var extra []string
				closeProxy := func() error { return nil }
				if !m.local {
					proxy, err := startFaultyProxy(srv.url("http"), m.delay, m.drip)
					if err != nil {
						return err
					}
					closeProxy = proxy.Close
					extra = []string{"--remote-cache", "http://" + proxy.Addr().String()}
				}
				d, counts, killed, err := timedBuild(p, ws, cache, *limit, extra...)
				closeProxy()
				if err != nil {
					return err
				}
				k := m.name + "\x00" + p
				c := cells[k]
				if c == nil {
					c = &cell{}
					cells[k] = c
				}
				if killed {
					c.killed++
				} else {
					c.times = append(c.times, d)
					c.counts = counts
				}
				fmt.Fprintf(os.Stderr, "round %d, %s, %s: %s %s killed=%t\n", round+1, m.name, p, d.Round(time.Millisecond), counts, killed)
			}
		}
	}
	fmt.Printf("\n| server | pipe | wall time | actions |\n| --- | --- | --- | --- |\n")
	for _, m := range modes {
		for _, p := range bins {
			c := cells[m.name+"\x00"+p]
			var t string
			switch {
			case len(c.times) == 0:
				t = fmt.Sprintf("killed after %s (%d of %d runs)", *limit, c.killed, *runs)
			default:
				t = secStats(c.times)
				if c.killed > 0 {
					t += fmt.Sprintf("; %d runs killed after %s", c.killed, *limit)
				}
			}
			fmt.Printf("| %s | %s | %s | %s |\n", m.name, p, t, c.counts)
		}
	}
	return nil
}

func secStats(ds []time.Duration) string {
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	s := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	return fmt.Sprintf("median %s (%s–%s, %d runs)", s(timing.Median(ds)), s(lo), s(hi), len(ds))
}

// genChain writes the 20-action chain: each genrule works 100 ms and
// writes 100 KB of its own, after the one before it.
func genChain(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "WORKSPACE.star"), []byte("workspace(name = \"chain\")\n"), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	for i := range 20 {
		srcs := "[]"
		if i > 0 {
			srcs = fmt.Sprintf(`[":a%d"]`, i-1)
		}
		fmt.Fprintf(&b, "genrule(name = \"a%d\", srcs = %s, outs = [\"a%d.txt\"], cmd = \"sleep 0.1; seq %d %d > $@\")\n", i, srcs, i, i, i+20000)
	}
	return os.WriteFile(filepath.Join(dir, "BUILD.star"), []byte(b.String()), 0o644)
}

// timedBuild runs `pipe build //...`, killing it after limit. Warnings are
// expected here (they are the point), so unlike pipeBuild it does not
// refuse them.
func timedBuild(pipe, ws, cacheDir string, limit time.Duration, extra ...string) (time.Duration, string, bool, error) {
	cmd := exec.Command(pipe, append([]string{"-C", ws, "build", "//...", "--color=never"}, extra...)...)
	cmd.Env = append(os.Environ(), "PIPE_CACHE_DIR="+cacheDir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, "", false, err
	}
	var killed atomic.Bool
	t := time.AfterFunc(limit, func() { killed.Store(true); cmd.Process.Kill() })
	err := cmd.Wait()
	t.Stop()
	d := time.Since(start)
	if killed.Load() {
		return d, "", true, nil
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("pipe build: %v\n%s", err, out.String())
	}
	return d, summaryCounts(lastLine(out.String())), false, nil
}

// startFaultyProxy forwards to target, holding every request for delay
// and sending blob bodies one byte per drip.
func startFaultyProxy(target string, delay, drip time.Duration) (net.Listener, error) {
	up, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(up) },
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if drip > 0 && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/cas/") {
				resp.Body = &drippingBody{rc: resp.Body, every: drip, done: resp.Request.Context().Done()}
			}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		rp.ServeHTTP(w, r)
	}))
	return l, nil
}

type drippingBody struct {
	rc    io.ReadCloser
	every time.Duration
	done  <-chan struct{}
}

func (b *drippingBody) Read(buf []byte) (int, error) {
	select {
	case <-time.After(b.every):
	case <-b.done:
		return 0, io.ErrUnexpectedEOF
	}
	return b.rc.Read(buf[:min(len(buf), 1)])
}

func (b *drippingBody) Close() error { return b.rc.Close() }
