package wheel

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
	"github.com/pipebuild/pipe/internal/ziparchive"
)

func umask(m int) int { return syscall.Umask(m) }

// wfile is one entry of a wheel a test builds.
type wfile struct {
	name    string
	body    string
	mode    fs.FileMode // 0 means 0644; fs.ModeSymlink makes a link entry, fs.ModeDir a directory
	rawMode uint32      // when set, the external attributes' high half, verbatim
}

// writeWheel writes a zip holding files, in order, exactly as given (so
// tests can write what a builder never would), plus a correct RECORD when
// record is set and a dist-info is present.
func writeWheel(t testing.TB, path string, files []wfile, record bool) {
	t.Helper()
	if record {
		files = withRecord(files)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		switch {
		case f.rawMode != 0:
			h.CreatorVersion = 3 << 8
			h.ExternalAttrs = f.rawMode << 16
		case f.mode == 0:
			h.SetMode(0o644)
		default:
			h.SetMode(f.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// withRecord appends a RECORD as wheel builders write it.
func withRecord(files []wfile) []wfile {
	var distInfo string
	for _, f := range files {
		if top, _, ok := strings.Cut(f.name, "/"); ok && strings.HasSuffix(top, ".dist-info") {
			distInfo = top
		}
	}
	if distInfo == "" {
		return files
	}
	var rec strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f.name, "/") {
			continue
		}
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&rec, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	fmt.Fprintf(&rec, "%s/RECORD,,\n", distInfo)
	return append(slices.Clone(files), wfile{name: distInfo + "/RECORD", body: rec.String()})
}

// distInfo is the minimal metadata pip accepts for demo_pkg 1.0.
func distInfo(name string) []wfile {
	di := name + "-1.0.dist-info/"
	return []wfile{
		{name: di + "METADATA", body: "Metadata-Version: 2.1\nName: " + strings.ReplaceAll(name, "_", "-") + "\nVersion: 1.0\n"},
		{name: di + "WHEEL", body: "Wheel-Version: 1.0\nGenerator: pipe-test\nRoot-Is-Purelib: false\nTag: cp312-cp312-manylinux_2_17_x86_64\nTag: cp312-cp312-manylinux2014_x86_64\n"},
	}
}

const demoWheel = "demo_pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"

// demoFiles exercises every part of the layout: root content, both .data
// lib schemes, the dropped schemes, dist-info, directory entries, an
// executable and a platlib extension module.
func demoFiles() []wfile {
	so := "\x7fELF\x02\x01\x01" + strings.Repeat("\x00\x01binary", 100)
	files := []wfile{
		{name: "demo_pkg/", mode: fs.ModeDir | 0o755},
		{name: "demo_pkg/__init__.py", body: "from ._native import x\n"},
		{name: "demo_pkg/_native.cpython-312-x86_64-linux-gnu.so", body: so, mode: 0o755},
		{name: "demo_pkg/bin/helper.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		{name: "demo_pkg/data/schema.json", body: `{"a": 1}`},
		{name: "demo_pkg/readonly.txt", body: "r", mode: 0o444},
		{name: "demo_pkg-1.0.data/purelib/demo_extra/__init__.py", body: "EXTRA = 1\n"},
		{name: "demo_pkg-1.0.data/platlib/demo_plat.py", body: "PLAT = 1\n"},
		{name: "demo_pkg-1.0.data/scripts/demo-cli", body: "#!python\nprint('cli')\n", mode: 0o755},
		{name: "demo_pkg-1.0.data/headers/demo.h", body: "int demo(void);\n"},
		{name: "demo_pkg-1.0.data/data/share/demo/readme.txt", body: "data\n"},
		{name: "demo_pkg-1.0.dist-info/top_level.txt", body: "demo_pkg\ndemo_extra\ndemo_plat\n"},
		{name: "demo_pkg-1.0.dist-info/entry_points.txt", body: "[console_scripts]\ndemo = demo_pkg:main\n"},
	}
	return append(files, distInfo("demo_pkg")...)
}

// tree reads dir back as path → content, with the mode as a prefix.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = fmt.Sprintf("%v %s", info.Mode(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestExtractLayout(t *testing.T) {
	src := t.TempDir()
	whl := filepath.Join(src, demoWheel)
	files := withRecord(demoFiles())
	writeWheel(t, whl, files, false)
	body := map[string]string{}
	for _, f := range files {
		body[f.name] = f.body
	}

	dir := filepath.Join(t.TempDir(), "site")
	written, err := Extract(whl, dir, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		r = "-rw-r--r-- "
		x = "-rwxr-xr-x "
	)
	want := map[string]string{
		"demo_pkg/__init__.py":                             r + body["demo_pkg/__init__.py"],
		"demo_pkg/_native.cpython-312-x86_64-linux-gnu.so": x + body["demo_pkg/_native.cpython-312-x86_64-linux-gnu.so"],
		"demo_pkg/bin/helper.sh":                           x + body["demo_pkg/bin/helper.sh"],
		"demo_pkg/data/schema.json":                        r + body["demo_pkg/data/schema.json"],
		"demo_pkg/readonly.txt":                            r + "r",
		"demo_extra/__init__.py":                           r + "EXTRA = 1\n",
		"demo_plat.py":                                     r + "PLAT = 1\n",
		"demo_pkg-1.0.dist-info/top_level.txt":             r + body["demo_pkg-1.0.dist-info/top_level.txt"],
		"demo_pkg-1.0.dist-info/entry_points.txt":          r + body["demo_pkg-1.0.dist-info/entry_points.txt"],
		"demo_pkg-1.0.dist-info/METADATA":                  r + body["demo_pkg-1.0.dist-info/METADATA"],
		"demo_pkg-1.0.dist-info/WHEEL":                     r + body["demo_pkg-1.0.dist-info/WHEEL"],
		// RECORD is the wheel's, .data paths and all.
		"demo_pkg-1.0.dist-info/RECORD": r + body["demo_pkg-1.0.dist-info/RECORD"],
	}
	got := tree(t, dir)
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s:\n got %.80q\nwant %.80q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected file %s", p)
		}
	}
	var wantList []string
	for p := range want {
		wantList = append(wantList, p)
	}
	sort.Strings(wantList)
	if !slices.Equal(written, wantList) {
		t.Errorf("returned\n%q\nwant\n%q", written, wantList)
	}
	if !strings.Contains(got["demo_pkg-1.0.dist-info/RECORD"], "demo_pkg-1.0.data/scripts/demo-cli,sha256=") {
		t.Error("RECORD was rewritten")
	}
}

func TestExtractModesIgnoreUmask(t *testing.T) {
	old := umask(0o077)
	defer umask(old)
	whl := filepath.Join(t.TempDir(), demoWheel)
	writeWheel(t, whl, demoFiles(), true)
	dir := t.TempDir()
	if _, err := Extract(whl, dir, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]fs.FileMode{"demo_pkg/bin/helper.sh": 0o755, "demo_pkg/__init__.py": 0o644} {
		info, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != m {
			t.Errorf("%s: mode %v, want %v", p, info.Mode(), m)
		}
	}
}

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	di := distInfo("evil")
	cases := []struct {
		name  string
		files []wfile
		want  string
	}{
		{"dotdot", []wfile{{name: "../evil", body: "x"}}, `entry "../evil": ".." component`},
		{"absolute", []wfile{{name: "/abs", body: "x"}}, `entry "/abs": absolute path`},
		{"inner dotdot", []wfile{{name: "a/../../x", body: "x"}}, `entry "a/../../x": ".." component`},
		{"backslash", []wfile{{name: `..\evil`, body: "x"}}, `entry "..\\evil": backslash`},
		{"drive", []wfile{{name: "C:/evil", body: "x"}}, `entry "C:/evil": drive-letter`},
		{"double slash", []wfile{{name: "a//b", body: "x"}}, `entry "a//b": empty path component`},
		{"dot", []wfile{{name: "./a", body: "x"}}, `entry "./a": "." component`},
		{"symlink", []wfile{{name: "evil/link", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}}, `entry "evil/link": symbolic link`},
		{"symlink inside", []wfile{{name: "evil/link", body: "ok.py", mode: fs.ModeSymlink | 0o777}}, `symbolic link`},
		{"fifo", []wfile{{name: "evil/fifo", rawMode: 0o010644}}, `special file`},
		{"duplicate", []wfile{{name: "evil/a.py", body: "1"}, {name: "evil/a.py", body: "2"}}, `entry "evil/a.py": duplicate entry`},
		{"data collides with root", []wfile{{name: "evil/a.py", body: "1"}, {name: "evil-1.0.data/purelib/evil/a.py", body: "2"}},
			`entry "evil-1.0.data/purelib/evil/a.py": installs to evil/a.py, as entry "evil/a.py" does`},
		{"file vs dir", []wfile{{name: "evil/a", body: "1"}, {name: "evil/a/b.py", body: "2"}}, `entry "evil/a": is a file, but entry "evil/a/b.py" needs evil/a to be a directory`},
		{"unknown scheme", []wfile{{name: "evil-1.0.data/lib/x.py", body: "1"}}, `unknown scheme "lib"`},
		{"file in .data", []wfile{{name: "evil-1.0.data/x.py", body: "1"}}, `file directly under evil-1.0.data/`},
		{"dotdot in data", []wfile{{name: "evil-1.0.data/purelib/../../x", body: "1"}}, `".." component`},
		{"not utf8", []wfile{{name: "evil/\xff.py", body: "1"}}, `not valid UTF-8`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			whl := filepath.Join(tmp, "evil-1.0-py3-none-any.whl")
			writeWheel(t, whl, append(slices.Clone(c.files), di...), false)
			dir := filepath.Join(tmp, "out", "site")
			_, err := Extract(whl, dir, ExtractOptions{})
			if err == nil {
				t.Fatal("extracted")
			}
			if !strings.Contains(err.Error(), "wheel evil-1.0-py3-none-any.whl: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\nwant it to name the wheel and contain %q", err, c.want)
			}
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("error %q is not ErrUnsafeEntry", err)
			}
			// Nothing written anywhere: not in dir, not beside it.
			var found []string
			filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && p != whl {
					found = append(found, p)
				}
				return nil
			})
			if len(found) > 0 {
				t.Errorf("files written: %q", found)
			}
		})
	}
}

