package main

import (
	"archive/zip"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// bundleManyFiles measures a Python service (python_bundle and
// openapi_schema) on one locked wheel of files small files (bench bundle
// -files N; the host needs a Python 3.12): the cold build, then no-op builds
// answered by the build snapshot and the long way (PIPE_SNAPSHOT=0),
// the pipe binaries given interleaved, each on its own copy of the
// workspace and its own cache. It prints wall time, CPU time (user +
// system) and peak RSS, medians of runs.
func bundleManyFiles(pipes []string, files, runs int, dir string) error {
	wheels := filepath.Join(dir, "wheels")
	if err := os.MkdirAll(wheels, 0o755); err != nil {
		return err
	}
	lock, err := manyFilesWheel(wheels, files)
	if err != nil {
		return err
	}
	type subject struct {
		pipe, ws, cache string
	}
	var subs []subject
	for i, p := range pipes {
		s := subject{pipe: p, ws: filepath.Join(dir, fmt.Sprintf("ws%d", i)), cache: filepath.Join(dir, fmt.Sprintf("cache%d", i))}
		for _, d := range []string{s.ws, s.cache} {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
		err := writeFiles(s.ws, map[string]string{
			"WORKSPACE.star":      "workspace(name = \"bundle-bench\")\n",
			"uv.lock":             lock,
			"app/pyproject.toml":  "[project]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"many\"]\n",
			"app/app/__init__.py": "",
			"app/app/main.py":     manyFilesApp,
			"app/BUILD.star":      manyFilesBuild,
		})
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	env := []string{"PIPE_PYTHON_INDEX=file://" + wheels}
	build := func(s subject, extra ...string) (pipeRun, time.Duration, error) {
		r, err := runPipe(s.pipe, s.ws, s.cache, append(append([]string(nil), env...), extra...), "build", "//...", "--color=never", "-v")
		return r, r.cpu, err
	}
	fmt.Printf("one wheel of %d small files; %d runs each, interleaved\n\n", files, runs)
	fmt.Println("| pipe | build | wall (median, range) | CPU | peak RSS |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, s := range subs {
		r, cpu, err := build(s)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | cold | %s | %s | %d MB |\n", s.pipe, r.wall.Round(time.Millisecond), cpu.Round(time.Millisecond), r.rssKB>>10)
	}
	type key struct {
		sub  int
		mode string
	}
	walls := map[key][]time.Duration{}
	cpus := map[key][]time.Duration{}
	rss := map[key][]int64{}
	answered := map[key]int{}
	// A build that does not go through the snapshot removes it, so the
	// modes are measured one after the other, the binaries interleaved.
	modes := []string{"snapshot", "PIPE_SNAPSHOT=0"}
	for _, m := range modes {
		var extra []string
		if m != "snapshot" {
			extra = []string{m}
		}
		// The first no-op after a build checks the outputs written
		// within the racy window once; let them settle, then prime.
		time.Sleep(time.Second)
		for _, s := range subs {
			for range 2 {
				if _, _, err := build(s, extra...); err != nil {
					return err
				}
			}
		}
		for range runs {
			for i, s := range subs {
				r, cpu, err := build(s, extra...)
				if err != nil {
					return err
				}
				k := key{i, m}
				walls[k] = append(walls[k], r.wall)
				cpus[k] = append(cpus[k], cpu)
				rss[k] = append(rss[k], r.rssKB)
				if strings.Contains(r.output, "answered from its snapshot") {
					answered[k]++
				}
			}
		}
	}
	for i, s := range subs {
		for _, m := range modes {
			k := key{i, m}
			w, c, m2 := walls[k], cpus[k], rss[k]
			sort.Slice(w, func(a, b int) bool { return w[a] < w[b] })
			sort.Slice(c, func(a, b int) bool { return c[a] < c[b] })
			sort.Slice(m2, func(a, b int) bool { return m2[a] < m2[b] })
			fmt.Printf("| %s | no-op, %s (%d of %d answered by the snapshot) | %s (%s–%s) | %s | %d MB |\n", s.pipe, m, answered[k], runs,
				w[len(w)/2].Round(time.Millisecond), w[0].Round(time.Millisecond), w[len(w)-1].Round(time.Millisecond),
				c[len(c)/2].Round(time.Millisecond), m2[len(m2)/2]>>10)
		}
	}
	return nil
}

// manyFilesBuild is a Python service as fastapi_project declares one: the
// bundle, and a schema made by importing the app on the host's interpreter,
// whose analysis chooses that interpreter (a host probe).
const manyFilesBuild = `python_bundle(
    name = "bundle",
    srcs = glob(["app/**/*.py"]),
    module = "app",
)

openapi_schema(
    name = "openapi",
    srcs = glob(["app/**/*.py"]),
    app = "app.main:app",
    python_version = "3.12",
)
`

// manyFilesApp has what openapi_schema calls, without FastAPI.
const manyFilesApp = `class App:
    def openapi(self):
        return {"openapi": "3.1.0", "info": {"title": "app", "version": "1"}}


app = App()
`

// manyFilesWheel writes one wheel "many" of n small Python files, 100 to a
// directory, and returns the uv.lock of an app depending on it.
func manyFilesWheel(wheels string, n int) (string, error) {
	file := "many-1.0-py3-none-any.whl"
	path := filepath.Join(wheels, file)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	zw := zip.NewWriter(f)
	add := func(name string, b []byte) error {
		w, err := zw.Create(name)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	for i := range n {
		src := fmt.Sprintf("# module %d\n\ndef f%d(x):\n    return x + %d\n", i, i, i)
		if err := add(fmt.Sprintf("many/p%03d/m%05d.py", i/100, i), []byte(src)); err != nil {
			return "", err
		}
	}
	di := "many-1.0.dist-info/"
	add(di+"METADATA", []byte("Metadata-Version: 2.1\nName: many\nVersion: 1.0\n"))
	add(di+"WHEEL", []byte("Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
	add(di+"RECORD", []byte(""))
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("version = 1\nrevision = 3\nrequires-python = \">=3.12\"\n\n"+
		"[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \"app\" }\ndependencies = [\n    { name = \"many\" },\n]\n\n"+
		"[[package]]\nname = \"many\"\nversion = \"1.0\"\nsource = { registry = \"https://pypi.org/simple\" }\nwheels = [\n"+
		"    { url = \"https://files.pythonhosted.org/packages/00/00/%s\", hash = \"sha256:%x\", size = %d },\n]\n",
		file, sha256.Sum256(b), len(b)), nil
}

// cpuOf is the user and system time of a finished process.
func cpuOf(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
