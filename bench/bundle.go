package main

import (
	"archive/zip"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// bundle measures python_bundle on a workspace whose locked wheels hold
// about -mb megabytes: the first build (wheels copied from a file:// index
// into the CAS), a no-op build, app-only edits, and, in the same run,
// `pip install --target` of the same wheels.
func bundle(args []string) error {
	fs := flag.NewFlagSet("bundle", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	mb := fs.Int("mb", 30, "megabytes of dependencies")
	runs := fs.Int("runs", 7, "app-only edits to time (with -files: no-op builds per binary and mode)")
	many := fs.Int("files", 0, "instead: one wheel of this many small files, and -pipe OLD,NEW compares no-ops")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	if *many > 0 {
		return bundleManyFiles(strings.Split(*pipe, ","), *many, *runs, dir)
	}
	ws := filepath.Join(dir, "ws")
	wheels := filepath.Join(dir, "wheels")
	for _, d := range []string{ws, wheels} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lock, names, _, err := lockedDeps(wheels, *mb)
	if err != nil {
		return err
	}
	files := map[string]string{
		"WORKSPACE.star":      "workspace(name = \"bundle-bench\")\n",
		"uv.lock":             lock,
		"app/pyproject.toml":  "[project]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [" + quoteJoin(names) + "]\n",
		"app/app/__init__.py": "",
		"app/app/main.py":     "app = None\n",
		"app/BUILD.star":      "python_bundle(\n    name = \"bundle\",\n    srcs = glob([\"app/**/*.py\"]),\n    module = \"app\",\n)\n",
	}
	if err := writeFiles(ws, files); err != nil {
		return err
	}
	env := append(os.Environ(), "PIPE_CACHE_DIR="+filepath.Join(dir, "cache"), "PIPE_PYTHON_INDEX=file://"+wheels)
	build := func() (time.Duration, string, error) {
		cmd := exec.Command(*pipe, "-C", ws, "build", "//app:bundle", "--color=never")
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, "", fmt.Errorf("pipe build: %v\n%s", err, out)
		}
		return time.Since(start), lastLine(string(out)), nil
	}
	d, line, err := build()
	if err != nil {
		return err
	}
	fmt.Printf("first build (wheels copied into the CAS, extracted, zipped): %v  [%s]\n", d.Round(time.Millisecond), line)
	if d, line, err = build(); err != nil {
		return err
	}
	fmt.Printf("no-op build: %.1f ms  [%s]\n", float64(d.Microseconds())/1000, line)
	var edits []time.Duration
	for i := 0; i < *runs; i++ {
		os.WriteFile(filepath.Join(ws, "app/app/main.py"), []byte(fmt.Sprintf("app = None  # edit %d\n", i)), 0o644)
		d, line, err := build()
		if err != nil {
			return err
		}
		if !strings.Contains(line, "2 executed") {
			return fmt.Errorf("app-only edit should run 2 actions: %s", line)
		}
		edits = append(edits, d)
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i] < edits[j] })
	fmt.Printf("app-only edit -> new bundle + zip, %d runs: median %.1f ms (min %.1f, max %.1f)\n", *runs,
		float64(edits[len(edits)/2].Microseconds())/1000, float64(edits[0].Microseconds())/1000, float64(edits[len(edits)-1].Microseconds())/1000)
	// pip install --target of the same wheels, for comparison.
	target := filepath.Join(dir, "pip-target")
	os.RemoveAll(target)
	var whls []string
	ents, _ := os.ReadDir(wheels)
	for _, e := range ents {
		whls = append(whls, filepath.Join(wheels, e.Name()))
	}
	pipArgs := append([]string{"-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", target,
		"--platform", "manylinux2014_x86_64", "--only-binary=:all:", "--python-version", "3.12", "--no-compile"}, whls...)
	start := time.Now()
	if out, err := exec.Command("python3", pipArgs...).CombinedOutput(); err != nil {
		fmt.Printf("pip install --target: not measured (%v: %s)\n", err, strings.TrimSpace(string(out)))
		return nil
	}
	pip := time.Since(start)
	fmt.Printf("pip install --target of the same wheels (no zip): %v; app-only edit is %.0fx faster\n", pip.Round(time.Millisecond), float64(pip)/float64(edits[len(edits)/2]))
	return nil
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// writeWheel writes a wheel of about size bytes (uncompressed) and returns
// its sha256 and file size.
func writeWheel(path, name string, size int) ([32]byte, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return [32]byte{}, 0, err
	}
	zw := zip.NewWriter(f)
	add := func(n string, b []byte) {
		w, _ := zw.Create(n)
		w.Write(b)
	}
	text := []byte(strings.Repeat("def f(x):\n    return x * 2  # some python source\n", size/2/40/48+1))
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("%s/mod%02d.py", name, i), text)
	}
	bin := make([]byte, size/2)
	rand.Read(bin)
	add(name+"/_native.cpython-312-x86_64-linux-gnu.so", bin)
	di := name + "-1.0.dist-info/"
	add(di+"METADATA", []byte("Metadata-Version: 2.1\nName: "+name+"\nVersion: 1.0\n"))
	add(di+"WHEEL", []byte("Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\nTag: cp312-cp312-manylinux_2_17_x86_64\n"))
	add(di+"RECORD", []byte(""))
	if err := zw.Close(); err != nil {
		return [32]byte{}, 0, err
	}
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, 0, err
	}
	return sha256.Sum256(b), int64(len(b)), nil
}

// lockedDeps writes 30 wheels holding about mb megabytes into the wheels
// directory (each has 40 modules of text and one binary blob, so the mix
// compresses like real dependencies: code and .so files) and returns the
// uv.lock of an app "app" depending on all of them, their names, and the
// wheel files.
func lockedDeps(wheels string, mb int) (lock string, names, whls []string, err error) {
	const pkgs = 30
	per := mb << 20 / pkgs
	var b strings.Builder
	b.WriteString("version = 1\nrevision = 3\nrequires-python = \">=3.12\"\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \"app\" }\ndependencies = [\n")
	for i := 0; i < pkgs; i++ {
		names = append(names, fmt.Sprintf("dep%02d", i))
	}
	for _, n := range names {
		fmt.Fprintf(&b, "    { name = %q },\n", n)
	}
	b.WriteString("]\n")
	for _, n := range names {
		file := n + "-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
		sum, size, err := writeWheel(filepath.Join(wheels, file), n, per)
		if err != nil {
			return "", nil, nil, err
		}
		whls = append(whls, filepath.Join(wheels, file))
		fmt.Fprintf(&b, "\n[[package]]\nname = %q\nversion = \"1.0\"\nsource = { registry = \"https://pypi.org/simple\" }\nwheels = [\n    { url = \"https://files.pythonhosted.org/packages/00/00/%s\", hash = \"sha256:%x\", size = %d },\n]\n", n, file, sum, size)
	}
	return b.String(), names, whls, nil
}

// writeFiles writes files (slash paths relative to root → contents).
func writeFiles(root string, files map[string]string) error {
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
