package wheel

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract: any file handed to Extract as a wheel is refused or
// extracted inside the target directory, never outside it, without a panic.
func FuzzExtract(f *testing.F) {
	seed := func(files map[string]string) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for name, body := range files {
			w, _ := zw.Create(name)
			w.Write([]byte(body))
		}
		zw.Close()
		return b.Bytes()
	}
	f.Add(seed(map[string]string{"pkg/__init__.py": "", "pkg-1.0.dist-info/METADATA": "Name: pkg\n", "pkg-1.0.dist-info/RECORD": ""}))
	f.Add(seed(map[string]string{"../evil": "x"}))
	f.Add(seed(map[string]string{"/abs": "x", "a\\b": "y"}))
	f.Add(seed(map[string]string{"pkg-1.0.data/scripts/tool": "#!python\n"}))
	f.Add([]byte("not a zip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		whl := filepath.Join(dir, "pkg-1.0-py3-none-any.whl")
		if err := os.WriteFile(whl, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		Extract(whl, out, ExtractOptions{MaxTotal: 1 << 20})
		// Whatever happened, nothing may exist in dir but the wheel and out/.
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "out" && !strings.HasSuffix(e.Name(), ".whl") {
				t.Fatalf("extraction wrote %s outside its directory", e.Name())
			}
		}
		filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type()&os.ModeSymlink != 0 {
				t.Fatalf("extraction made a symbolic link %s", p)
			}
			return nil
		})
	})
}
