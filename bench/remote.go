package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipebuild/pipe/bench/internal/timing"
)

// remote measures pipe against bazel-remote, a real REAPI cache that also
// speaks Bazel's HTTP protocol, so both of pipe's protocols meet the same
// server:
//
//  1. for http:// and grpc:// each, on a fresh server: a cold build of a
//     generated workspace with --remote-upload, then fresh clones (empty
//     local cache) that build from the remote alone;
//  2. an upload-heavy cold build (large outputs, chains of dependents) over
//     gRPC with uploads in the background (the default) and inline
//     (--remote-upload-inline), each on a fresh server.
//
// Every byte between pipe and the server goes through a loopback proxy
// that counts it and, with -latency and -mbps, shapes the link like a CI
// machine's.
func remote(args []string) error {
	fs := flag.NewFlagSet("remote", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	bazelRemote := fs.String("bazel-remote", "", "bazel-remote binary (default: on PATH or in $(go env GOPATH)/bin)")
	packages := fs.Int("packages", 200, "packages in the generated workspace")
	runs := fs.Int("runs", 7, "fresh-clone builds per protocol")
	coldRuns := fs.Int("cold-runs", 3, "cold builds per protocol, and per upload mode")
	heavy := fs.Int("heavy", 30, "packages of the upload-heavy build")
	heavyMB := fs.Int("heavy-mb", 2, "MB each upload-heavy package writes")
	heavyWork := fs.Duration("heavy-work", 200*time.Millisecond, "how long each upload-heavy action works before writing")
	latency := fs.Duration("latency", 0, "one-way delay the proxy adds, e.g. 5ms")
	serverArgs := fs.String("server-args", "", "more bazel-remote flags, space-separated")
	mbps := fs.Float64("mbps", 0, "the proxy's bandwidth each way in Mbit/s (0: unlimited)")
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
	link := linkShape{latency: *latency, bytesPerSec: *mbps * 1e6 / 8}
	fmt.Printf("machine: %s; bazel-remote %s; link: %s\n", timing.Machine(), bin, link)

	src := filepath.Join(dir, "src")
	if err := gen([]string{"-packages", fmt.Sprint(*packages), "-files", "10", src}); err != nil {
		return err
	}
	n := 0
	clone := func(from string) (string, error) {
		n++
		ws := filepath.Join(dir, fmt.Sprintf("ws%d", n))
		if out, err := exec.Command("cp", "-r", from, ws).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copy: %v %s", err, out)
		}
		return ws, nil
	}
	// The machines this runs on are shared: the protocols take turns, so
	// a busy moment hurts both alike, and medians are reported.
	protos := []string{"http", "grpc"}
	type result struct {
		times    []time.Duration
		up, down int64
		line     string
	}
	cold := map[string]*result{}
	hit := map[string]*result{}
	warm := map[string]*server{}
	defer func() {
		for _, s := range warm {
			s.stop()
		}
	}()
	for _, p := range protos {
		cold[p], hit[p] = &result{}, &result{}
	}
	cold["local"] = &result{}
	for r := range *coldRuns {
		// The same cold build without a remote cache, for what uploading
		// adds to it.
		ws, err := clone(src)
		if err != nil {
			return err
		}
		d, line, err := pipeBuild(*pipe, ws, filepath.Join(ws, ".cache"))
		if err != nil {
			return err
		}
		cold["local"].times, cold["local"].line = append(cold["local"].times, d), line
		for _, p := range protos {
			srv, err := startBazelRemote(bin, filepath.Join(dir, fmt.Sprintf("store-%s-%d", p, r)), link, *serverArgs)
			if err != nil {
				return err
			}
			ws, err := clone(src)
			if err != nil {
				srv.stop()
				return err
			}
			d, line, err := pipeBuild(*pipe, ws, filepath.Join(ws, ".cache"), "--remote-cache", srv.url(p), "--remote-upload")
			if err != nil {
				srv.stop()
				return err
			}
			c := cold[p]
			c.times, c.line = append(c.times, d), line
			c.up, c.down = srv.proxy.reset()
			if old := warm[p]; old != nil {
				old.stop()
			}
			warm[p] = srv
		}
	}
	for range *runs {
		for _, p := range protos {
			ws, err := clone(src)
			if err != nil {
				return err
			}
			d, line, err := pipeBuild(*pipe, ws, filepath.Join(ws, ".cache"), "--remote-cache", warm[p].url(p))
			if err != nil {
				return err
			}
			if !strings.Contains(line, " 0 executed") {
				return fmt.Errorf("a fresh clone over %s executed actions: %s", p, line)
			}
			h := hit[p]
			h.times, h.line = append(h.times, d), line
			h.up, h.down = warm[p].proxy.reset()
		}
	}
	fmt.Printf("\n%d packages; bytes are on the wire, both directions, of one build\n", *packages)
	fmt.Printf("local cold build, no remote:       %s\n", timing.Stats(cold["local"].times))
	for _, p := range protos {
		fmt.Printf("%-5s cold build, --remote-upload:     %s [%s]; %s up, %s down\n", p, timing.Stats(cold[p].times), summaryCounts(cold[p].line), kb(cold[p].up), kb(cold[p].down))
		fmt.Printf("%-5s fresh clone, all remote hits:  %s [%s]; %s up, %s down\n", p, timing.Stats(hit[p].times), summaryCounts(hit[p].line), kb(hit[p].up), kb(hit[p].down))
	}

	if *heavy == 0 {
		return nil
	}
	hsrc := filepath.Join(dir, "heavy")
	if err := genHeavy(hsrc, *heavy, *heavyMB, *heavyWork); err != nil {
		return err
	}
	fmt.Printf("\nupload-heavy cold build over gRPC: %d actions, each working %s then writing %d MB, chained in tens\n", *heavy, *heavyWork, *heavyMB)
	modes := []struct {
		name  string
		extra []string
	}{{"background", nil}, {"inline", []string{"--remote-upload-inline"}}}
	heavyRes := map[string]*result{}
	for _, m := range modes {
		heavyRes[m.name] = &result{}
	}
	for r := range *coldRuns {
		for _, m := range modes {
			srv, err := startBazelRemote(bin, filepath.Join(dir, fmt.Sprintf("store-heavy-%s-%d", m.name, r)), link, *serverArgs)
			if err != nil {
				return err
			}
			ws, err := clone(hsrc)
			if err != nil {
				srv.stop()
				return err
			}
			d, line, err := pipeBuild(*pipe, ws, filepath.Join(ws, ".cache"), append([]string{"--remote-cache", srv.url("grpc"), "--remote-upload"}, m.extra...)...)
			up, _ := srv.proxy.reset()
			srv.stop()
			if err != nil {
				return err
			}
			h := heavyRes[m.name]
			h.times, h.line, h.up = append(h.times, d), line, up
		}
	}
	for _, m := range modes {
		h := heavyRes[m.name]
		fmt.Printf("  uploads %-10s %s [%s]; %s up\n", m.name, timing.Stats(h.times), summaryCounts(h.line), kb(h.up))
	}
	return nil
}

