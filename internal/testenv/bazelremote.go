package testenv

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BazelRemote is bazel-remote, a real REAPI cache server (gRPC and Bazel's
// HTTP protocol on one store), on loopback.
type BazelRemote struct {
	GRPCAddr string // 127.0.0.1:PORT
	HTTPURL  string // http(s)://127.0.0.1:PORT
	Dir      string // its store
	p        *proc
}

// BazelRemoteOptions change how StartBazelRemote runs the server.
type BazelRemoteOptions struct {
	// TLSCert and TLSKey, PEM files, make both listeners serve TLS.
	TLSCert, TLSKey string
	// Htpasswd requires basic auth (gRPC and HTTP) from the users it lists.
	Htpasswd string
}

// bazelRemoteHint says how to get the binary; .ci/run does this.
const bazelRemoteHint = "build it from the pinned tools module: (cd tools/bazel-remote && go build -o \"$(go env GOPATH)/bin/bazel-remote\" github.com/buchgr/bazel-remote/v2), as .ci/run does"

// StartBazelRemote runs bazel-remote on two free loopback ports with a
// fresh store, stopped when the test ends. Without the binary the test
// stops as Need says.
func StartBazelRemote(t testing.TB, opt BazelRemoteOptions) *BazelRemote {
	t.Helper()
	bin := RequireBinary(t, "bazel-remote", goBin("bazel-remote")...)
	var lastErr error
	// A port picked free may be taken before the server binds it; one more
	// try with new ports makes that race harmless.
	for range 2 {
		b, err := launchBazelRemote(bin, t.TempDir(), opt)
		if err == nil {
			t.Cleanup(b.Stop)
			return b
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

func launchBazelRemote(bin, dir string, opt BazelRemoteOptions) (*BazelRemote, error) {
	gport, err := freePort()
	if err != nil {
		return nil, err
	}
	hport, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &BazelRemote{
		GRPCAddr: fmt.Sprintf("127.0.0.1:%d", gport),
		HTTPURL:  fmt.Sprintf("http://127.0.0.1:%d", hport),
		Dir:      filepath.Join(dir, "store"),
	}
	args := []string{
		"--dir", b.Dir, "--max_size", "1",
		"--grpc_address", b.GRPCAddr, "--http_address", fmt.Sprintf("127.0.0.1:%d", hport),
		"--access_log_level", "none",
	}
	if opt.TLSCert != "" {
		args = append(args, "--tls_cert_file", opt.TLSCert, "--tls_key_file", opt.TLSKey)
		b.HTTPURL = strings.Replace(b.HTTPURL, "http:", "https:", 1)
	}
	if opt.Htpasswd != "" {
		args = append(args, "--htpasswd_file", opt.Htpasswd)
	}
	logPath := filepath.Join(dir, "bazel-remote.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	b.p, err = startProc(cmd)
	if err != nil {
		return nil, err
	}
	// /status answers once the store is loaded and both servers listen;
	// with TLS it is served over TLS by a certificate the probe need not
	// trust.
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	ready := func() bool {
		resp, err := client.Get(b.HTTPURL + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		// With basic auth on, an answer of any kind means it is up.
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
	}
	if err := b.p.WaitReady(ready, 30*time.Second); err != nil {
		b.p.Stop()
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("bazel-remote: %v\n%s", err, out)
	}
	return b, nil
}

// Stop ends the server gracefully.
func (b *BazelRemote) Stop() { b.p.Stop() }

// Kill ends the server abruptly, as a crash would: open connections are
// cut and the ports refuse new ones.
func (b *BazelRemote) Kill() {
	b.p.cmd.Process.Kill()
	<-b.p.done
}
