package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// cacheEntries reads the entry counts `pipe cache info` prints.
func cacheEntries(t *testing.T, ws *workspace) (actions, blobs int) {
	t.Helper()
	out, stderr, code := runPipe(t, ws, "cache", "info")
	if code != 0 {
		t.Fatalf("pipe cache info: exit %d\n%s", code, stderr)
	}
	num := func(re string) int {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("pipe cache info lacks %s:\n%s", re, out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if !strings.Contains(out, ws.Cache) {
		t.Errorf("pipe cache info does not name the directory %s:\n%s", ws.Cache, out)
	}
	return num(`action cache:\s+(\d+) entries`), num(`blobs:\s+(\d+)`)
}

func TestCacheTrimCommand(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	want := ws.read(t, "dist/site/site/index.html")
	if a, b := cacheEntries(t, ws); a != 4 || b == 0 {
		t.Fatalf("after one build of 4 actions: %d action entries, %d blobs", a, b)
	}
	// Nothing is older than the default week.
	_, stderr, code := runPipe(t, ws, "cache", "trim")
	if code != 0 || !strings.Contains(stderr, "removed 0 entries") {
		t.Fatalf("trim of a fresh cache: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runPipe(t, ws, "cache", "trim", "--max-size", "1")
	if code != 0 {
		t.Fatalf("pipe cache trim --max-size 1: exit %d\n%s", code, stderr)
	}
	if a, b := cacheEntries(t, ws); a != 0 || b != 0 {
		t.Fatalf("after trimming to 1 byte: %d action entries, %d blobs remain", a, b)
	}
	// The outputs in dist/ are the workspace's own: they survive, and a
	// build with them in place still runs every action (the cache is empty).
	os.RemoveAll(ws.path("dist"))
	b := ws.buildOK(t)
	if got := len(b.labels("executed")); got != 4 {
		t.Errorf("after the trim %d actions executed, want 4", got)
	}
	if got := ws.read(t, "dist/site/site/index.html"); got != want {
		t.Errorf("rebuilt output differs:\n%s\nwant\n%s", got, want)
	}
	_, stderr, code = runPipe(t, ws, "cache", "trim", "--max-size", "ten")
	if code != 2 || !strings.Contains(stderr, "--max-size") {
		t.Errorf("a bad --max-size: exit %d, want 2 naming the flag\n%s", code, stderr)
	}
}

// Trimming while other processes build never fails a build: one that loses
// an entry (or a blob under an entry it found) runs the action again.
func TestCacheTrimConcurrentWithBuilds(t *testing.T) {
	ws := copyWorkspace(t, filepath.Join("..", "..", "examples", "hello"))
	ws.buildOK(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	trims := 0
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer halt()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := pipeCmd(ws, "cache", "trim", "--max-size", "1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("pipe cache trim: %v\n%s", err, out)
				return
			}
			trims++
		}
	}()
	for i := 0; i < 15; i++ {
		ws.write(t, "greeting/names/a.txt", fmt.Sprintf("name %d\n", i%3))
		if i%2 == 0 {
			os.RemoveAll(ws.path("dist"))
		}
		b := ws.build(t)
		if b.code != 0 {
			t.Errorf("build %d while trimming: exit %d\n%s", i, b.code, b.stderr)
		}
		if got := ws.read(t, "dist/greeting/greeting/greeting.txt"); !strings.Contains(got, fmt.Sprintf("name %d", i%3)) {
			t.Errorf("build %d: greeting.txt is %q", i, got)
		}
	}
	halt()
	if trims == 0 {
		t.Fatal("no trim ran during the builds")
	}
	t.Logf("%d trims ran during 15 builds", trims)
}
