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
// With -server, a pipe server watches each workspace after its cold build,
// and the no-op and one-edit builds are also timed with PIPE_SERVER=1,
// interleaved with the builds without it.
//
//	go run ./bench scale -pipe PATH -sizes 1000,3000,10000,30000 -runs 7 [-server] DIR
func scale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	sizes := fs.String("sizes", "1000,3000,10000,30000", "comma-separated package counts")
	runs := fs.Int("runs", 7, "timed runs of each kind")
	cold := fs.Bool("cold", true, "time the cold build (a fresh cache); false reuses DIR/<size>'s cache")
	server := fs.Bool("server", false, "also time no-op and one-edit builds that ask a pipe server (PIPE_SERVER=1)")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	base, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	if *server {
		fmt.Println("| packages | cold build | peak | no-op, snapshot | peak | no-op, server | peak | no-op, PIPE_SNAPSHOT=0 | peak | one edit (actions run) | peak | one edit, server | peak |")
		fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	} else {
		fmt.Println("| packages | cold build | peak | no-op, snapshot | peak | no-op, PIPE_SNAPSHOT=0 | peak | one edit (actions run) | peak |")
		fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-sizes: %v", err)
		}
		if err := scaleOne(*pipe, filepath.Join(base, s), n, *runs, *cold, *server); err != nil {
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

func scaleOne(pipe, dir string, n, runs int, cold, server bool) error {
	cacheDir := dir + ".cache"
	if _, err := os.Stat(dir); err != nil {
		if err := gen([]string{"-packages", strconv.Itoa(n), "-files", "10", dir}); err != nil {
			return err
		}
	}
	build := func(env ...string) (pipeRun, error) {
		return runPipe(pipe, dir, cacheDir, append([]string{"PIPE_SERVER=0"}, env...), "build", "//...", "--color=never")
	}
	// settled is the build that records the snapshot before a timed one;
	// with a server it keeps the journal's token too.
	settled := func() error {
		time.Sleep(300 * time.Millisecond)
		env := "PIPE_SERVER=0"
		if server {
			env = "PIPE_SERVER=1"
		}
		_, err := build(env)
		return err
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
	if server {
		stop, err := startServer(pipe, dir, cacheDir)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Two builds past the racy window: the first trusts the outputs'
	// stats, the second records the snapshot.
	for range 2 {
		if err := settled(); err != nil {
			return err
		}
	}
	noop := func(env ...string) (pipeRun, error) {
		r, err := build(env...)
		if err == nil && !strings.Contains(r.output, " 0 executed") {
			err = fmt.Errorf("no-op build executed actions:\n%s", r.output)
		}
		return r, err
	}
	var on, srv, off []pipeRun
	for range runs {
		r, err := noop()
		if err != nil {
			return err
		}
		on = append(on, r)
		if server {
			if r, err = noop("PIPE_SERVER=1"); err != nil {
				return err
			}
			srv = append(srv, r)
		}
		r, err = build("PIPE_SNAPSHOT=0")
		if err != nil {
			return err
		}
		off = append(off, r)
		// The build with the snapshot off removed it: record it again.
		if err := settled(); err != nil {
			return err
		}
	}
	// One edited file in the middle of the workspace: the rest of its chain
	// of ten packages runs again.
	mid := n / 2
	src := filepath.Join(dir, fmt.Sprintf("pkgs/g%02d/p%04d/files/f0.txt", mid/100, mid))
	var edits, srvEdits []pipeRun
	executed, srvExecuted := "", ""
	edit := func(i int, env ...string) (pipeRun, error) {
		if err := settled(); err != nil { // and record the snapshot
			return pipeRun{}, err
		}
		if err := os.WriteFile(src, []byte(fmt.Sprintf("package %d file 0, edit %d %d\n", mid, i, time.Now().UnixNano())), 0o644); err != nil {
			return pipeRun{}, err
		}
		return build(env...)
	}
	for i := range runs {
		r, err := edit(2 * i)
		if err != nil {
			return err
		}
		edits = append(edits, r)
		executed = executedCount(r.output)
		if server {
			if r, err = edit(2*i+1, "PIPE_SERVER=1"); err != nil {
				return err
			}
			srvEdits = append(srvEdits, r)
			srvExecuted = executedCount(r.output)
		}
	}
	if server {
		fmt.Printf("| %d | %s | %s | %s | %s | %s (%s) | %s (%s) |\n", n, coldCell, medianCell(on), medianCell(srv), medianCell(off), medianCell(edits), executed, medianCell(srvEdits), srvExecuted)
		return nil
	}
	fmt.Printf("| %d | %s | %s | %s | %s (%s) |\n", n, coldCell, medianCell(on), medianCell(off), medianCell(edits), executed)
	return nil
}

// startServer runs `pipe server` for the workspace at dir until stop is
// called, and waits until a build has used it (its first walk is done).
func startServer(pipe, dir, cacheDir string) (stop func(), err error) {
	cmd := exec.Command(pipe, "-C", dir, "server", "--idle", "1h")
	cmd.Env = append(os.Environ(), "PIPE_CACHE_DIR="+cacheDir)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		runPipe(pipe, dir, cacheDir, nil, "shutdown")
		cmd.Wait()
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		r, err := runPipe(pipe, dir, cacheDir, []string{"PIPE_SERVER=1"}, "build", "//...", "-v", "--color=never")
		if err != nil {
			stop()
			return nil, err
		}
		if strings.Contains(r.output, "change journal") && !strings.Contains(r.output, "still setting up") {
			return stop, nil
		}
		if time.Since(start) > 5*time.Minute {
			stop()
			return nil, fmt.Errorf("pipe server for %s did not answer:\n%s", dir, r.output)
		}
	}
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