func kb(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KB", float64(n)/1024)
}

var countsRE = regexp.MustCompile(`(\d+ executed).*?(?:remote: (\d+ hits)|$)`)

// summaryCounts shortens pipe's summary line to its counts.
func summaryCounts(line string) string {
	if m := countsRE.FindStringSubmatch(line); m != nil && m[2] != "" {
		return m[1] + ", " + m[2]
	}
	return line
}

// pipeBuild runs `pipe build //...` in ws with its own cache directory.
func pipeBuild(pipe, ws, cacheDir string, extra ...string) (time.Duration, string, error) {
	cmd := exec.Command(pipe, append([]string{"-C", ws, "build", "//...", "--color=never"}, extra...)...)
	cmd.Env = append(os.Environ(), "PIPE_CACHE_DIR="+cacheDir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("pipe build: %v\n%s", err, out)
	}
	d := time.Since(start)
	if strings.Contains(string(out), "warning") {
		return 0, "", fmt.Errorf("pipe build warned:\n%s", out)
	}
	return d, lastLine(string(out)), nil
}

// genHeavy writes a workspace whose actions work a while and write large
// outputs: package i's genrule sleeps for work, then writes a checksum of
// the previous package's output and MB megabytes of random bytes, so each
// action waits for the one before it (chains of ten) and every output is a
// fresh upload.
func genHeavy(dir string, packages, mb int, work time.Duration) error {
	write := func(rel, content string) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(content), 0o644)
	}
	if err := write("WORKSPACE.star", "workspace(name = \"heavy\")\n"); err != nil {
		return err
	}
	for i := range packages {
		srcs := "[]"
		if i%10 != 0 {
			srcs = fmt.Sprintf(`["//h%03d:blob"]`, i-1)
		}
		build := fmt.Sprintf(`genrule(
    name = "blob",
    srcs = %s,
    outs = ["blob.bin"],
    cmd = "sleep %.3f; (cat $(SRCS) /dev/null | cksum; head -c %d /dev/urandom) > $@",
)
`, srcs, work.Seconds(), mb<<20)
		if err := write(fmt.Sprintf("h%03d/BUILD.star", i), build); err != nil {
			return err
		}
	}
	return nil
}

