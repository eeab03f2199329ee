package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// distDigests maps every file under dist/ to its sha256 and mode.
func distDigests(t *testing.T, ws *workspace) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := ws.path("dist")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(root, p)
		out[rel] = fmt.Sprintf("%x %v", sha256.Sum256(b), fi.Mode().Perm())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var remoteSummaryRE = regexp.MustCompile(`; remote: (\d+) hits, (\d+) misses, [^,]+ down, [^\n]+ up`)

// sharedRemote builds examples/hello in two clones, each with its own
// local cache, sharing one remote: the first uploads, the second executes
// nothing and its dist/ is the first's, byte for byte.
func sharedRemote(t *testing.T, url string, env []string) {
	t.Helper()
	first := helloWorkspace(t)
	b := first.buildEnvOK(t, env, "//...", "--remote-cache", url, "--remote-upload")
	if n := len(b.labels("executed")); n != 4 {
		t.Fatalf("first clone executed %d actions, want 4:\n%s", n, b.stderr)
	}
	if m := remoteSummaryRE.FindStringSubmatch(b.stderr); m == nil || m[1] != "0" || m[2] != "4" {
		t.Errorf("first clone's summary lacks 0 hits, 4 misses:\n%s", b.stderr)
	}

	second := helloWorkspace(t)
	b = second.buildEnvOK(t, env, "//...", "--remote-cache", url)
	if n := len(b.labels("executed")); n != 0 {
		t.Fatalf("second clone executed %d actions, want 0:\n%s", n, b.stderr)
	}
	if m := remoteSummaryRE.FindStringSubmatch(b.stderr); m == nil || m[1] != "4" || m[2] != "0" {
		t.Errorf("second clone's summary lacks 4 hits, 0 misses:\n%s", b.stderr)
	}
	a, c := distDigests(t, first), distDigests(t, second)
	if len(a) == 0 || fmt.Sprint(a) != fmt.Sprint(c) {
		t.Errorf("dist/ differs between the clones:\n%v\n%v", a, c)
	}
	// The hits filled the second clone's local cache: without the remote it
	// is still a no-op.
	b = second.buildEnvOK(t, env, "//...")
	if n := len(b.labels("executed")); n != 0 {
		t.Errorf("after remote hits, a local build executed %d actions", n)
	}
}

func TestRemoteCacheHTTPNginx(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNginx(t, "")
	sharedRemote(t, srv.URL+"/pipe", nil)
	if _, err := os.Stat(filepath.Join(srv.Root, "pipe", "ac")); err != nil {
		t.Errorf("nothing under ac/ on the server: %v", err)
	}
}

func TestRemoteCacheS3MinIO(t *testing.T) {
	t.Parallel()
	srv := testenv.SharedS3(t, "minio")
	bucket := srv.NewBucket(t)
	env := []string{
		"AWS_ACCESS_KEY_ID=" + srv.User, "AWS_SECRET_ACCESS_KEY=" + srv.Pass,
		"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL_S3=" + srv.Endpoint,
	}
	sharedRemote(t, "s3://"+bucket+"/ci/pipe", env)
}

// A remote that is down never fails a build: one warning, local execution.
func TestRemoteCacheDownBuildsLocally(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	port := testenv.FreePort(t)
	b := ws.buildEnvOK(t, nil, "//...", "--remote-cache", fmt.Sprintf("http://127.0.0.1:%d/pipe", port), "--remote-timeout", "500ms")
	if n := len(b.labels("executed")); n != 4 {
		t.Errorf("executed %d, want 4", n)
	}
	if got := strings.Count(b.stderr, "warning: remote cache"); got != 1 {
		t.Errorf("%d remote warnings, want exactly 1:\n%s", got, b.stderr)
	}
}

func TestRemoteCacheUsage(t *testing.T) {
	t.Parallel()
	ws := helloWorkspace(t)
	for _, args := range [][]string{
		{"build", "--remote-upload"},
		{"build", "--remote-cache", "ftp://x/y"},
	} {
		if _, stderr, code := runPipe(t, ws, args...); code != 2 {
			t.Errorf("pipe %s: exit %d, want 2\n%s", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestS3RemoteCacheWithoutCredentials: with no AWS credentials anywhere,
// an S3 remote cache costs one pipe warning naming the credential chain,
// the SDK prints nothing of its own (such as its IMDSv1 fallback), the
// chain is walked once, not once per action, and the build goes on
// locally.
func TestS3RemoteCacheWithoutCredentials(t *testing.T) {
	t.Parallel()
	// A TEST DOUBLE for the EC2 instance metadata service as it answers
	// off EC2 behind some proxies: 403 to everything, token requests too.
	var imds atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		imds.Add(1)
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-credentials"),
		"AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=", "AWS_CONTAINER_CREDENTIALS_FULL_URI=",
		"AWS_EC2_METADATA_DISABLED=false",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + srv.URL,
		// Never reached (no credentials, no request), and never the internet.
		"AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_REGION=us-east-1",
	}
	ws := helloWorkspace(t)
	b := ws.buildEnvOK(t, env, "//...", "--remote-cache", "s3://pipe-cache/ci")
	if n := len(b.labels("executed")); n != 4 {
		t.Errorf("executed %d actions, want all 4 locally:\n%s", n, b.stderr)
	}
	var warnings []string
	for _, l := range strings.Split(b.stderr, "\n") {
		if strings.HasPrefix(l, "SDK ") || strings.Contains(l, "WARN") {
			t.Errorf("the AWS SDK printed into the build's output: %q", l)
		}
		if strings.HasPrefix(l, "pipe: warning:") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d warnings, want exactly one:\n%s", len(warnings), b.stderr)
	}
	for _, want := range []string{"s3://pipe-cache/ci", "no AWS credentials", "AWS_ACCESS_KEY_ID", "~/.aws/credentials", "EC2 instance metadata", "building without it"} {
		if !strings.Contains(warnings[0], want) {
			t.Errorf("the warning does not say %q: %s", want, warnings[0])
		}
	}
	// One walk of the chain: a token request and a role lookup, with the
	// SDK's retries, not a walk per action.
	if n := imds.Load(); n == 0 || n > 8 {
		t.Errorf("the instance metadata service was asked %d times, want one walk of the chain", n)
	}
}