func TestExtractNameInErrorsAndMetadataChecks(t *testing.T) {
	tmp := t.TempDir()
	blob := filepath.Join(tmp, "0123abcd")
	writeWheel(t, blob, []wfile{{name: "x/__init__.py"}}, false)
	_, err := Extract(blob, filepath.Join(tmp, "o1"), ExtractOptions{Name: "x-1.0-py3-none-any.whl"})
	if err == nil || !strings.Contains(err.Error(), "wheel x-1.0-py3-none-any.whl: no .dist-info directory") {
		t.Errorf("got %v", err)
	}
	writeWheel(t, blob, append(distInfo("x"), distInfo("y")...), false)
	if _, err := Extract(blob, filepath.Join(tmp, "o2"), ExtractOptions{}); err == nil || !strings.Contains(err.Error(), "wheel 0123abcd: several .dist-info directories (x-1.0.dist-info, y-1.0.dist-info)") {
		t.Errorf("got %v", err)
	}
	writeWheel(t, blob, []wfile{{name: "x-1.0.dist-info/WHEEL", body: "Wheel-Version: 2.0\n"}}, false)
	if _, err := Extract(blob, filepath.Join(tmp, "o3"), ExtractOptions{}); err == nil || !strings.Contains(err.Error(), "Wheel-Version 2.0 is not supported") {
		t.Errorf("got %v", err)
	}
	os.WriteFile(blob, []byte("<html>not found</html>"), 0o644)
	if _, err := Extract(blob, filepath.Join(tmp, "o4"), ExtractOptions{Name: "x.whl"}); err == nil || !strings.Contains(err.Error(), "wheel x.whl: not a readable zip file") {
		t.Errorf("got %v", err)
	}
}

