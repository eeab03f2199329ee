package cache

// Real servers for the remote cache tests: nginx with WebDAV PUT (the HTTP
// cache Bazel's documentation describes), MinIO and moto for S3, and
// faultProxy, a test double that sits between pipe and a real server to
// inject failures.
//
// Tests that need a binary that is not installed skip with a loud message,
// or fail when PIPE_REQUIRE_ALL=1 so CI cannot pass by skipping.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopSharedServers()
	os.Exit(code)
}

var installHints = map[string]string{
	"nginx":   "apt-get install -y nginx",
	"minio":   "go install github.com/minio/minio@latest",
	"python3": "install Python 3 with moto (see ENVIRONMENT.md)",
}

// requireBinary returns the path of a program a test needs. When it is
// missing the test is skipped with a message on stderr (visible without
// -v), unless PIPE_REQUIRE_ALL=1, which makes it a failure.
func requireBinary(t testing.TB, name string, also ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range also {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s: %s is not installed (install with: %s)", t.Name(), name, installHints[name])
	if os.Getenv("PIPE_REQUIRE_ALL") == "1" {
		t.Fatal(msg + "; PIPE_REQUIRE_ALL=1 forbids skipping")
	}
	fmt.Fprintln(os.Stderr, "SKIP "+msg)
	t.Skip(msg)
	return ""
}

func goBin(name string) []string {
	var dirs []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		for _, d := range filepath.SplitList(gp) {
			dirs = append(dirs, filepath.Join(d, "bin", name))
		}
	}
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, filepath.Join(gb, name))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin", name))
	}
	return dirs
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	err  error         // its exit status, once done is closed
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitReady polls until ok reports the server up, the process exits, or
// the deadline passes.
func (p *proc) waitReady(ok func() bool, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during startup: %v", filepath.Base(p.cmd.Path), p.err)
		default:
		}
		if ok() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", filepath.Base(p.cmd.Path), within)
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// nginxServer is nginx serving a temp directory with WebDAV PUT.
type nginxServer struct {
	URL  string // http://127.0.0.1:PORT
	Root string // what it serves
	Dir  string
}

