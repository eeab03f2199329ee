package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// remote measures a fresh clone's build against a warm remote cache:
// a generated workspace is built cold with --remote-upload into a minimal
// Bazel-protocol HTTP cache served here, then a second copy of the
// workspace with an empty local cache builds from the remote alone.
func remote(args []string) error {
	fs := flag.NewFlagSet("remote", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	packages := fs.Int("packages", 200, "packages in the generated workspace")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	store := filepath.Join(dir, "store")
	var down, up atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := filepath.Join(store, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			f, err := os.Open(p)
			if errors.Is(err, os.ErrNotExist) {
				http.NotFound(w, r)
				return
			}
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer f.Close()
			fi, _ := f.Stat()
			w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
			if r.Method == http.MethodGet {
				n, _ := io.Copy(w, f)
				down.Add(n)
			}
		case http.MethodPut:
			os.MkdirAll(filepath.Dir(p), 0o755)
			f, err := os.Create(p)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			n, _ := io.Copy(f, r.Body)
			f.Close()
			up.Add(n)
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/cache"

	src := filepath.Join(dir, "clone1")
	if err := gen([]string{"-packages", fmt.Sprint(*packages), "-files", "10", src}); err != nil {
		return err
	}
	clone2 := filepath.Join(dir, "clone2")
	if out, err := exec.Command("cp", "-r", src, clone2).CombinedOutput(); err != nil {
		return fmt.Errorf("copy: %v %s", err, out)
	}
	build := func(ws, cacheDir string, extra ...string) (time.Duration, string, error) {
		cmd := exec.Command(*pipe, append([]string{"-C", ws, "build", "//...", "--color=never", "--remote-cache", url}, extra...)...)
		cmd.Env = append(os.Environ(), "PIPE_CACHE_DIR="+cacheDir)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, "", fmt.Errorf("pipe build: %v\n%s", err, out)
		}
		return time.Since(start), lastLine(string(out)), nil
	}
	cold, line, err := build(src, filepath.Join(dir, "cache1"), "--remote-upload")
	if err != nil {
		return err
	}
	fmt.Printf("cold build with --remote-upload: %v  [%s]\n", cold.Round(time.Millisecond), line)
	down.Store(0)
	hit, line, err := build(clone2, filepath.Join(dir, "cache2"))
	if err != nil {
		return err
	}
	if !regexp.MustCompile(` 0 executed`).MatchString(line) {
		return fmt.Errorf("the fresh clone executed actions: %s", line)
	}
	fmt.Printf("fresh clone, empty local cache, all remote hits: %v  [%s]\n", hit.Round(time.Millisecond), line)
	fmt.Printf("remote-hit build is %.1fx faster than the cold build; %.1f KB downloaded, %.1f KB uploaded by the cold build\n",
		float64(cold)/float64(hit), float64(down.Load())/1024, float64(up.Load())/1024)
	return nil
}
