package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

// TestInterruptWhileLoading: Ctrl-C while a BUILD.star is still being
// evaluated stops pipe at once with exit 130, as it does during a build.
func TestInterruptWhileLoading(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": "print(\"evaluating\")\nfor i in range(2000000000):\n    pass\n",
	})
	cmd := pipeCmd(ws, "build")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	timeout := time.After(20 * time.Second)
	for started := false; !started; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("pipe ended before evaluating a/BUILD.star:\n%s", strings.Join(out, "\n"))
			}
			out = append(out, l)
			started = strings.Contains(l, "evaluating")
		case <-timeout:
			cmd.Process.Kill()
			t.Fatalf("a/BUILD.star never started evaluating:\n%s", strings.Join(out, "\n"))
		}
	}
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		out = append(out, l)
	}
	code := exitCode(t, cmd.Wait())
	if d := time.Since(sent); d > 10*time.Second {
		t.Errorf("pipe took %s to stop after Ctrl-C", d)
	}
	if code != 130 {
		t.Errorf("exit %d after Ctrl-C while loading, want 130\nstderr:\n%s", code, strings.Join(out, "\n"))
	}
	if got := strings.Join(out, "\n"); !strings.Contains(got, "pipe: interrupted") {
		t.Errorf("stderr does not say pipe was interrupted:\n%s", got)
	}
}
