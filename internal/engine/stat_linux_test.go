package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkStatPaths compares the snapshot's way of checking recorded
// paths, one fstatat relative to the workspace root per path, with
// opening each directory and statting its entries relative to it (fewer
// path components per stat, one open and close per directory), on a tree
// shaped like a generated workspace: pkgs/gNN/pNNNN/{BUILD.star,files/f*}.
//
//	go test ./internal/engine -run - -bench StatPaths -benchtime 20x
func BenchmarkStatPaths(b *testing.B) {
	root := b.TempDir()
	type dir struct {
		path  string
		names []string
	}
	var dirs []dir
	for g := range 10 {
		for p := range 100 {
			pkg := fmt.Sprintf("pkgs/g%02d/p%04d", g, g*100+p)
			files := filepath.Join(pkg, "files")
			if err := os.MkdirAll(filepath.Join(root, files), 0o755); err != nil {
				b.Fatal(err)
			}
			d := dir{path: files}
			for f := range 10 {
				name := fmt.Sprintf("f%d.txt", f)
				if err := os.WriteFile(filepath.Join(root, files, name), []byte(name), 0o644); err != nil {
					b.Fatal(err)
				}
				d.names = append(d.names, name)
			}
			if err := os.WriteFile(filepath.Join(root, pkg, "BUILD.star"), nil, 0o644); err != nil {
				b.Fatal(err)
			}
			dirs = append(dirs, d, dir{path: pkg, names: []string{"BUILD.star", "files"}})
		}
	}
	rootfd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(rootfd)
	var full [][]byte
	for _, d := range dirs {
		for _, n := range d.names {
			full = append(full, append([]byte(d.path+"/"+n), 0))
		}
	}
	cnames := make([][][]byte, len(dirs))
	for i, d := range dirs {
		for _, n := range d.names {
			cnames[i] = append(cnames[i], append([]byte(n), 0))
		}
	}
	b.ResetTimer()
	// Both ways in every iteration, one after the other, so load on the
	// machine falls on both alike.
	var rootRel, perDir time.Duration
	for range b.N {
		t := time.Now()
		for _, c := range full {
			if _, errno := statAt(rootfd, "", c, 0); errno != 0 {
				b.Fatal(errno)
			}
		}
		rootRel += time.Since(t)
		t = time.Now()
		for i, d := range dirs {
			fd, err := unix.Openat(rootfd, d.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range cnames[i] {
				if _, errno := statAt(fd, "", c, 0); errno != 0 {
					b.Fatal(errno)
				}
			}
			unix.Close(fd)
		}
		perDir += time.Since(t)
	}
	n := float64(b.N * len(full))
	b.ReportMetric(float64(rootRel.Nanoseconds())/n, "root-relative-ns/path")
	b.ReportMetric(float64(perDir.Nanoseconds())/n, "per-directory-ns/path")
}
