package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is an S3-compatible server shared by the tests of this process;
// each test gets its own bucket.
type S3Server struct {
	Name     string
	Endpoint string
	User     string
	Pass     string
	stop     func()
}

// The shared servers live as long as the test process: starting MinIO
// takes seconds, and every S3 test of a package uses the same one.
// StopShared, from TestMain, stops them.
var (
	sharedMu      sync.Mutex
	sharedServers = map[string]*S3Server{}
	sharedErrs    = map[string]error{}
)

// StopShared stops the servers SharedS3 started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for _, s := range sharedServers {
		s.stop()
	}
}

// SharedS3 starts (once per process) the named S3 server, "minio" or
// "moto". MinIO is required under PIPE_REQUIRE_ALL=1; moto is an optional
// second opinion, so it only ever skips.
func SharedS3(t testing.TB, name string) *S3Server {
	t.Helper()
	var bin string
	switch name {
	case "minio":
		bin = RequireBinary(t, "minio", goBin("minio")...)
	case "moto":
		if err := MotoAvailable(); err != nil {
			fmt.Fprintf(os.Stderr, "SKIP %s: moto is optional and unavailable: %v\n", t.Name(), err)
			t.Skipf("moto unavailable: %v", err)
		}
	default:
		t.Fatalf("no S3 server %q; want minio or moto", name)
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
			s, err = launchMotoS3()
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
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	s.stop = func() {
		p.Stop()
		logf.Close()
		os.RemoveAll(dir)
	}
	if err := p.WaitReady(func() bool { return httpOK(s.Endpoint + "/minio/health/ready") }, 60*time.Second); err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
		s.stop()
		return nil, fmt.Errorf("minio: %v\n%s", err, out)
	}
	return s, nil
}

// launchMotoS3 is StartMoto as an S3 server: the same launcher the deploy
// tests use, so there is one way to run moto.
func launchMotoS3() (*S3Server, error) {
	m, err := StartMoto()
	if err != nil {
		return nil, err
	}
	return &S3Server{Name: "moto", Endpoint: m.URL, User: "test", Pass: "test", stop: m.Close}, nil
}

var bucketSeq atomic.Int64

// Config passes the server's endpoint and credentials explicitly, so no
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
