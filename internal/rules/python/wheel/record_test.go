package wheel

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A file whose bytes differ from what RECORD lists is refused, as pip
// refuses it, and nothing of the wheel is left behind.
func TestExtractVerifiesRecord(t *testing.T) {
	dir := t.TempDir()
	files := withRecord(demoFiles())
	for i := range files {
		if files[i].name == "demo_pkg/__init__.py" {
			files[i].body = "import os; os.system('echo altered')\n"
		}
	}
	whl := filepath.Join(dir, demoWheel)
	writeWheel(t, whl, files, false)
	out := filepath.Join(dir, "out")
	_, err := Extract(whl, out, ExtractOptions{})
	if err == nil || !errors.Is(err, ErrUnsafeEntry) || !strings.Contains(err.Error(), "demo_pkg/__init__.py") || !strings.Contains(err.Error(), "RECORD") {
		t.Fatalf("err = %v; want a refusal naming the entry and RECORD", err)
	}
	if got := tree(t, out); len(got) != 0 {
		t.Errorf("a refused wheel left files behind: %v", got)
	}

	// The faithful wheel extracts.
	good := filepath.Join(dir, "good", demoWheel)
	os.MkdirAll(filepath.Dir(good), 0o755)
	writeWheel(t, good, demoFiles(), true)
	if _, err := Extract(good, filepath.Join(dir, "good-out"), ExtractOptions{}); err != nil {
		t.Fatalf("a wheel whose RECORD matches: %v", err)
	}
}

// What Extract leaves out is said, not dropped silently.
func TestExtractReportsDropped(t *testing.T) {
	dir := t.TempDir()
	whl := filepath.Join(dir, demoWheel)
	writeWheel(t, whl, demoFiles(), true)
	var dropped []string
	if _, err := Extract(whl, filepath.Join(dir, "out"), ExtractOptions{Dropped: func(e string) { dropped = append(dropped, e) }}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(dropped)
	want := []string{"demo_pkg-1.0.data/data/share/demo/readme.txt", "demo_pkg-1.0.data/headers/demo.h", "demo_pkg-1.0.data/scripts/demo-cli"}
	if strings.Join(dropped, ",") != strings.Join(want, ",") {
		t.Errorf("dropped %q, want %q", dropped, want)
	}
}
