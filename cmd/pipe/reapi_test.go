package main

// The REAPI gRPC remote cache against bazel-remote, faults through
// testenv.GRPCProxy (a test double in front of the real server), and
// pipe build --shard.

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/pipebuild/pipe/internal/testenv"
)

func TestRemoteCacheGRPCBazelRemote(t *testing.T) {
	t.Parallel()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	sharedRemote(t, "grpc://"+srv.GRPCAddr, nil)
	// The same server's HTTP interface serves what gRPC stored: a clone
	// reading it that way executes nothing either.
	ws := helloWorkspace(t)
	b := ws.buildEnvOK(t, nil, "//...", "--remote-cache", srv.HTTPURL)
	if n := len(b.labels("executed")); n != 0 {
		t.Errorf("a clone reading bazel-remote over HTTP executed %d actions:\n%s", n, b.stderr)
	}
}

// Settings from the workspace and the environment reach the gRPC
// backend: the instance name, headers.
func TestRemoteCacheGRPCSettings(t *testing.T) {
	t.Parallel()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	ws := helloWorkspace(t)
	ws.write(t, "WORKSPACE.star", fmt.Sprintf(`workspace(
    name = "hello",
    remote_cache = "grpc://%s",
    remote_instance_name = "team/main",
    remote_headers = ["x-team=pipe"],
)
`, srv.GRPCAddr))
	b := ws.buildEnvOK(t, []string{"PIPE_REMOTE_HEADERS=x-ci=1"}, "//...", "--remote-upload")
	if n := len(b.labels("executed")); n != 4 || strings.Contains(b.stderr, "warning") {
		t.Fatalf("executed %d:\n%s", n, b.stderr)
	}
	other := helloWorkspace(t)
	b = other.buildEnvOK(t, nil, "//...", "--remote-cache", "grpc://"+srv.GRPCAddr, "--remote-instance-name", "team/main", "--remote-header", "x-team=pipe")
	if n := len(b.labels("executed")); n != 0 {
		t.Errorf("executed %d:\n%s", n, b.stderr)
	}
	for _, bad := range [][]string{
		{"--remote-cache", "grpc://" + srv.GRPCAddr, "--remote-header", "no-equals"},
		{"--remote-cache", "grpc://" + srv.GRPCAddr, "--remote-instance-name", "a//b"},
		{"--remote-cache", "grpc://" + srv.GRPCAddr + "/instance"},
		{"--remote-cache", "http://127.0.0.1:1/x", "--remote-instance-name", "main"},
		{"--remote-cache", "grpc://" + srv.GRPCAddr, "--remote-tls-ca", filepath.Join(t.TempDir(), "missing.pem")},
	} {
		if _, stderr, code := runPipe(t, other, append([]string{"build"}, bad...)...); code != 2 {
			t.Errorf("pipe build %s: exit %d, want 2\n%s", strings.Join(bad, " "), code, stderr)
		}
	}
}

// Faults between pipe and a real REAPI server never fail a build: every
// action runs locally, outputs are right, one warning.
func TestRemoteCacheGRPCFaults(t *testing.T) {
	t.Parallel()
	local := helloWorkspace(t)
	local.buildOK(t, "//...")
	want := distDigests(t, local)
	for _, c := range []struct {
		name  string
		fault testenv.GRPCFault
		kill  bool // kill bazel-remote itself before the build
	}{
		{"server killed", testenv.GRPCFault{}, true},
		{"killed mid-build", testenv.GRPCFault{KillAfter: 3}, false},
		{"stalled", testenv.GRPCFault{Stall: true}, false},
		{"RESOURCE_EXHAUSTED", testenv.GRPCFault{Code: codes.ResourceExhausted}, false},
		{"UNAVAILABLE", testenv.GRPCFault{Code: codes.Unavailable}, false},
		{"uploads UNAVAILABLE", testenv.GRPCFault{Method: "Update", Code: codes.Unavailable}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
			p := testenv.NewGRPCProxy(t, srv.GRPCAddr)
			p.Set(c.fault)
			if c.kill {
				srv.Kill()
			}
			ws := helloWorkspace(t)
			b := ws.buildEnvOK(t, nil, "//...", "--remote-cache", "grpc://"+p.Addr, "--remote-upload", "--remote-timeout", "500ms")
			if n := len(b.labels("executed")); n != 4 {
				t.Errorf("executed %d, want 4:\n%s", n, b.stderr)
			}
			if got := strings.Count(b.stderr, "warning: remote cache"); got != 1 {
				t.Errorf("%d remote warnings, want exactly 1:\n%s", got, b.stderr)
			}
			if got := distDigests(t, ws); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("dist/ differs from a local build:\n%v\n%v", got, want)
			}
		})
	}
}

// shardWorkspace has ten independent apps, two of which share a library,
// and a filegroup: eleven top-level targets of unequal weight.
func shardWorkspace(t *testing.T) *workspace {
	files := map[string]string{
		"lib/BUILD.star":  `genrule(name = "lib", outs = ["lib.txt"], cmd = "echo lib > $@")` + "\n",
		"docs/BUILD.star": `filegroup(name = "docs", srcs = ["README"])` + "\n",
		"docs/README":     "docs\n",
	}
	for i := range 10 {
		srcs := "[]"
		if i < 2 {
			srcs = `["//lib"]`
		}
		files[fmt.Sprintf("app%d/BUILD.star", i)] = fmt.Sprintf(`genrule(name = "gen", srcs = %s, outs = ["gen.txt"], cmd = "echo %d > $@")
genrule(name = "app%d", srcs = [":gen"], outs = ["app.txt"], cmd = "cat $< > $@")
`, srcs, i, i)
	}
	return newWorkspace(t, files)
}

