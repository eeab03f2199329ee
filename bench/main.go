// Command bench generates benchmark workspaces and times pipe on them.
//
//	go run ./bench gen -packages 1000 -files 10 DIR
//	go run ./bench noop -pipe PATH -runs 21 DIR
//	go run ./bench scale -pipe PATH -sizes 1000,3000,10000,30000 DIR
//
// noop runs `pipe build //...` once to fill the cache, then runs it again
// -runs times and prints the median, min and max wall time of the whole
// process (start-up included).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "noop":
		err = noop(os.Args[2:])
	case "bundle":
		err = bundle(os.Args[2:])
	case "remote":
		err = remote(os.Args[2:])
	case "badremote":
		err = badRemoteBench(os.Args[2:])
	case "pyenv":
		err = pyenv(os.Args[2:])
	case "pytest":
		err = pytestNoop(os.Args[2:])
	case "scale":
		err = scale(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bench gen [-packages N] [-files N] DIR | bench noop [-pipe PATH] [-runs N] DIR | bench bundle [-pipe PATH[,PATH]] [-mb N | -files N] [-runs N] DIR | bench remote [-pipe PATH] [-bazel-remote BIN] [-packages N] [-latency D] [-mbps N] DIR | bench badremote [-pipe OLD,NEW] [-runs N] [-limit D] DIR | bench pyenv [-pipe PATH] [-mb N] [-python V] DIR | bench pytest [-pipe PATH] [-runs N] DIR | bench scale [-pipe PATH] [-sizes 1000,3000,10000,30000] [-runs N] [-cold=false] DIR")
	os.Exit(2)
}

// gen writes a workspace of packages p0000…, each with files/ holding
// -files source files, a filegroup over them and a genrule that hashes
// them together with the previous package's output, so packages form
// chains of ten across package boundaries.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	packages := fs.Int("packages", 1000, "number of packages")
	files := fs.Int("files", 10, "source files per package")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir := fs.Arg(0)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(rel, content string) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(content), 0o644)
	}
	if err := write("WORKSPACE.star", "workspace(name = \"bench\")\n"); err != nil {
		return err
	}
	if err := write(".gitignore", "dist/\n.pipe/\n"); err != nil {
		return err
	}
	for i := 0; i < *packages; i++ {
		pkg := fmt.Sprintf("pkgs/g%02d/p%04d", i/100, i)
		for f := 0; f < *files; f++ {
			if err := write(fmt.Sprintf("%s/files/f%d.txt", pkg, f), fmt.Sprintf("package %d file %d\n", i, f)); err != nil {
				return err
			}
		}
		srcs := `[":files"]`
		if i%10 != 0 {
			srcs = fmt.Sprintf(`[":files", "//pkgs/g%02d/p%04d:gen"]`, (i-1)/100, i-1)
		}
		build := fmt.Sprintf(`filegroup(
    name = "files",
    srcs = glob(["files/*.txt"]),
)

genrule(
    name = "gen",
    srcs = %s,
    outs = ["out.txt"],
    cmd = "cat $(SRCS) | cksum > $@",
)
`, srcs)
		if err := write(pkg+"/BUILD.star", build); err != nil {
			return err
		}
	}
	fmt.Printf("generated %d packages × %d files in %s\n", *packages, *files, dir)
	return nil
}

func noop(args []string) error {
	fs := flag.NewFlagSet("noop", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	runs := fs.Int("runs", 21, "timed runs")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir := fs.Arg(0)
	run := func() (time.Duration, string, error) {
		cmd := exec.Command(*pipe, "-C", dir, "build", "//...", "--color=never")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			return d, string(out), fmt.Errorf("pipe build: %v\n%s", err, out)
		}
		return d, string(out), nil
	}
	d, out, err := run()
	if err != nil {
		return err
	}
	fmt.Printf("first build: %v\n  %s\n", d.Round(time.Millisecond), lastLine(out))
	var times []time.Duration
	for i := 0; i < *runs; i++ {
		d, out, err := run()
		if err != nil {
			return err
		}
		if !strings.Contains(out, " 0 executed") {
			return fmt.Errorf("no-op build executed actions:\n%s", out)
		}
		times = append(times, d)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Printf("no-op build, %d runs: median %s, min %s, max %s\n", *runs, ms(times[len(times)/2]), ms(times[0]), ms(times[len(times)-1]))
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
