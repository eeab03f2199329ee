package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scale measures the cost of a build against the size of the workspace:
// for each size it generates a workspace (gen, 10 files a package, unless
// DIR/<size> exists), builds it cold, then times no-op builds with the
// build snapshot on and, interleaved so that load on the machine hits both
// alike, off (PIPE_SNAPSHOT=0), and builds after one edited source file.
// Each figure is a median of wall times of the whole process, with the
// largest peak resident set of those runs.
//
//	go run ./bench scale -pipe PATH -sizes 1000,3000,10000,30000 -runs 7 DIR
func scale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	sizes := fs.String("sizes", "1000,3000,10000,30000", "comma-separated package counts")
	runs := fs.Int("runs", 7, "timed runs of each kind")
	cold := fs.Bool("cold", true, "time the cold build (a fresh cache); false reuses DIR/<size>'s cache")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	base, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Println("| packages | cold build | peak | no-op, snapshot | peak | no-op, PIPE_SNAPSHOT=0 | peak | one edit (actions run) | peak |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-sizes: %v", err)
		}
		if err := scaleOne(*pipe, filepath.Join(base, s), n, *runs, *cold); err != nil {
			return fmt.Errorf("%d packages: %w", n, err)
		}
	}
	return nil
}

// pipeRun is one timed pipe process.
type pipeRun struct {
	wall   time.Duration
	cpu    time.Duration // user + system
	rssKB  int64
	output string
}

func runPipe(pipe, dir, cacheDir string, env []string, args ...string) (pipeRun, error) {
	cmd := exec.Command(pipe, append([]string{"-C", dir}, args...)...)
	cmd.Env = append(append(os.Environ(), "PIPE_CACHE_DIR="+cacheDir), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := pipeRun{wall: time.Since(start), output: string(out)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssKB = ru.Maxrss
		r.cpu = cpuOf(ru)
	}
	if err != nil {
		return r, fmt.Errorf("pipe %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return r, nil
}

func scaleOne(pipe, dir string, n, runs int, cold bool) error {
	cacheDir := dir + ".cache"
	if _, err := os.Stat(dir); err != nil {
		if err := gen([]string{"-packages", strconv.Itoa(n), "-files", "10", dir}); err != nil {
			return err
		}
	}
	build := func(env ...string) (pipeRun, error) {
		return runPipe(pipe, dir, cacheDir, env, "build", "//...", "--color=never")
	}
	coldCell := "skipped"
	if cold {
		os.RemoveAll(cacheDir)
		os.RemoveAll(filepath.Join(dir, "dist"))
		os.RemoveAll(filepath.Join(dir, ".pipe"))
		r, err := build()
		if err != nil {
			return err
		}
		coldCell = fmt.Sprintf("%s | %s", secs(r.wall), mb(r.rssKB))
	} else {
		coldCell += " | –"
	}
	// Two builds past the racy window: the first trusts the outputs'
	// stats, the second records the snapshot.
	for range 2 {
		time.Sleep(300 * time.Millisecond)
		if _, err := build(); err != nil {
			return err
		}
	}
	var on, off []pipeRun
	for range runs {
		r, err := build()
		if err != nil {
			return err
		}
		if !strings.Contains(r.output, " 0 executed") {
			return fmt.Errorf("no-op build executed actions:\n%s", r.output)
		}
		on = append(on, r)
		r, err = build("PIPE_SNAPSHOT=0")
		if err != nil {
			return err
		}
		off = append(off, r)
		// The build with the snapshot off removed it: record it again.
		time.Sleep(300 * time.Millisecond)
		if _, err := build(); err != nil {
			return err
		}
	}
	// One edited file in the middle of the workspace: the rest of its chain
	// of ten packages runs again.
	mid := n / 2
	src := filepath.Join(dir, fmt.Sprintf("pkgs/g%02d/p%04d/files/f0.txt", mid/100, mid))
	var edits []pipeRun
	executed := ""
	for i := range runs {
		time.Sleep(300 * time.Millisecond)
		if _, err := build(); err != nil { // settle, and record the snapshot
			return err
		}
		if err := os.WriteFile(src, []byte(fmt.Sprintf("package %d file 0, edit %d %d\n", mid, i, time.Now().UnixNano())), 0o644); err != nil {
			return err
		}
		r, err := build()
		if err != nil {
			return err
		}
		edits = append(edits, r)
		executed = executedCount(r.output)
	}
	fmt.Printf("| %d | %s | %s | %s | %s (%s) |\n", n, coldCell, medianCell(on), medianCell(off), medianCell(edits), executed)
	return nil
}

func medianCell(rs []pipeRun) string {
	ws := make([]time.Duration, len(rs))
	var peak int64
	for i, r := range rs {
		ws[i] = r.wall
		peak = max(peak, r.rssKB)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i] < ws[j] })
	return fmt.Sprintf("%.0f ms | %s", float64(ws[len(ws)/2].Microseconds())/1000, mb(peak))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mb(kb int64) string { return fmt.Sprintf("%d MB", kb/1024) }

// executedCount picks "N executed" out of pipe's summary line.
func executedCount(out string) string {
	line := lastLine(out)
	if _, rest, ok := strings.Cut(line, ": "); ok {
		if ex, _, ok := strings.Cut(rest, ","); ok {
			return ex
		}
	}
	return "?"
}
