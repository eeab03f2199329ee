//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/journal"
)

// testServer is a `pipe server` the test started for a workspace.
type testServer struct {
	cmd *exec.Cmd
	// exited is closed when the server has exited.
	exited chan struct{}
	mu     sync.Mutex
	log    bytes.Buffer
}

func (s *testServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

func (s *testServer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startServer runs `pipe server` for ws until the test ends, waits until it
// answers, and returns the environment that has builds ask it.
func startServer(t *testing.T, ws *workspace) (*testServer, []string) {
	t.Helper()
	s := &testServer{cmd: pipeCmd(ws, "server", "--idle", "10m"), exited: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = s, s
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := s.exited
	go func() { s.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	})
	waitServer(t, ws, done, s)
	return s, []string{"PIPE_SERVER=1"}
}

// waitServer waits until a server answers for ws.
func waitServer(t *testing.T, ws *workspace, exited <-chan struct{}, log interface{ String() string }) {
	t.Helper()
	cl := &journal.Client{Root: ws.Root, Version: testPipeVersion(t, ws)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := cl.Since(ctx, journal.Token{})
		cancel()
		// Ready once its first walk is done: it hands out tokens.
		if err == nil && !c.Now.IsZero() {
			return
		}
		select {
		case <-exited:
			t.Fatalf("pipe server exited: %s", log)
		default:
		}
		if (err != nil && !errors.Is(err, journal.ErrNoServer)) || time.Now().After(deadline) {
			t.Fatalf("pipe server does not answer: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testPipeVersion is the version the test's pipe binary reports, which the
// server checks its clients against.
func testPipeVersion(t *testing.T, ws *workspace) string {
	t.Helper()
	out, err := pipeCmd(ws, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(out))
	v = strings.TrimPrefix(v, "pipe ")
	return v
}

var statsLine = regexp.MustCompile(`build snapshot: (\d+) paths stat'ed`)

// journalUsed reports whether a -v build's snapshot check took the
// journal's complete answer, and how many paths it stat'ed.
func journalUsed(t *testing.T, b build) (bool, int) {
	t.Helper()
	m := statsLine.FindStringSubmatch(b.stderr)
	if m == nil || !strings.Contains(b.stderr, "change journal: ") || strings.Contains(b.stderr, "change journal not used") {
		return false, 0
	}
	n, _ := strconv.Atoi(m[1])
	return true, n
}

// With the server, every edit a snapshot must notice is still noticed, by
// the journal's answer rather than by stat'ing everything: each build
// after an edit must have used the journal.
func TestServerSnapshotEdits(t *testing.T) {
	for _, e := range snapshotEdits {
		t.Run(e.name, func(t *testing.T) {
			ws := newWorkspace(t, snapshotFiles)
			ws.buildOK(t)
			_, env := startServer(t, ws)
			b := afterEdit(t, ws, env, func() { e.edit(t, ws) }, e.want...)
			if used, _ := journalUsed(t, b); !used {
				t.Fatalf("the build after the edit did not use the change journal:\n%s", b.stderr)
			}
			e.check(t, ws, b)
		})
	}
}

// A no-op with the server stats only what lies outside the workspace, and
// a no-op after a build that wrote outputs stats those outputs alone.
func TestServerNoopStatsLittle(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	_, env := startServer(t, ws)
	primeSnapshot(t, ws, env)
	all := ws.buildEnv(t, []string{"PIPE_SERVER=0"}, "-v")
	m := statsLine.FindStringSubmatch(all.stderr)
	if all.code != 0 || !strings.Contains(all.stderr, snapshotUsed) || m == nil {
		t.Fatalf("no-op without the journal: exit %d\n%s", all.code, all.stderr)
	}
	b := ws.buildEnv(t, env, "-v")
	used, n := journalUsed(t, b)
	if b.code != 0 || !used || !strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("no-op with the journal: exit %d\n%s", b.code, b.stderr)
	}
	// Outside the workspace: the cache directory and the shell the
	// genrules run.
	if n != 2 {
		t.Errorf("a no-op with the journal stat'ed %d paths, want 2 (the cache directory and the shell); without it, %s\n%s", n, m[0], b.stderr)
	}

	// After a build that wrote an output, the next no-op stats the
	// output's paths, and the one after that no more than before.
	ws.write(t, "extra/BUILD.star", strings.Replace(snapshotFiles["extra/BUILD.star"], "echo extra", "echo more", 1))
	settle()
	if b := ws.buildEnv(t, env, "-v"); b.code != 0 || len(b.labels("executed")) != 1 {
		t.Fatalf("build after an edit: exit %d\n%s", b.code, b.stderr)
	}
	settle()
	ws.buildEnvOK(t, env)
	b = ws.buildEnv(t, env, "-v")
	if used, n := journalUsed(t, b); !used || n != 2 || !strings.Contains(b.stderr, snapshotUsed) {
		t.Errorf("the second no-op after a build stat'ed %d paths (journal used: %t), want 2\n%s", n, used, b.stderr)
	}
}

// A source that is a symbolic link to another file of the workspace
// changes when its target does, which inotify reports under the target's
// path alone: the journal must not vouch for the link's.
func TestServerSymlinkedSource(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.write(t, "shared/b.txt", "beta\n")
	if err := os.Remove(ws.path("lib/words/b.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../shared/b.txt", ws.path("lib/words/b.txt")); err != nil {
		t.Fatal(err)
	}
	ws.buildOK(t)
	_, env := startServer(t, ws)
	b := afterEdit(t, ws, env, func() { ws.write(t, "shared/b.txt", "BETA2\n") }, "//lib:joined", "//app:loud")
	if used, _ := journalUsed(t, b); !used {
		t.Fatalf("the build did not use the change journal:\n%s", b.stderr)
	}
	if got := ws.read(t, "dist/lib/joined/joined.txt"); got != "alpha\nBETA2\n" {
		t.Errorf("joined.txt = %q", got)
	}
}

// Without a server, a build with PIPE_SERVER=1 stats everything and starts
// one; a server killed and started again (a new instance) vouches for
// nothing the old one said, and the build stats everything again.
func TestServerFallbackAndRestart(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	env := []string{"PIPE_SERVER=1", "PIPE_SERVER_IDLE=2m"}
	t.Cleanup(func() { pipeCmd(ws, "shutdown").Run() })
	b := ws.buildEnv(t, env, "-v")
	if b.code != 0 || !strings.Contains(b.stderr, "started a pipe server") {
		t.Fatalf("the first build with PIPE_SERVER=1: exit %d, want it to start a server\n%s", b.code, b.stderr)
	}
	waitServer(t, ws, nil, stringer("server started on demand"))
	primeSnapshot(t, ws, env)
	if b := ws.buildEnv(t, env, "-v"); !strings.Contains(b.stderr, snapshotUsed) {
		t.Fatalf("no-op: %s", b.stderr)
	} else if used, _ := journalUsed(t, b); !used {
		t.Fatalf("the no-op did not use the journal of the server started on demand:\n%s", b.stderr)
	}

	// Kill it; an edit made while no server runs must be seen.
	out, err := pipeCmd(ws, "shutdown").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stopped the pipe server") {
		t.Fatalf("pipe shutdown: %v\n%s", err, out)
	}
	ws.write(t, "lib/words/a.txt", "alpha3\n")
	s, env2 := startServer(t, ws)
	b = ws.buildEnv(t, env2, "-v")
	if b.code != 0 || !strings.Contains(b.stderr, "change journal not used: the token is from another server instance") {
		t.Fatalf("the build after a restart: exit %d, want it to stat everything\n%s\nserver: %s", b.code, b.stderr, s)
	}
	wantLabels(t, "executed", b.labels("executed"), "//lib:joined", "//app:loud")
	if got := ws.read(t, "dist/lib/joined/joined.txt"); got != "alpha3\nbeta\n" {
		t.Errorf("joined.txt = %q", got)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// pipe shutdown says so when no server runs; a second server for the same
// workspace refuses to start.
func TestServerShutdownAndSecond(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	out, err := pipeCmd(ws, "shutdown").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no pipe server is running") {
		t.Fatalf("pipe shutdown without a server: %v\n%s", err, out)
	}
	startServer(t, ws)
	second := pipeCmd(ws, "server")
	out, err = second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "already serves this workspace") {
		t.Fatalf("a second pipe server: %v\n%s", err, out)
	}
	out, err = pipeCmd(ws, "shutdown").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stopped the pipe server") {
		t.Fatalf("pipe shutdown: %v\n%s", err, out)
	}
	if _, err := os.Stat(journal.SocketPath(ws.Root)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after pipe shutdown: %v", err)
	}
}

// pipe clean stops the server, whose socket and lock it removes.
func TestServerStoppedByClean(t *testing.T) {
	ws := newWorkspace(t, snapshotFiles)
	ws.buildOK(t)
	s, _ := startServer(t, ws)
	out, err := pipeCmd(ws, "clean").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stopped the pipe server") {
		t.Fatalf("pipe clean: %v\n%s", err, out)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server still runs after pipe clean:\n%s", s)
	}
}
