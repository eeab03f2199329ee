//go:build linux

package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWatchStart measures a watcher's start on a workspace of 1,000
// directories of 20 files each: the walk that adds the watches (and finds
// the files with other names).
func BenchmarkWatchStart(b *testing.B) {
	root := b.TempDir()
	for d := 0; d < 1000; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d/50), fmt.Sprintf("e%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 20; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.py", f)), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := newWatcher(root)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.start(); err != nil {
			b.Fatal(err)
		}
		w.file.Close()
	}
}
