//go:build linux

package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testVersion = "test-1"

// serve starts a server on root and waits until it answers. The returned
// channel delivers Serve's result.
func serve(t *testing.T, root string, idle time.Duration) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, root, ServeOptions{Version: testVersion, Idle: idle}) }()
	cl := &Client{Root: root, Version: testVersion}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(SocketPath(root)); err == nil {
			// Ready once its watches are in place: it hands out tokens.
			if c, err := cl.Since(ctx, Token{}); err == nil && !c.Now.IsZero() {
				return cancel, done
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not answer within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exited waits for Serve to return.
func exited(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("the server did not exit: %s", what)
		return nil
	}
}

func clientSince(t *testing.T, root string, tok Token) *Changes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := (&Client{Root: root, Version: testVersion}).Since(ctx, tok)
	if err != nil {
		t.Fatalf("Client.Since: %v", err)
	}
	return c
}

func TestServeSinceAndShutdown(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/a/f", "1")
	write(t, root+"/a/g", "1")
	_, done := serve(t, root, time.Hour)

	tok := clientSince(t, root, Token{}).Now
	if tok.IsZero() {
		t.Fatal("no token")
	}
	write(t, root+"/a/f", "2")
	c := clientSince(t, root, tok)
	if !c.Complete || c.Unchanged("a/f") || !c.Unchanged("a/g") {
		t.Fatalf("over the socket: complete %v (%s), paths %q trees %q", c.Complete, c.Why, c.Paths, c.Trees)
	}

	// A second server on the same workspace is refused.
	if err := Serve(context.Background(), root, ServeOptions{Version: testVersion, Idle: time.Hour}); !errors.Is(err, ErrRunning) {
		t.Fatalf("a second Serve: %v, want ErrRunning", err)
	}

	// A token of another instance says nothing.
	other := tok
	other.Instance[0] ^= 0xff
	if c := clientSince(t, root, other); c.Complete || c.Now.IsZero() {
		t.Fatalf("a token of another instance: complete %v, now %v", c.Complete, c.Now)
	}
	ahead := tok
	ahead.Seq += 1 << 40
	if c := clientSince(t, root, ahead); c.Complete {
		t.Fatal("a token from the instance's future is answered complete")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, err := (&Client{Root: root, Version: testVersion}).Shutdown(ctx)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("Shutdown: %d, %v", pid, err)
	}
	if err := exited(t, done, "after Shutdown"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(SocketPath(root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left after Shutdown: %v", err)
	}
	if _, err := (&Client{Root: root, Version: testVersion}).Since(ctx, tok); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Since after Shutdown: %v, want ErrNoServer", err)
	}
	// The workspace can be served again.
	_, done = serve(t, root, time.Hour)
	if c := clientSince(t, root, tok); c.Complete {
		t.Fatal("a token of the previous server is answered complete")
	}
	(&Client{Root: root, Version: testVersion}).Shutdown(ctx)
	exited(t, done, "after the second Shutdown")
}

func TestServeOtherVersionExits(t *testing.T) {
	root := t.TempDir()
	_, done := serve(t, root, time.Hour)
	_, err := (&Client{Root: root, Version: "other"}).Since(context.Background(), Token{})
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("a client of another version: %v, want ErrNoServer", err)
	}
	if err := exited(t, done, "after a client of another version"); err != nil {
		t.Fatal(err)
	}
}

