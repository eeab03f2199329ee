package testenv

// moto, the AWS emulator: started with the launcher that fixes its
// CloudFormation change-set bugs, and bootstrapped the way `cdk bootstrap`
// leaves an account.

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Account and Region are moto's defaults; BootstrapBucket and
// BootstrapParam are what `cdk bootstrap` creates there.
const (
	Account        = "123456789012"
	Region         = "us-east-1"
	BootstrapParam = "/cdk-bootstrap/hnb659fds/version"
)

// BootstrapBucket is the bootstrap bucket of a region.
func BootstrapBucket(region string) string {
	return "cdk-hnb659fds-assets-" + Account + "-" + region
}

// MotoLauncher finds the moto launcher that fixes moto's change-set bugs:
// $PIPE_MOTO_SERVER, else ../shared/moto/moto_server.py beside the
// repository (where the machines keep the maintained copy), else the copy
// in tools/moto, so a checkout anywhere still runs the tests.
func MotoLauncher() (string, error) {
	if p := os.Getenv("PIPE_MOTO_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PIPE_MOTO_SERVER: %w", err)
		}
		return p, nil
	}
	dir, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("%w; set PIPE_MOTO_SERVER", err)
	}
	shared := filepath.Join(dir, "..", "shared", "moto", "moto_server.py")
	if _, err := os.Stat(shared); err == nil {
		return shared, nil
	}
	own := filepath.Join(dir, "tools", "moto", "moto_server.py")
	if _, err := os.Stat(own); err != nil {
		return "", fmt.Errorf("moto launcher: neither %s nor %s: %w", shared, own, err)
	}
	return own, nil
}

// MotoAvailable says why moto cannot run here, or nil.
func MotoAvailable() error {
	if _, err := MotoLauncher(); err != nil {
		return err
	}
	out, err := exec.Command("python3", "-c", "import moto.server, flask").CombinedOutput()
	if err != nil {
		return fmt.Errorf("python3 cannot import moto: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// RequireMoto stops a test that needs moto where it cannot run, as Need
// says.
func RequireMoto(t testing.TB) {
	t.Helper()
	if err := MotoAvailable(); err != nil {
		Need(t, "moto", fmt.Sprintf("%v (python3 -m pip install 'moto[server]==5.2.1')", err))
	}
}

// Moto is a running moto server.
type Moto struct {
	URL   string // http://127.0.0.1:PORT
	cmd   *exec.Cmd
	stdin io.WriteCloser
	dir   string
	log   *lockedWriter
}

// StartMoto runs moto on a free loopback port and waits until it answers.
// The server exits when Close is called or when this process dies (it
// watches its standard input).
func StartMoto() (*Moto, error) {
	launcher, err := MotoLauncher()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pipe-moto-")
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "tools", "moto", "serve.py")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, log: &lockedWriter{w: &bytes.Buffer{}}}
	s.cmd = exec.Command("python3", script, launcher, "-p", fmt.Sprint(port), "-H", "127.0.0.1")
	s.cmd.Env = append(os.Environ(), "PIPE_MOTO_EXIT_WITH_STDIN=1")
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
func (s *Moto) Close() {
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

// AWSEnv is the environment that points the AWS SDK (and the CDK CLI) at
// endpoint with moto's account's fake credentials.
func AWSEnv(endpoint string) []string {
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
func (s *Moto) Bootstrap(region string) error {
	return s.BootstrapVersion(region, "30")
}

// BootstrapVersion is Bootstrap with a chosen version.
func (s *Moto) BootstrapVersion(region, version string) error {
	body := ""
	if region != "us-east-1" {
		body = `<CreateBucketConfiguration><LocationConstraint>` + region + `</LocationConstraint></CreateBucketConfiguration>`
	}
	if b, err := s.Do("s3", region, http.MethodPut, "/"+BootstrapBucket(region), "", body); err != nil && !bytes.Contains(b, []byte("BucketAlreadyOwnedByYou")) {
		return fmt.Errorf("create bootstrap bucket: %w", err)
	}
	payload := fmt.Sprintf(`{"Name":%q,"Value":%q,"Type":"String","Overwrite":true}`, BootstrapParam, version)
	if _, err := s.Do("ssm", region, http.MethodPost, "/", "AmazonSSM.PutParameter", payload); err != nil {
		return fmt.Errorf("put bootstrap parameter: %w", err)
	}
	return nil
}

// Do sends a raw request to moto, which accepts any signature as long as
// the credential scope names the service and region, and returns the
// response body. target is the JSON protocol's X-Amz-Target, if any.
func (s *Moto) Do(service, region, method, path, target, body string) ([]byte, error) {
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

// Log returns what the server printed, for failure messages.
func (s *Moto) Log() string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.log.w.(*bytes.Buffer).String()
}