func findBazelRemote(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if p, err := exec.LookPath("bazel-remote"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "bazel-remote")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("bazel-remote not found: build it as .ci/run does (tools/bazel-remote), or pass -bazel-remote BIN")
}

// server is bazel-remote with the shaping proxy in front of both ports.
type server struct {
	cmd       *exec.Cmd
	grpc, web string // proxy addresses
	proxy     *shaper
}

func (s *server) url(proto string) string {
	if proto == "grpc" {
		return "grpc://" + s.grpc
	}
	return "http://" + s.web
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.proxy.close()
}

func startBazelRemote(bin, dir string, link linkShape, extra string) (*server, error) {
	ports := make([]string, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	args := []string{"--dir", dir, "--max_size", "4", "--grpc_address", ports[0], "--http_address", ports[1], "--access_log_level", "none"}
	cmd := exec.Command(bin, append(args, strings.Fields(extra)...)...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, proxy: &shaper{link: link}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + ports[1] + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("bazel-remote did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var err error
	if s.grpc, err = s.proxy.listen(ports[0]); err != nil {
		s.stop()
		return nil, err
	}
	if s.web, err = s.proxy.listen(ports[1]); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// linkShape is a network link: a one-way delay and a bandwidth each way.
type linkShape struct {
	latency     time.Duration
	bytesPerSec float64
}

func (l linkShape) String() string {
	if l.latency == 0 && l.bytesPerSec == 0 {
		return "loopback, unshaped"
	}
	bw := "unlimited"
	if l.bytesPerSec > 0 {
		bw = fmt.Sprintf("%.0f Mbit/s", l.bytesPerSec*8/1e6)
	}
	return fmt.Sprintf("%s one-way delay, %s each way", l.latency, bw)
}

// shaper is a loopback TCP proxy that counts bytes and delays them as a
// linkShape says. The bandwidth is the link's, shared by every connection
// (HTTP/1.1 opens many, gRPC one), as on a real machine's uplink.
type shaper struct {
	link      linkShape
	up, down  atomic.Int64
	mu        sync.Mutex
	listeners []net.Listener
	// free is when each direction's link has sent everything so far.
	freeMu           sync.Mutex
	freeUp, freeDown time.Time
}

// reserve books n bytes on one direction's link and returns when they
// will have been sent.
func (p *shaper) reserve(free *time.Time, n int) time.Time {
	p.freeMu.Lock()
	defer p.freeMu.Unlock()
	now := time.Now()
	if free.Before(now) {
		*free = now
	}
	*free = free.Add(time.Duration(float64(n) / p.link.bytesPerSec * float64(time.Second)))
	return *free
}

func (p *shaper) reset() (up, down int64) { return p.up.Swap(0), p.down.Swap(0) }

func (p *shaper) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		l.Close()
	}
}

func (p *shaper) listen(target string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.listeners = append(p.listeners, l)
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go p.pipe(u, c, &p.up, &p.freeUp)
				p.pipe(c, u, &p.down, &p.freeDown)
			}()
		}
	}()
	return l.Addr().String(), nil
}

// pipe copies src to dst through a delay line: each chunk is released
// latency after it was read, and no faster than the bandwidth allows.
func (p *shaper) pipe(dst, src net.Conn, count *atomic.Int64, free *time.Time) {
	defer dst.Close()
	defer src.Close()
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(p.link.latency)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if p.link.bytesPerSec > 0 {
			if d := time.Until(p.reserve(free, len(c.b))); d > 0 {
				time.Sleep(d)
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			io.Copy(io.Discard, src)
			return
		}
		count.Add(int64(len(c.b)))
	}
}