func TestServeIdleExits(t *testing.T) {
	root := t.TempDir()
	_, done := serve(t, root, 300*time.Millisecond)
	if err := exited(t, done, "idle"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(SocketPath(root)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is left after the idle exit: %v", err)
	}
}

func TestServeRootRemovedExits(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	must(t, os.MkdirAll(root, 0o755))
	_, done := serve(t, root, time.Hour)
	must(t, os.RemoveAll(root))
	if err := exited(t, done, "the workspace root was removed"); err != nil {
		t.Fatal(err)
	}
}

func TestServeLongSocketPath(t *testing.T) {
	root := filepath.Join(t.TempDir(), strings.Repeat("deep-directory-name/", 6))
	must(t, os.MkdirAll(root, 0o755))
	sock := SocketPath(root)
	if strings.HasPrefix(sock, root) || len(sock) >= 100 {
		t.Fatalf("SocketPath(%d-byte root) = %q: not the short fallback", len(root), sock)
	}
	_, done := serve(t, root, time.Hour)
	tok := clientSince(t, root, Token{}).Now
	write(t, root+"/f", "x")
	if c := clientSince(t, root, tok); c.Unchanged("f") {
		t.Fatal("a change is vouched for through the long-path server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := (&Client{Root: root, Version: testVersion}).Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	exited(t, done, "after Shutdown")
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket %s is left: %v", sock, err)
	}
}

// TestServeOddNames: names that are not UTF-8, or hold newlines, survive
// the trip over the socket: what changed is not vouched for.
func TestServeOddNames(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"ok", "bad\xffdir"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	write(t, root+"/bad\xffdir/f", "1")
	write(t, root+"/ok/f", "1")
	_, done := serve(t, root, time.Hour)
	tok := clientSince(t, root, Token{}).Now
	odd := []string{"bad\xffname", "new\nline", "ok/bad\xfe", "bad\xffdir/f", "ok/\xc3"}
	for _, p := range odd {
		write(t, filepath.Join(root, p), "changed")
	}
	c := clientSince(t, root, tok)
	for _, p := range odd {
		if c.Unchanged(p) {
			t.Errorf("%q changed but is vouched for over the socket; paths %q trees %q", p, c.Paths, c.Trees)
		}
	}
	if c.Unchanged("ok") {
		t.Error("ok/, whose entries changed, is vouched for")
	}
	// A symbolic link with such a name is never vouched for, nor what is
	// below it.
	tok = c.Now
	must(t, os.Symlink(t.TempDir(), filepath.Join(root, "ok", "link\xff")))
	c = clientSince(t, root, tok)
	if c.Unchanged("ok/link\xff/x") {
		t.Errorf("a path through a symbolic link is vouched for; unwatched %q", c.Unwatched)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	(&Client{Root: root, Version: testVersion}).Shutdown(ctx)
	exited(t, done, "after Shutdown")
}

// TestServeSync: a write made just before a client asks over the socket is
// in the answer, every time.
func TestServeSync(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/f", "")
	_, done := serve(t, root, time.Hour)
	tok := clientSince(t, root, Token{}).Now
	for i := 0; i < 100; i++ {
		write(t, root+"/f", strings.Repeat("y", i+1))
		c := clientSince(t, root, tok)
		if !c.Complete || c.Unchanged("f") {
			t.Fatalf("round %d: a write just before the question is not in its answer (complete %v: %s)", i, c.Complete, c.Why)
		}
		tok = c.Now
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	(&Client{Root: root, Version: testVersion}).Shutdown(ctx)
	exited(t, done, "after Shutdown")
}

// A server that cannot watch the workspace (the watch limit reached, a
// network file system) stays and says why, rather than exit: the builds
// that found no server would each start another, which would fail alike.
// The watcher's failure is simulated: reaching the real limit would take
// a sysctl change or ~190,000 directories.
func TestServeCannotWatchStays(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	failing := func(context.Context, string) (*Watcher, error) {
		return nil, &errNoWatch{"inotify watch limit reached (simulated)"}
	}
	go func() {
		done <- Serve(ctx, root, ServeOptions{Version: testVersion, Idle: time.Minute, watch: failing})
	}()
	cl := &Client{Root: root, Version: testVersion}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := cl.Since(ctx, Token{})
		if err == nil && strings.Contains(c.Why, "watch limit reached") {
			if c.Complete || !c.Now.IsZero() {
				t.Fatalf("a server that cannot watch answered %+v", c)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer saying why: %v %+v", err, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still there for the next build.
	if c := clientSince(t, root, Token{}); !strings.Contains(c.Why, "watch limit reached") {
		t.Errorf("second answer: %+v", c)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
}

// While the first walk runs, a question is answered at once, without a
// token, instead of waiting for the walk.
func TestServeAnswersDuringWalk(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	slow := func(ctx context.Context, root string) (*Watcher, error) {
		<-release
		return Watch(ctx, root)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, root, ServeOptions{Version: testVersion, Idle: time.Minute, watch: slow})
	}()
	cl := &Client{Root: root, Version: testVersion}
	var c *Changes
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if c, err = cl.Since(ctx, Token{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer: %v", err)
		}
	}
	if c.Complete || !c.Now.IsZero() || !strings.Contains(c.Why, "still setting up") {
		t.Fatalf("during the walk: %+v", c)
	}
	close(release)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if c = clientSince(t, root, Token{}); !c.Now.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token after the walk: %+v", c)
		}
	}
	tok := c.Now
	write(t, root+"/f", "x")
	if c := clientSince(t, root, tok); !c.Complete || c.Unchanged("f") {
		t.Errorf("after the walk: %+v", c)
	}
}
