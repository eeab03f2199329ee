package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTrees: a tree appears in one rename, a second commit of the same
// name keeps the first, trees count in Stat, are trimmed whole by age
// (read-only directories and all) and emptied by Clean.
func TestTrees(t *testing.T) {
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Tree("pyenv", "k1"); ok {
		t.Fatal("a tree before any commit")
	}
	make := func(content string) string {
		tmp, err := c.TempDir()
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(tmp, "site", "pkg"), 0o755)
		os.WriteFile(filepath.Join(tmp, "site", "pkg", "m.py"), []byte(content), 0o444)
		os.Chmod(filepath.Join(tmp, "site", "pkg"), 0o555)
		os.Chmod(filepath.Join(tmp, "site"), 0o555)
		return tmp
	}
	p, err := c.CommitTree(make("first"), "pyenv", "k1")
	if err != nil {
		t.Fatal(err)
	}
	second := make("second")
	if p2, err := c.CommitTree(second, "pyenv", "k1"); err != nil || p2 != p {
		t.Fatalf("second commit: %s, %v", p2, err)
	}
	if b, _ := os.ReadFile(filepath.Join(p, "site", "pkg", "m.py")); string(b) != "first" {
		t.Errorf("the first tree was replaced: %q", b)
	}
	if _, err := os.Stat(second); err == nil {
		t.Errorf("the losing temp tree was left behind")
	}
	if got, ok := c.Tree("pyenv", "k1"); !ok || got != p {
		t.Errorf("Tree = %s, %t", got, ok)
	}
	info, err := c.Stat(context.Background())
	if err != nil || info.TreeCount != 1 || info.Bytes < 5 {
		t.Errorf("Stat: %+v, %v", info, err)
	}

	// Unused for two weeks: trimmed as a whole.
	old := time.Now().Add(-14 * 24 * time.Hour)
	os.Chtimes(p, old, old)
	st, err := c.Trim(context.Background(), TrimOptions{MaxAge: 7 * 24 * time.Hour})
	if err != nil || st.TreeCount != 0 || st.RemovedEntries != 1 {
		t.Errorf("Trim: %+v, %v", st, err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Errorf("the trimmed tree is still there")
	}
	if _, err := c.CommitTree(make("again"), "python", "k2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Clean(); err != nil {
		t.Fatalf("Clean with a read-only tree: %v", err)
	}
	if _, ok := c.Tree("python", "k2"); ok {
		t.Errorf("Clean left the tree")
	}
}
