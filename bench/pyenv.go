package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// pyenv times the locked host environment: an openapi_schema target whose
// lock holds 30 MB of wheels (the bundle benchmark's), built cold (empty
// cache: wheels copied from a file:// index into the CAS and unpacked),
// warm (wheels in the CAS, the environment tree removed) and hot (the tree
// present: only Python runs), against pip install --target of the same
// wheels with the same interpreter, compiling (its default) and not.
func pyenv(args []string) error {
	fs := flag.NewFlagSet("pyenv", flag.ExitOnError)
	pipe := fs.String("pipe", "pipe", "pipe binary")
	mb := fs.Int("mb", 30, "megabytes of dependencies")
	python := fs.String("python", "3.12", "python_version of the target (an interpreter of it must be installed)")
	runs := fs.Int("runs", 5, "runs of each measurement (the median is printed)")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	ws := filepath.Join(dir, "ws")
	wheels := filepath.Join(dir, "wheels")
	cache := filepath.Join(dir, "cache")
	for _, d := range []string{ws, wheels} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lock, names, whls, err := lockedDeps(wheels, *mb)
	if err != nil {
		return err
	}
	files := map[string]string{
		"WORKSPACE.star":      "workspace(name = \"pyenv-bench\")\n",
		"uv.lock":             lock,
		"app/pyproject.toml":  "[project]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [" + quoteJoin(names) + "]\n",
		"app/app/__init__.py": "",
		"app/BUILD.star": "openapi_schema(\n    name = \"openapi\",\n    srcs = glob([\"app/**/*.py\"]),\n    app = \"app.main:app\",\n" +
			fmt.Sprintf("    python_version = %q,\n)\n", *python),
	}
	if err := writeFiles(ws, files); err != nil {
		return err
	}
	edit := 0
	// The app imports one module of every dependency, as an app does.
	writeApp := func() {
		edit++
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "import %s.mod00\n", n)
		}
		fmt.Fprintf(&b, "\n\nclass App:\n    def openapi(self):\n        return {\"openapi\": \"3.1.0\", \"edit\": %d}\n\n\napp = App()\n", edit)
		os.WriteFile(filepath.Join(ws, "app/app/main.py"), []byte(b.String()), 0o644)
	}
	env := append(os.Environ(), "PIPE_CACHE_DIR="+cache, "PIPE_PYTHON_INDEX=file://"+wheels)
	build := func() (time.Duration, error) {
		writeApp()
		cmd := exec.Command(*pipe, "-C", ws, "build", "//app:openapi", "--color=never")
		cmd.Env = env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("pipe build: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "1 executed") {
			return 0, fmt.Errorf("the openapi action did not run:\n%s", out)
		}
		return time.Since(start), nil
	}
	median := func(what string, prepare func(), n int) (time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < n; i++ {
			prepare()
			d, err := build()
			if err != nil {
				return 0, err
			}
			ds = append(ds, d)
		}
		m := medianOf(ds)
		fmt.Printf("%-62s median %7.0f ms (min %.0f, max %.0f, %d runs)\n", what, ms(m), ms(minOf(ds)), ms(maxOf(ds)), n)
		return m, nil
	}
	cold, err := median("cold: wheels into the CAS, unpacked; python runs", func() { os.RemoveAll(cache) }, *runs)
	if err != nil {
		return err
	}
	warm, err := median("warm: wheels in the CAS, environment made again; python runs", func() { removeTrees(filepath.Join(cache, "trees", "pyenv")) }, *runs)
	if err != nil {
		return err
	}
	hot, err := median("hot: the environment is there; python runs", func() {}, *runs)
	if err != nil {
		return err
	}
	fmt.Printf("environment creation alone (minus the hot run): cold %.0f ms, warm %.0f ms\n", ms(cold-hot), ms(warm-hot))

	// pip install --target of the same wheels with the same interpreter.
	interp, err := exec.LookPath(filepath.Join(os.Getenv("HOME"), ".pyenv", "versions", pyenvVersion(*python), "bin", "python"+*python))
	if err != nil {
		fmt.Printf("pip install --target: not measured (no pyenv Python %s)\n", *python)
		return nil
	}
	for _, compile := range []bool{true, false} {
		var ds []time.Duration
		for i := 0; i < *runs; i++ {
			target := filepath.Join(dir, "pip-target")
			os.RemoveAll(target)
			pipArgs := []string{"-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", target, "--disable-pip-version-check"}
			if !compile {
				pipArgs = append(pipArgs, "--no-compile")
			}
			start := time.Now()
			if out, err := exec.Command(interp, append(pipArgs, whls...)...).CombinedOutput(); err != nil {
				fmt.Printf("pip install --target: not measured (%v: %s)\n", err, strings.TrimSpace(string(out)))
				return nil
			}
			ds = append(ds, time.Since(start))
		}
		what := "pip install --target (compiling, its default)"
		if !compile {
			what = "pip install --target --no-compile"
		}
		fmt.Printf("%-62s median %7.0f ms (min %.0f, max %.0f)\n", what, ms(medianOf(ds)), ms(minOf(ds)), ms(maxOf(ds)))
	}
	fmt.Println("uv: not measured (uv is not installable on this machine: no PyPI, no network)")
	return nil
}

// pyenvVersion is the newest pyenv installation of minor ("3.12" → "3.12.1").
func pyenvVersion(minor string) string {
	ents, _ := os.ReadDir(filepath.Join(os.Getenv("HOME"), ".pyenv", "versions"))
	best := ""
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), minor+".") && e.Name() > best {
			best = e.Name()
		}
	}
	return best
}

// removeTrees removes the environment trees, whose directories are
// read-only.
func removeTrees(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func minOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxOf(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
