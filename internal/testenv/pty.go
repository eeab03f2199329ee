package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Pty is a pseudo-terminal for tests of what a program shows on a
// terminal: a command started on it has it as its controlling terminal
// (so /dev/tty is this terminal), and Output returns every byte it wrote
// there.
type Pty struct {
	master, slave *os.File
	mu            sync.Mutex
	out           bytes.Buffer
	done          chan struct{}
}

// OpenPty opens a terminal of cols × rows in raw mode (no "\n" → "\r\n"
// translation: Output holds exactly what was written), closed when the
// test ends.
func OpenPty(t testing.TB, cols, rows int) *Pty {
	t.Helper()
	m, s, err := openPty(cols, rows)
	if err != nil {
		Need(t, "a pseudo-terminal", fmt.Sprint(err))
	}
	p := &Pty{master: m, slave: s, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return // EIO once no process has the terminal open
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		m.Close()
	})
	return p
}

// Start starts cmd with the terminal as its controlling terminal and as
// its stdin; stdout and stderr go to the terminal unless cmd sets them.
func (p *Pty) Start(cmd *exec.Cmd) error {
	cmd.Stdin = p.slave
	if cmd.Stdout == nil {
		cmd.Stdout = p.slave
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.slave
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := cmd.Start()
	// Only the command holds the terminal now: its end ends the output.
	p.slave.Close()
	return err
}

// Snapshot is what the terminal received so far.
func (p *Pty) Snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Output waits until every process that had the terminal open closed it
// (at most timeout) and returns all it received.
func (p *Pty) Output(timeout time.Duration) (string, error) {
	select {
	case <-p.done:
		return p.Snapshot(), nil
	case <-time.After(timeout):
		return p.Snapshot(), errors.New("the terminal is still open")
	}
}
