package journal

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The server and its clients speak one JSON object per line over a unix
// socket: a Request, then a Response. Both sides check that the peer runs
// as the same user.

// protocol changes when Request or Response change meaning.
const protocol = 1

// Op is what a client asks.
type Op string

const (
	// OpSince asks what changed since Request.Token.
	OpSince Op = "since"
	// OpShutdown asks the server to exit.
	OpShutdown Op = "shutdown"
)

// Request is a client's question.
type Request struct {
	Protocol int    `json:"protocol"`
	Op       Op     `json:"op"`
	Token    Token  `json:"token"`
	Version  string `json:"version"`
}

// Response is the server's answer.
type Response struct {
	Protocol int      `json:"protocol"`
	Version  string   `json:"version"`
	PID      int      `json:"pid"`
	Changes  *Changes `json:"changes,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// cookieDir is the journal's directory below the workspace root: its lock,
// its socket, and the files whose events tell the watcher its queue has
// been read up to a question.
const cookieDir = ".pipe/journal"

// maxMessage bounds what either side reads: a journal of a million paths
// fits.
const maxMessage = 256 << 20

// readMessage decodes one line of JSON into v.
func readMessage(r *bufio.Reader, v any) error {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) > maxMessage {
				return errors.New("journal message too long")
			}
			line, err = r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return err
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("journal message: %w", err)
	}
	return nil
}

func writeMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Dir is the journal's directory in the workspace at root: its lock,
// socket and cookies.
func Dir(root string) string { return filepath.Join(root, filepath.FromSlash(cookieDir)) }

// SocketPath is where the server of the workspace at root listens. A unix
// socket's path is limited to about 100 bytes; a deep workspace's socket
// goes to a per-user directory named by a hash of the root instead.
func SocketPath(root string) string {
	p := filepath.Join(Dir(root), "sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(os.TempDir(), "pipe-"+strconv.Itoa(os.Getuid()), fmt.Sprintf("%x.sock", sum[:12]))
}

// ErrRunning says another server already serves the workspace.
var ErrRunning = errors.New("a pipe server already serves this workspace")

// ServeOptions configure Serve.
type ServeOptions struct {
	// Version is pipe's version: a client of another version gets no
	// answer but the server's exit, and starts its own.
	Version string
	// Idle is how long the server waits for a question before it exits.
	Idle time.Duration
	// Log receives one line per notable event.
	Log io.Writer

	// watch starts the watcher; nil is Watch. Tests put a failing or
	// slow one in its place.
	watch func(ctx context.Context, root string) (*Watcher, error)
}

// Serve watches the workspace at root and answers its builds until ctx is
// done, the server is idle for opts.Idle, a client asks it to shut down or
// the watcher fails. It returns ErrRunning when another server holds the
// workspace.
func Serve(ctx context.Context, root string, opts ServeOptions) error {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if err := os.MkdirAll(Dir(root), 0o700); err != nil {
		return fmt.Errorf("pipe server: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(Dir(root), "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("pipe server: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrRunning
		}
		return fmt.Errorf("pipe server: lock: %w", err)
	}
	sock := SocketPath(root)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return fmt.Errorf("pipe server: %w", err)
	}
	if err := ownedPrivate(filepath.Dir(sock)); err != nil {
		return fmt.Errorf("pipe server: %w", err)
	}
	// Holding the lock, a socket file left behind is a dead server's.
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("pipe server: %w", err)
	}
	defer os.Remove(sock)
	defer ln.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first walk of a large workspace takes seconds. Questions asked
	// meanwhile are answered at once, incomplete, so no build waits for
	// it: it stats, as it would without a server.
	type started struct {
		w   *Watcher
		err error
	}
	ready := make(chan started, 1)
	go func() {
		start := time.Now()
		watch := opts.watch
		if watch == nil {
			watch = Watch
		}
		w, err := watch(ctx, root)
		if err == nil {
			fmt.Fprintf(opts.Log, "pipe server %d: watching %s (%d directories, %v)\n", os.Getpid(), root, w.Watched(), time.Since(start).Round(time.Millisecond))
		}
		ready <- started{w, err}
	}()
	var w *Watcher
	var fatal <-chan string
	since := func(context.Context, Token) *Changes {
		return &Changes{Why: "the server is still setting up its watches"}
	}

	conns := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	idle := time.NewTimer(opts.Idle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-ready:
			var no *errNoWatch
			switch {
			case errors.As(st.err, &no):
				// The server stays, answering why it cannot vouch for
				// anything: a build that found none would start another,
				// which would fail alike, at every build.
				fmt.Fprintf(opts.Log, "pipe server %d: cannot watch %s: %v; builds stat everything until it exits\n", os.Getpid(), root, st.err)
				why := "the server cannot watch the workspace: " + st.err.Error()
				since = func(context.Context, Token) *Changes { return &Changes{Why: why} }
			case st.err != nil:
				return fmt.Errorf("pipe server: %w", st.err)
			default:
				w, fatal = st.w, st.w.Fatal()
				since = w.Since
				// The walk's garbage (directory listings) is most of
				// what the process ever allocated: give it back now
				// rather than hold it for hours.
				debug.FreeOSMemory()
			}
		case why := <-fatal:
			fmt.Fprintf(opts.Log, "pipe server %d: stopping: %s\n", os.Getpid(), why)
			return nil
		case <-idle.C:
			fmt.Fprintf(opts.Log, "pipe server %d: idle for %v, exiting\n", os.Getpid(), opts.Idle)
			return nil
		case c, ok := <-conns:
			if !ok {
				return nil
			}
			idle.Reset(opts.Idle)
			// One question at a time: builds of a workspace run one at a
			// time anyway (the workspace lock), and the answers are
			// cheap.
			if stop := serveConn(ctx, since, c, opts); stop != "" {
				fmt.Fprintf(opts.Log, "pipe server %d: %s\n", os.Getpid(), stop)
				return nil
			}
		}
	}
}

// serveConn answers one connection; it returns why the server must stop,
// or "".
func serveConn(ctx context.Context, since func(context.Context, Token) *Changes, c net.Conn, opts ServeOptions) (stop string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := samePeer(c); err != nil {
		return ""
	}
	var req Request
	if err := readMessage(bufio.NewReader(c), &req); err != nil {
		writeMessage(c, Response{Protocol: protocol, Version: opts.Version, PID: os.Getpid(), Error: err.Error()})
		return ""
	}
	resp := Response{Protocol: protocol, Version: opts.Version, PID: os.Getpid()}
	switch {
	case req.Protocol != protocol || req.Version != opts.Version:
		resp.Error = fmt.Sprintf("the server runs pipe %s (protocol %d), the client %s (protocol %d)", opts.Version, protocol, req.Version, req.Protocol)
		stop = "a client of another version asked; exiting so it can start its own"
	case req.Op == OpShutdown:
		stop = "shut down by a client"
	case req.Op == OpSince:
		resp.Changes = since(ctx, req.Token).portable()
	default:
		resp.Error = fmt.Sprintf("unknown request %q", req.Op)
	}
	writeMessage(c, resp)
	return stop
}

// samePeer checks that the process at the other end runs as this user.
func samePeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var uid uint32
	var cerr error
	if err := raw.Control(func(fd uintptr) { uid, cerr = peerUID(int(fd)) }); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if int(uid) != os.Getuid() {
		return fmt.Errorf("peer runs as uid %d", uid)
	}
	return nil
}

// ownedPrivate checks that dir belongs to this user and no one else may
// write in it: a socket there is this user's.
func ownedPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s must belong to uid %d and be writable by it alone", dir, os.Getuid())
	}
	return nil
}

// Client asks the server of one workspace.
type Client struct {
	Root    string
	Version string
}

// ErrNoServer says no server answers for the workspace.
var ErrNoServer = errors.New("no pipe server is running for this workspace")

func (cl *Client) do(ctx context.Context, req Request) (*Response, error) {
	req.Protocol, req.Version = protocol, cl.Version
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", SocketPath(cl.Root))
	if err != nil {
		return nil, ErrNoServer
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := samePeer(c); err != nil {
		return nil, fmt.Errorf("pipe server socket %s: %w", SocketPath(cl.Root), err)
	}
	if err := writeMessage(c, req); err != nil {
		return nil, fmt.Errorf("pipe server: %w", err)
	}
	var resp Response
	if err := readMessage(bufio.NewReader(c), &resp); err != nil {
		return nil, fmt.Errorf("pipe server: %w", err)
	}
	return &resp, nil
}

// Since asks what changed since tok. A server of another version exits
// when asked, and Since returns ErrNoServer.
func (cl *Client) Since(ctx context.Context, tok Token) (*Changes, error) {
	resp, err := cl.do(ctx, Request{Op: OpSince, Token: tok})
	if err != nil {
		return nil, err
	}
	if resp.Changes == nil {
		if resp.Protocol != protocol || resp.Version != cl.Version {
			return nil, ErrNoServer
		}
		return nil, fmt.Errorf("pipe server: %s", resp.Error)
	}
	return resp.Changes, nil
}

// Shutdown asks the server to exit and waits until it has released the
// workspace; it returns the server's process ID, or ErrNoServer.
func (cl *Client) Shutdown(ctx context.Context) (int, error) {
	resp, err := cl.do(ctx, Request{Op: OpShutdown})
	if err != nil {
		return 0, err
	}
	for {
		// The server removes its socket as it exits.
		if _, err := os.Stat(SocketPath(cl.Root)); errors.Is(err, os.ErrNotExist) {
			return resp.PID, nil
		}
		select {
		case <-ctx.Done():
			return resp.PID, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Start starts a server for the workspace at root in the background, from
// the executable exe with args (such as "server"), detached from the
// caller's session; its output goes to log. It does not wait for the
// server to be ready.
func Start(root, exe string, args []string, log string) error {
	if err := os.MkdirAll(Dir(root), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(exe, args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pipe server: %w", err)
	}
	return cmd.Process.Release()
}
