// Package cachetest starts the real servers remote-cache tests use: nginx
// with WebDAV PUT (the HTTP cache Bazel's documentation describes), MinIO
// and moto for S3. A test that needs a program that is not installed is
// skipped with a loud message, or fails when PIPE_REQUIRE_ALL=1 so CI
// cannot pass by skipping.
package cachetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pipebuild/pipe/internal/deploy/mototest"
)

var installHints = map[string]string{
	"nginx":   "apt-get install -y nginx",
	"minio":   "go install github.com/minio/minio@latest",
	"python3": "install Python 3 with moto (see ENVIRONMENT.md)",
}

// RequireBinary returns the path of a program a test needs. When it is
// missing the test is skipped with a message on stderr (visible without
// -v), unless PIPE_REQUIRE_ALL=1, which makes it a failure.
func RequireBinary(t testing.TB, name string, also ...string) string {
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

func GoBin(name string) []string {
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

func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is a started server process.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	err  error         // its exit status, once done is closed
}

func StartProc(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// WaitReady polls until ok reports the server up, the process exits, or
// the deadline passes.
func (p *Proc) WaitReady(ok func() bool, within time.Duration) error {
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

func (p *Proc) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Nginx is nginx serving a temp directory with WebDAV PUT.
type Nginx struct {
	URL  string // http://127.0.0.1:PORT
	Root string // what it serves
	Dir  string
}

// StartNginx runs nginx as the current user with the configuration Bazel's
// docs give for an HTTP cache; location adds directives (auth) to the
// served location.
func StartNginx(t testing.TB, location string) *Nginx {
	t.Helper()
	bin := RequireBinary(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
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
	p, err := StartProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = p.WaitReady(func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second)
	if err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		p.Stop()
		t.Fatalf("nginx: %v\n%s", err, out)
	}
	t.Cleanup(p.Stop)
	return &Nginx{URL: "http://" + addr, Root: root, Dir: dir}
}

// S3Server is an S3-compatible server shared by the tests of this process;
// each test gets its own bucket.
type S3Server struct {
	Name     string
	Endpoint string
	User     string
	Pass     string
	stop     func()
}

var (
	sharedMu      sync.Mutex
	sharedServers = map[string]*S3Server{}
	sharedErrs    = map[string]error{}
)

func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, s := range sharedServers {
		s.stop()
	}
}

// SharedS3 starts (once per process) the named S3 server. MinIO is
// required under PIPE_REQUIRE_ALL=1; moto is an optional second opinion
// (it needs the launcher in ../shared, which CI checkouts may lack), so it
// only ever skips.
func SharedS3(t testing.TB, name string) *S3Server {
	t.Helper()
	var bin string
	switch name {
	case "minio":
		bin = RequireBinary(t, "minio", GoBin("minio")...)
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
		var s *S3Server
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
	p, _ := mototest.Launcher()
	return p
}

func HTTPOK(u string) bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func launchMinio(bin string) (*S3Server, error) {
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
	s := &S3Server{Name: "minio", Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), User: "pipetest", Pass: "pipetest-secret"}
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
	p, err := StartProc(cmd)
	if err != nil {
		return nil, err
	}
	s.stop = func() {
		p.Stop()
		logf.Close()
		os.RemoveAll(dir)
	}
	if err := p.WaitReady(func() bool { return HTTPOK(s.Endpoint + "/minio/health/ready") }, 60*time.Second); err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
		s.stop()
		return nil, fmt.Errorf("minio: %v\n%s", err, out)
	}
	return s, nil
}

func launchMoto(bin string) (*S3Server, error) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &S3Server{Name: "moto", Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), User: "test", Pass: "test"}
	cmd := exec.Command(bin, motoLauncher(), "-p", fmt.Sprint(port))
	logf, err := os.CreateTemp("", "pipe-moto-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := StartProc(cmd)
	if err != nil {
		return nil, err
	}
	s.stop = func() {
		p.Stop()
		logf.Close()
		os.Remove(logf.Name())
	}
	if err := p.WaitReady(func() bool { return HTTPOK(s.Endpoint + "/moto-api/") }, 60*time.Second); err != nil {
		out, _ := os.ReadFile(logf.Name())
		s.stop()
		return nil, fmt.Errorf("moto: %v\n%s", err, out)
	}
	return s, nil
}

var bucketSeq atomic.Int64

// s3Config passes the server's endpoint and credentials explicitly, so no
// test depends on, or leaks, process-wide AWS_* variables.
func (s *S3Server) Config(endpoint string) []func(*config.LoadOptions) error {
	return []func(*config.LoadOptions) error{
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s.User, s.Pass, "")),
		config.WithBaseEndpoint(endpoint),
	}
}

// NewBucket creates a fresh bucket for one test.
func (s *S3Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("pipe-test-%d-%d", os.Getpid(), bucketSeq.Add(1))
	cfg, err := config.LoadDefaultConfig(context.Background(), s.Config(s.Endpoint)...)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket on %s: %v", s.Name, err)
	}
	return name
}
