package testenv

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	err  error         // its exit status, once done is closed
}

// startProc starts cmd and watches for its exit.
func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// WaitReady polls until ok reports the server up, the process exits, or
// the deadline passes.
func (p *proc) WaitReady(ok func() bool, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during startup: %v", filepath.Base(p.cmd.Path), p.err)
		default:
		}
		if ok() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", filepath.Base(p.cmd.Path), within)
}

// Stop asks the process to exit and kills it if it has not within 5 s.
func (p *proc) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// httpOK reports whether GET u answers 200 within half a second.
func httpOK(u string) bool {
	c := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
