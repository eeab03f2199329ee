// Package mototest runs the moto AWS emulator for tests, bootstraps it the
// way `cdk bootstrap` leaves an account, and counts the write calls that
// reach it through a loopback proxy.
package mototest

import (
	"bytes"
	_ "embed"
	"errors"
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
	"sync"
	"testing"
	"time"
)

// Account and Region are moto's defaults; Bucket and Param are what
// `cdk bootstrap` creates there.
const (
	Account = "123456789012"
	Region  = "us-east-1"
	Param   = "/cdk-bootstrap/hnb659fds/version"
)

// Bucket is the bootstrap bucket of a region.
func Bucket(region string) string {
	return "cdk-hnb659fds-assets-" + Account + "-" + region
}

//go:embed moto_extra.py
var extraPy []byte

// Launcher finds the moto launcher that fixes moto's change-set bugs:
// $PIPE_MOTO_SERVER, else ../shared/moto/moto_server.py beside the
// repository (where the machines keep the maintained copy), else the copy
// kept in this package, so a checkout anywhere still runs the tests.
func Launcher() (string, error) {
	if p := os.Getenv("PIPE_MOTO_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PIPE_MOTO_SERVER: %w", err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			shared := filepath.Join(dir, "..", "shared", "moto", "moto_server.py")
			if _, err := os.Stat(shared); err == nil {
				return shared, nil
			}
			own := filepath.Join(dir, "internal", "deploy", "mototest", "moto_server.py")
			if _, err := os.Stat(own); err != nil {
				return "", fmt.Errorf("moto launcher: neither %s nor %s: %w", shared, own, err)
			}
			return own, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; set PIPE_MOTO_SERVER")
		}
		dir = parent
	}
}