func TestExtractRefusesCollisionWithAnotherWheel(t *testing.T) {
	tmp := t.TempDir()
	a := filepath.Join(tmp, "a-1.0-py3-none-any.whl")
	b := filepath.Join(tmp, "b-1.0-py3-none-any.whl")
	writeWheel(t, a, append([]wfile{{name: "shared/__init__.py", body: "a"}}, distInfo("a")...), true)
	writeWheel(t, b, append([]wfile{{name: "b/__init__.py", body: "b"}, {name: "shared/__init__.py", body: "b"}}, distInfo("b")...), true)
	dir := filepath.Join(tmp, "site")
	if _, err := Extract(a, dir, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := Extract(b, dir, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), `wheel b-1.0-py3-none-any.whl: entry "shared/__init__.py": shared/__init__.py already exists`) {
		t.Fatalf("got %v", err)
	}
	got := tree(t, dir)
	if got["shared/__init__.py"] != "-rw-r--r-- a" {
		t.Errorf("a's file overwritten: %q", got["shared/__init__.py"])
	}
	for p := range got {
		if strings.HasPrefix(p, "b") {
			t.Errorf("b's %s left behind after the failure", p)
		}
	}

	// A file where a wheel needs a directory.
	c := filepath.Join(tmp, "c-1.0-py3-none-any.whl")
	writeWheel(t, c, append([]wfile{{name: "shared/__init__.py/x.py", body: "c"}}, distInfo("c")...), true)
	if _, err := Extract(c, dir, ExtractOptions{}); err == nil || !strings.Contains(err.Error(), `wheel c-1.0-py3-none-any.whl: entry "shared/__init__.py/x.py": create directory shared/__init__.py`) || !strings.Contains(err.Error(), "from another wheel") {
		t.Errorf("got %v", err)
	}
}