func TestBuildShards(t *testing.T) {
	t.Parallel()
	full := shardWorkspace(t)
	all := full.buildOK(t, "//...").labels("executed")
	const n = 3
	// The top-level targets: what no other selected target depends on.
	top := map[string]bool{"//docs:docs": true}
	for i := range 10 {
		top[fmt.Sprintf("//app%d:app%d", i, i)] = true
	}
	built := map[string]int{}
	topIn := map[string]int{}
	var sizes []int
	for k := 1; k <= n; k++ {
		ws := shardWorkspace(t)
		b := ws.buildOK(t, "//...", "--shard", fmt.Sprintf("%d/%d", k, n))
		if !strings.Contains(b.stderr, fmt.Sprintf("shard %d/%d: ", k, n)) || !strings.Contains(b.stderr, "of 11 top-level targets") {
			t.Errorf("shard %d/%d does not say what it builds:\n%s", k, n, b.stderr)
		}
		for _, l := range b.labels("executed") {
			built[l]++
			if top[l] {
				topIn[l]++
			}
		}
		sizes = append(sizes, len(b.labels("executed")))
	}
	for l := range built {
		if !contains(all, l) {
			t.Errorf("a shard built %s, which the whole build does not", l)
		}
	}
	for _, l := range all {
		if built[l] == 0 {
			t.Errorf("no shard built %s", l)
		}
		if top[l] && topIn[l] != 1 {
			t.Errorf("top-level target %s built by %d shards", l, topIn[l])
		}
	}
	// Balanced by work: 10 apps of 2 actions (+1 for the two that need
	// lib) over 3 shards.
	sort.Ints(sizes)
	if sizes[len(sizes)-1]-sizes[0] > 3 {
		t.Errorf("unbalanced shards: %v actions", sizes)
	}
	// The same split every time.
	ws := shardWorkspace(t)
	a := ws.buildOK(t, "//...", "--shard", "2/3").labels("executed")
	ws2 := shardWorkspace(t)
	if b := ws2.buildOK(t, "//...", "--shard", "2/3").labels("executed"); !equalStrings(a, b) {
		t.Errorf("shard 2/3 built %v, then %v", a, b)
	}
	for _, bad := range []string{"0/3", "4/3", "x", "1/0"} {
		if _, stderr, code := runPipe(t, ws, "build", "--shard", bad); code != 2 {
			t.Errorf("--shard %s: exit %d\n%s", bad, code, stderr)
		}
	}
}

func contains(ls []string, s string) bool {
	for _, l := range ls {
		if l == s {
			return true
		}
	}
	return false
}

// The CI matrix: N shards fill one remote cache, and a full build after
// them executes nothing.
func TestShardsShareRemote(t *testing.T) {
	t.Parallel()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	url := "grpc://" + srv.GRPCAddr
	for k := 1; k <= 3; k++ {
		shardWorkspace(t).buildOK(t, "//...", "--shard", fmt.Sprintf("%d/3", k), "--remote-cache", url, "--remote-upload")
	}
	ws := shardWorkspace(t)
	b := ws.buildOK(t, "//...", "--remote-cache", url)
	if n := len(b.labels("executed")); n != 0 {
		t.Errorf("after the shards, a full build executed %d:\n%s", n, b.stderr)
	}
	if got := ws.read(t, "dist/app9/app9/app.txt"); got != "9\n" {
		t.Errorf("dist/app9/app9/app.txt after remote hits: %q", got)
	}
}

// examples/ci as its workflow runs it: two shards fill bazel-remote over
// gRPC, each building one of the two targets; a clone reading the same
// server over HTTP then executes nothing.
func TestCIExampleShards(t *testing.T) {
	t.Parallel()
	srv := testenv.StartBazelRemote(t, testenv.BazelRemoteOptions{})
	src := filepath.Join("..", "..", "examples", "ci")
	var built []string
	for k := 1; k <= 2; k++ {
		ws := copyWorkspace(t, src)
		b := ws.buildOK(t, "//...", "--shard", fmt.Sprintf("%d/2", k), "--remote-cache", "grpc://"+srv.GRPCAddr, "--remote-upload")
		if got := b.labels("executed"); len(got) != 1 {
			t.Errorf("shard %d/2 executed %v, want one target", k, got)
		}
		built = append(built, b.labels("executed")...)
	}
	sort.Strings(built)
	if want := []string{"//:banner", "//:version"}; !equalStrings(built, want) {
		t.Errorf("the shards built %v, want %v", built, want)
	}
	ws := copyWorkspace(t, src)
	if b := ws.buildOK(t, "//...", "--remote-cache", srv.HTTPURL); len(b.labels("executed")) != 0 {
		t.Errorf("after both shards, a full build executed %v", b.labels("executed"))
	}
}