// startNginx runs nginx as the current user with the configuration Bazel's
// docs give for an HTTP cache; location adds directives (auth) to the
// served location.
func startNginx(t testing.TB, location string) *nginxServer {
	t.Helper()
	bin := requireBinary(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	userLine := ""
	if os.Geteuid() == 0 {
		// As root nginx would drop its workers to "nobody", who cannot
		// write the test's temp dir.
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		userLine = fmt.Sprintf("user %s %s;", u.Username, g.Name)
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
%[1]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen 127.0.0.1:%[3]d;
		root %[4]s;
		client_max_body_size 0;
		location / {
			dav_methods PUT;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
			%[5]s
		}
	}
}
`, userLine, dir, port, root, location)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := startProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = p.waitReady(func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second)
	if err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		p.stop()
		t.Fatalf("nginx: %v\n%s", err, out)
	}
	t.Cleanup(p.stop)
	return &nginxServer{URL: "http://" + addr, Root: root, Dir: dir}
}

// s3Server is an S3-compatible server shared by the tests of this process;
// each test gets its own bucket.
type s3Server struct {
	Name     string
	Endpoint string
	User     string
	Pass     string
	stop     func()
}

var (
	sharedMu      sync.Mutex
	sharedServers = map[string]*s3Server{}
	sharedErrs    = map[string]error{}
)

func stopSharedServers() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, s := range sharedServers {
		s.stop()
	}
}

// sharedS3 starts (once per process) the named S3 server. MinIO is
// required under PIPE_REQUIRE_ALL=1; moto is an optional second opinion
// (it needs the launcher in ../shared, which CI checkouts may lack), so it
// only ever skips.
func sharedS3(t testing.TB, name string) *s3Server {
	t.Helper()
	var bin string
	switch name {
	case "minio":
		bin = requireBinary(t, "minio", goBin("minio")...)
	case "moto":
		var err error
		if bin, err = exec.LookPath("python3"); err == nil {
			_, err = os.Stat(motoLauncher())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "SKIP %s: moto is optional and unavailable: %v\n", t.Name(), err)
			t.Skipf("moto unavailable: %v", err)
		}
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := sharedServers[name]; s != nil {
		return s
	}
	err := sharedErrs[name]
	if err == nil {
		var s *s3Server
		switch name {
		case "minio":
			s, err = launchMinio(bin)
		case "moto":
			s, err = launchMoto(bin)
		}
		if err == nil {
			sharedServers[name] = s
			return s
		}
		sharedErrs[name] = err
	}
	if name == "moto" {
		fmt.Fprintf(os.Stderr, "SKIP %s: moto is optional and did not start: %v\n", t.Name(), err)
		t.Skipf("moto did not start: %v", err)
	}
	t.Fatal(err)
	return nil
}

func motoLauncher() string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "shared", "moto", "moto_server.py"))
	return p
}

func httpOK(u string) bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func launchMinio(bin string) (*s3Server, error) {
	dir, err := os.MkdirTemp("", "pipe-minio-")
	if err != nil {
		return nil, err
	}
	// A throwaway fixed port pair picked now; minio refuses port 0.
	l1, _ := net.Listen("tcp", "127.0.0.1:0")
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	port, cport := l1.Addr().(*net.TCPAddr).Port, l2.Addr().(*net.TCPAddr).Port
	l1.Close()
	l2.Close()
	s := &s3Server{Name: "minio", Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), User: "pipetest", Pass: "pipetest-secret"}
	cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
		"--address", fmt.Sprintf("127.0.0.1:%d", port),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", cport), "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.User, "MINIO_ROOT_PASSWORD="+s.Pass,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	s.stop = func() {
		p.stop()
		logf.Close()
		os.RemoveAll(dir)
	}
	if err := p.waitReady(func() bool { return httpOK(s.Endpoint + "/minio/health/ready") }, 60*time.Second); err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
		s.stop()
		return nil, fmt.Errorf("minio: %v\n%s", err, out)
	}
	return s, nil
}

func launchMoto(bin string) (*s3Server, error) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &s3Server{Name: "moto", Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), User: "test", Pass: "test"}
	cmd := exec.Command(bin, motoLauncher(), "-p", fmt.Sprint(port))
	logf, err := os.CreateTemp("", "pipe-moto-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	s.stop = func() {
		p.stop()
		logf.Close()
		os.Remove(logf.Name())
	}
	if err := p.waitReady(func() bool { return httpOK(s.Endpoint + "/moto-api/") }, 60*time.Second); err != nil {
		out, _ := os.ReadFile(logf.Name())
		s.stop()
		return nil, fmt.Errorf("moto: %v\n%s", err, out)
	}
	return s, nil
}

var bucketSeq atomic.Int64

// s3Config passes the server's endpoint and credentials explicitly, so no
// test depends on, or leaks, process-wide AWS_* variables.
func (s *s3Server) config(endpoint string) []func(*config.LoadOptions) error {
	return []func(*config.LoadOptions) error{
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.User, s.Pass, "")),
		config.WithBaseEndpoint(endpoint),
	}
}

// newBucket creates a fresh bucket for one test.
func (s *s3Server) newBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("pipe-test-%d-%d", os.Getpid(), bucketSeq.Add(1))
	cfg, err := config.LoadDefaultConfig(context.Background(), s.config(s.Endpoint)...)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket on %s: %v", s.Name, err)
	}
	return name
}

// backend returns an S3 backend for s3://bucket/prefix reaching the server
// at endpoint (the server itself, or a faultProxy in front of it).
func (s *s3Server) backend(t testing.TB, bucket, prefix, endpoint string) *s3Backend {
	t.Helper()
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	b, err := newS3Backend(context.Background(), "s3://"+bucket+"/"+prefix, s.config(endpoint)...)
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