func TestExtractDoesNotFollowLinksInTarget(t *testing.T) {
	tmp := t.TempDir()
	outside := filepath.Join(tmp, "outside")
	os.Mkdir(outside, 0o755)
	dir := filepath.Join(tmp, "site")
	os.Mkdir(dir, 0o755)
	if err := os.Symlink(outside, filepath.Join(dir, "pkg")); err != nil {
		t.Fatal(err)
	}
	whl := filepath.Join(tmp, "pkg-1.0-py3-none-any.whl")
	writeWheel(t, whl, append([]wfile{{name: "pkg/__init__.py", body: "x"}}, distInfo("pkg")...), true)
	_, err := Extract(whl, dir, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), `wheel pkg-1.0-py3-none-any.whl: entry "pkg/__init__.py": create directory pkg: `) {
		t.Errorf("extracted through a link leaving the directory: %v", err)
	}
	if strings.Contains(err.Error(), "another wheel") {
		t.Errorf("misleading hint: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("wrote outside: %v", ents)
	}
}

func TestExtractZipBombs(t *testing.T) {
	tmp := t.TempDir()
	// Declared total over the cap: refused before writing.
	whl := filepath.Join(tmp, "big-1.0-py3-none-any.whl")
	writeWheel(t, whl, append([]wfile{{name: "big/zeros", body: strings.Repeat("\x00", 1<<20)}}, distInfo("big")...), true)
	dir := filepath.Join(tmp, "site")
	_, err := Extract(whl, dir, ExtractOptions{MaxTotal: 1 << 19})
	if err == nil || !strings.Contains(err.Error(), "unpacks to more than 524288 bytes") || !errors.Is(err, ErrUnsafeEntry) {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("wrote big/: %v", err)
	}

	// An entry that holds more than it declares: writing stops at the
	// declared size and the file is removed.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range append([]wfile{{name: "liar/a"}}, distInfo("liar")...) {
		w, _ := zw.Create(f.name)
		w.Write([]byte(f.body))
	}
	zw.Close()
	raw := buf.Bytes()
	// Inflate a second archive by hand: a 4 MB stream declared as 10 bytes.
	var bomb bytes.Buffer
	zw = zip.NewWriter(&bomb)
	zr, _ := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	for _, f := range zr.File {
		if f.Name == "liar/a" {
			var comp bytes.Buffer
			fw := zip.NewWriter(&comp)
			w, _ := fw.CreateHeader(&zip.FileHeader{Name: "x", Method: zip.Deflate})
			w.Write(bytes.Repeat([]byte("A"), 4<<20))
			fw.Close()
			cr, _ := zip.NewReader(bytes.NewReader(comp.Bytes()), int64(comp.Len()))
			rr, _ := cr.File[0].OpenRaw()
			h := cr.File[0].FileHeader
			h.Name = "liar/a"
			h.UncompressedSize64 = 10
			w2, _ := zw.CreateRaw(&h)
			var rb bytes.Buffer
			rb.ReadFrom(rr)
			w2.Write(rb.Bytes())
			continue
		}
		zw.Copy(f)
	}
	zw.Close()
	whl = filepath.Join(tmp, "liar-1.0-py3-none-any.whl")
	os.WriteFile(whl, bomb.Bytes(), 0o644)
	dir = filepath.Join(tmp, "site2")
	_, err = Extract(whl, dir, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), `wheel liar-1.0-py3-none-any.whl: entry "liar/a": content does not match its declared size (10 bytes)`) || !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("got %v", err)
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("left %d files after the failure", len(got))
	}

	// Too many entries.
	files := distInfo("many")
	for i := range 50 {
		files = append(files, wfile{name: fmt.Sprintf("many/%d.py", i)})
	}
	whl = filepath.Join(tmp, "many-1.0-py3-none-any.whl")
	writeWheel(t, whl, files, false)
	if _, err := Extract(whl, filepath.Join(tmp, "site3"), ExtractOptions{MaxFiles: 20}); err == nil || !strings.Contains(err.Error(), "52 entries, over the limit of 20") {
		t.Errorf("got %v", err)
	}
}

