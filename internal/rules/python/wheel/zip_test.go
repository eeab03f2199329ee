package wheel

// The zip of an extracted site-packages tree, python_bundle's workload for
// ziparchive: a round trip through Extract, and the benchmarks on the tree
// benchTree lays out.

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pipebuild/pipe/internal/ziparchive"
)

// TestExtractWriteZipRoundTrip: a wheel extracted and zipped again gives
// back the extracted files.
func TestExtractWriteZipRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	whl := filepath.Join(tmp, demoWheel)
	writeWheel(t, whl, demoFiles(), true)
	site := filepath.Join(tmp, "site")
	written, err := Extract(whl, site, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := ziparchive.Write(&buf, site); err != nil {
		t.Fatal(err)
	}
	zpath := filepath.Join(tmp, "bundle.zip")
	os.WriteFile(zpath, buf.Bytes(), 0o644)
	// The bundle zip is not a wheel (no dist-info at the top is required of
	// it), so read it back with archive/zip rather than Extract.
	zr, err := zip.OpenReader(zpath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, written) {
		t.Errorf("zip has\n%q\nextracted\n%q", names, written)
	}
}

func BenchmarkWriteZip(b *testing.B) {
	dir := b.TempDir()
	size := benchTree(b, dir)
	b.SetBytes(size)
	var zipped int
	b.ResetTimer()
	for range b.N {
		var cw byteCounter
		if _, err := ziparchive.Write(&cw, dir); err != nil {
			b.Fatal(err)
		}
		zipped = int(cw)
	}
	b.ReportMetric(float64(zipped)/float64(size), "zip/raw")
}

// BenchmarkWriteZipLayers is the app-only edit: the ~30 MB dependency layer
// is a prebuilt zip, the app is a few files.
func BenchmarkWriteZipLayers(b *testing.B) {
	tmp := b.TempDir()
	deps := filepath.Join(tmp, "deps")
	size := benchTree(b, deps)
	depZip := filepath.Join(tmp, "deps.zip")
	out, _ := os.Create(depZip)
	if _, err := ziparchive.Write(out, deps); err != nil {
		b.Fatal(err)
	}
	out.Close()
	app := filepath.Join(tmp, "app")
	for i := range 20 {
		os.MkdirAll(filepath.Join(app, "my_api"), 0o755)
		os.WriteFile(filepath.Join(app, "my_api", fmt.Sprintf("m%d.py", i)), bytes.Repeat([]byte("def f(): return 1\n"), 200), 0o644)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if _, err := ziparchive.WriteLayers(io.Discard, ziparchive.Layer{Zip: depZip}, ziparchive.Layer{Dir: app}); err != nil {
			b.Fatal(err)
		}
	}
}

// byteCounter is a writer that only counts.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}
