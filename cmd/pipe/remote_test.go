package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