func TestExtractExclude(t *testing.T) {
	whl := filepath.Join(t.TempDir(), "ex-1.0-py3-none-any.whl")
	writeWheel(t, whl, append([]wfile{{name: "ex/__init__.py"}, {name: "ex/__pycache__/__init__.cpython-312.pyc"}}, distInfo("ex")...), true)
	got, err := Extract(whl, t.TempDir(), ExtractOptions{Exclude: func(p string) bool { return strings.Contains(p, "__pycache__/") }})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ex-1.0.dist-info/METADATA", "ex-1.0.dist-info/RECORD", "ex-1.0.dist-info/WHEEL", "ex/__init__.py"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
}

// TestExtractMatchesPip installs the demo wheel with real pip and compares
// the importable files: same paths, same bytes, same exec bits.
func TestExtractMatchesPip(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-m", "pip", "--version").Run()
	}
	if err != nil {
		testenv.Need(t, "python3 -m pip (the cross-check with pip)", err.Error())
	}
	tmp := t.TempDir()
	links := filepath.Join(tmp, "links")
	os.Mkdir(links, 0o755)
	whl := filepath.Join(links, demoWheel)
	writeWheel(t, whl, demoFiles(), true)

	pipDir := filepath.Join(tmp, "pip")
	cmd := exec.Command(py, "-m", "pip", "install", "--no-deps", "--target", pipDir, "--no-index", "--find-links", links,
		"--platform", "manylinux2014_x86_64", "--only-binary=:all:", "--python-version", "3.12",
		"--disable-pip-version-check", "--no-cache-dir", "--no-compile", "demo-pkg")
	// The machine's PIP_FIND_LINKS and friends must not add wheels.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PIP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PIP_CONFIG_FILE=/dev/null", "PYTHONDONTWRITEBYTECODE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pip: %v\n%s", err, out)
	}
	ours := filepath.Join(tmp, "ours")
	if _, err := Extract(whl, ours, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}

	pipTree := tree(t, pipDir)
	var ignored []string
	defer func() { sort.Strings(ignored); t.Logf("pip's files not compared: %q", ignored) }()
	for p := range pipTree {
		top, _, _ := strings.Cut(p, "/")
		switch {
		// What pip adds or rewrites in dist-info for its own bookkeeping.
		case strings.HasSuffix(p, ".dist-info/INSTALLER"), strings.HasSuffix(p, ".dist-info/REQUESTED"),
			strings.HasSuffix(p, ".dist-info/direct_url.json"), strings.HasSuffix(p, ".dist-info/RECORD"),
			strings.Contains(p, "__pycache__/"):
			delete(pipTree, p)
			ignored = append(ignored, p)
		// The .data schemes Extract drops on purpose: pip --target puts
		// scripts in bin/, headers in include/ and data at the root.
		case top == "bin" || top == "include" || top == "share":
			delete(pipTree, p)
			ignored = append(ignored, p)
		}
	}
	ourTree := tree(t, ours)
	if _, ok := ourTree["demo_pkg-1.0.dist-info/RECORD"]; !ok {
		t.Error("no RECORD")
	}
	delete(ourTree, "demo_pkg-1.0.dist-info/RECORD")
	normalize := func(m map[string]string) map[string]string {
		// pip leaves non-executable files to the umask; compare the x bit.
		out := map[string]string{}
		for p, v := range m {
			mode, body, _ := strings.Cut(v, " ")
			out[p] = fmt.Sprintf("exec=%v %s", strings.Contains(mode, "x"), body)
		}
		return out
	}
	a, b := normalize(ourTree), normalize(pipTree)
	for p := range b {
		if a[p] != b[p] {
			t.Errorf("%s: Extract %.60q, pip %.60q", p, a[p], b[p])
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			t.Errorf("%s: written by Extract, not by pip", p)
		}
	}
	if len(a) < 10 {
		t.Errorf("only %d files compared", len(a))
	}
	t.Logf("%d files identical in path, bytes and exec bit", len(a))
}