// Available says why moto cannot run here, or nil.
func Available() error {
	if _, err := Launcher(); err != nil {
		return err
	}
	out, err := exec.Command("python3", "-c", "import moto.server, flask").CombinedOutput()
	if err != nil {
		return fmt.Errorf("python3 cannot import moto: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Require skips the test loudly when moto is missing, and fails it under
// PIPE_REQUIRE_ALL=1 (CI installs every component).
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("PIPE_REQUIRE_ALL") == "1" {
			t.Fatalf("moto is required (PIPE_REQUIRE_ALL=1): %v", err)
		}
		t.Skipf("SKIP: moto is not available, AWS deploy tests not run: %v", err)
	}
}

// Server is a running moto.
type Server struct {
	URL   string // http://127.0.0.1:PORT
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dir   string
	log   *lockedWriter
}

// Start runs moto on a free loopback port and waits until it answers. The
// server exits when Close is called or when this process dies (it watches
// its standard input).
func Start() (*Server, error) {
	launcher, err := Launcher()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pipe-moto-")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "moto_extra.py")
	if err := os.WriteFile(script, extraPy, 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, log: &lockedWriter{w: &bytes.Buffer{}}}
	s.cmd = exec.Command("python3", script, launcher, "-p", fmt.Sprint(port), "-H", "127.0.0.1")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("moto did not answer on %s within 30 s: %s", s.URL, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the server.
func (s *Server) Close() {
	if s.stdin != nil {
		s.stdin.Close()
	}
	if s.cmd != nil && s.cmd.Process != nil {
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(s.dir)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Env is the environment that points the AWS SDK (and the CDK CLI) at
// endpoint with moto's account's fake credentials.
func Env(endpoint string) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		// Keep the developer's own profile and files out of the tests.
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Bootstrap creates what `cdk bootstrap` leaves in a region: the asset
// bucket and the version parameter (version 30).
func (s *Server) Bootstrap(region string) error {
	return s.BootstrapVersion(region, "30")
}

// BootstrapVersion is Bootstrap with a chosen version.
func (s *Server) BootstrapVersion(region, version string) error {
	body := ""
	if region != "us-east-1" {
		body = `<CreateBucketConfiguration><LocationConstraint>` + region + `</LocationConstraint></CreateBucketConfiguration>`
	}
	if b, err := s.Do("s3", region, http.MethodPut, "/"+Bucket(region), "", body); err != nil && !bytes.Contains(b, []byte("BucketAlreadyOwnedByYou")) {
		return fmt.Errorf("create bootstrap bucket: %w", err)
	}
	payload := fmt.Sprintf(`{"Name":%q,"Value":%q,"Type":"String","Overwrite":true}`, Param, version)
	if _, err := s.Do("ssm", region, http.MethodPost, "/", "AmazonSSM.PutParameter", payload); err != nil {
		return fmt.Errorf("put bootstrap parameter: %w", err)
	}
	return nil
}

// Do sends a raw request to moto, which accepts any signature as long as
// the credential scope names the service and region, and returns the
// response body. target is the JSON protocol's X-Amz-Target, if any.
func (s *Server) Do(service, region, method, path, target, body string) ([]byte, error) {
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=test/20240101/%s/%s/aws4_request, SignedHeaders=host, Signature=0", region, service))
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return b, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, nil
}

// Call is one request the proxy forwarded.
type Call struct {
	Service string // cloudformation, s3, ssm, sts…
	Action  string // Action / X-Amz-Target operation, or METHOD for S3
	Stack   string // StackName of CloudFormation calls
	Path    string
	Write   bool
	Start   time.Time
	End     time.Time
}

func (c Call) String() string {
	s := c.Service + " " + c.Action
	if c.Stack != "" {
		s += " " + c.Stack
	}
	if c.Service == "s3" {
		s += " " + c.Path
	}
	return s
}

// CountingProxy is a test double in front of moto: a loopback reverse
// proxy that records every call, so tests can count write calls (any
// CloudFormation, S3 or SSM request whose action is not Describe*, Get*,
// List* or Head*) and see when each stack's calls happened.
type CountingProxy struct {
	URL string
	// Delay, when set, holds every write call that long before forwarding
	// it, so that concurrent deployments visibly overlap.
	Delay time.Duration
	// OnRequest, when set, sees each call before it is forwarded.
	OnRequest func(Call)

	srv   *http.Server
	mu    sync.Mutex
	calls []Call
}

// NewCountingProxy starts a proxy to target on a free loopback port.
func NewCountingProxy(target string) (*CountingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{URL: "http://" + l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	// A client that gives up (a test cancelling a deploy) is expected.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := classify(r)
		c.Start = time.Now()
		if p.OnRequest != nil {
			p.OnRequest(c)
		}
		if c.Write && p.Delay > 0 {
			time.Sleep(p.Delay)
		}
		rp.ServeHTTP(w, r)
		c.End = time.Now()
		p.mu.Lock()
		p.calls = append(p.calls, c)
		p.mu.Unlock()
	})}
	go p.srv.Serve(l)
	return p, nil
}

// Close stops the proxy.
func (p *CountingProxy) Close() { p.srv.Close() }

// Reset forgets the calls recorded so far.
func (p *CountingProxy) Reset() {
	p.mu.Lock()
	p.calls = nil
	p.mu.Unlock()
}

// Calls returns the calls recorded since the last Reset.
func (p *CountingProxy) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Call(nil), p.calls...)
}

// Writes returns the write calls recorded since the last Reset.
func (p *CountingProxy) Writes() []Call {
	var out []Call
	for _, c := range p.Calls() {
		if c.Write && c.Service != "sts" {
			out = append(out, c)
		}
	}
	return out
}

// classify reads what a request does: the service from the signature's
// credential scope, the operation from the query-protocol form, the JSON
// protocol's target header, or (S3) the method.
func classify(r *http.Request) Call {
	c := Call{Path: r.URL.Path}
	auth := r.Header.Get("Authorization")
	if i := strings.Index(auth, "Credential="); i >= 0 {
		parts := strings.Split(strings.SplitN(auth[i+len("Credential="):], ",", 2)[0], "/")
		if len(parts) >= 4 {
			c.Service = parts[3]
		}
	}
	switch {
	case r.Header.Get("X-Amz-Target") != "":
		t := r.Header.Get("X-Amz-Target")
		c.Action = t[strings.LastIndex(t, ".")+1:]
	case c.Service == "s3":
		c.Action = r.Method
		c.Write = r.Method != http.MethodGet && r.Method != http.MethodHead
		return c
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		q, _ := url.ParseQuery(string(body))
		c.Action = q.Get("Action")
		c.Stack = q.Get("StackName")
	default:
		c.Action = r.URL.Query().Get("Action")
	}
	c.Write = true
	for _, p := range []string{"Describe", "Get", "List", "Head"} {
		if strings.HasPrefix(c.Action, p) {
			c.Write = false
		}
	}
	return c
}

// Log returns what the server printed, for failure messages.
func (s *Server) Log() string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.log.w.(*bytes.Buffer).String()
}