// benchTree writes about 30 MB of Python-package-like files: many small
// sources, some mid-size modules, a few large extension modules.
func benchTree(tb testing.TB, dir string) int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("def class return import from self if else for in while try except with as lambda yield None True False async await value result item data config")
	text := func(n int) []byte {
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				b.WriteString("\n    ")
			} else {
				b.WriteByte(' ')
			}
		}
		return b.Bytes()[:n]
	}
	binary := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = byte(rng.IntN(256))
			}
		}
		return b
	}
	var total int64
	write := func(rel string, b []byte, mode fs.FileMode) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			tb.Fatal(err)
		}
		total += int64(len(b))
	}
	for i := range 3000 {
		write(fmt.Sprintf("pkg%02d/sub%02d/mod%04d.py", i%20, i%7, i), text(2000+rng.IntN(6000)), 0o644)
	}
	for i := range 20 {
		write(fmt.Sprintf("pkg%02d/big%02d.py", i, i), text(200_000), 0o644)
	}
	for i := range 4 {
		write(fmt.Sprintf("pkg%02d/_ext%d.cpython-312-x86_64-linux-gnu.so", i, i), binary(1_000_000+i*1_000_000), 0o755)
	}
	return total
}

// benchWheel zips benchTree as a wheel.
func benchWheel(b *testing.B) (string, int64) {
	tmp := b.TempDir()
	src := filepath.Join(tmp, "src")
	size := benchTree(b, src)
	for _, f := range distInfo("bench") {
		os.MkdirAll(filepath.Join(src, filepath.Dir(f.name)), 0o755)
		os.WriteFile(filepath.Join(src, f.name), []byte(f.body), 0o644)
	}
	whl := filepath.Join(tmp, "bench-1.0-py3-none-any.whl")
	out, err := os.Create(whl)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ziparchive.Write(out, src); err != nil {
		b.Fatal(err)
	}
	out.Close()
	return whl, size
}

// BenchmarkExtract leaves each iteration's tree in place: deleting them
// between iterations makes ext4 (mounted with discard here) slow down the
// next iteration's file creation by an order of magnitude.
func BenchmarkExtract(b *testing.B) {
	whl, size := benchWheel(b)
	tmp := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if _, err := Extract(whl, dir, ExtractOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
