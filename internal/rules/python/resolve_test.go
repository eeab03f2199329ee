package python

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// plan renders a resolution as "name version wheel-or-member" lines.
func plan(res []Resolved) map[string]string {
	out := map[string]string{}
	for _, r := range res {
		switch {
		case r.Member && r.Wheel == nil:
			out[r.Name] = r.Version + " member"
		case r.Wheel != nil && !r.Member:
			out[r.Name] = r.Version + " " + r.Wheel.Filename
		default:
			out[r.Name] = "inconsistent Member/Wheel"
		}
	}
	return out
}

func TestResolveWorkspace(t *testing.T) {
	l := readLock(t, "workspace")
	// Present in every resolution of my-api, whatever the platform.
	common := map[string]string{
		"annotated-types":   "0.7.0 annotated_types-0.7.0-py3-none-any.whl",
		"anyio":             "4.4.0 anyio-4.4.0-py3-none-any.whl",
		"click":             "8.1.7 click-8.1.7-py3-none-any.whl",
		"common":            "0.2.0 member",
		"fastapi":           "0.115.0 fastapi-0.115.0-py3-none-any.whl",
		"h11":               "0.14.0 h11-0.14.0-py3-none-any.whl",
		"idna":              "3.8 idna-3.8-py3-none-any.whl",
		"local-wheel":       "1.0.0 local_wheel-1.0.0-py3-none-any.whl",
		"my-api":            "0.1.0 member",
		"psycopg":           "3.2.1 psycopg-3.2.1-py3-none-any.whl",
		"pycparser":         "2.22 pycparser-2.22-py3-none-any.whl",
		"pydantic":          "2.9.0 pydantic-2.9.0-py3-none-any.whl",
		"python-dateutil":   "2.9.0.post0 python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
		"six":               "1.16.0 six-1.16.0-py2.py3-none-any.whl",
		"sniffio":           "1.3.1 sniffio-1.3.1-py3-none-any.whl",
		"starlette":         "0.38.2 starlette-0.38.2-py3-none-any.whl",
		"typing-extensions": "4.12.2 typing_extensions-4.12.2-py3-none-any.whl",
		"uvicorn":           "0.30.6 uvicorn-0.30.6-py3-none-any.whl",
		"vendored":          "0.0.1 member",
	}
	tests := []struct {
		name   string
		python string
		arch   string
		extras []string
		want   map[string]string // on top of common
	}{
		{"3.12 x86_64", "3.12", "x86_64", nil, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_28_x86_64.whl",
			"greenlet":       "3.1.0 greenlet-3.1.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"numpy":          "2.1.0 numpy-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		}},
		{"3.12 arm64", "3.12", "arm64", nil, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_28_aarch64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"numpy":          "2.1.0 numpy-2.1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
		}},
		{"3.11 x86_64: older numpy fork, tomli, glibc 2.26", "3.11", "x86_64", nil, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"greenlet":       "3.1.0 greenlet-3.1.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"numpy":          "1.26.4 numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"tomli":          "2.0.1 tomli-2.0.1-py3-none-any.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		}},
		{"3.11 arm64", "3.11", "arm64", nil, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp37-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"numpy":          "1.26.4 numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"tomli":          "2.0.1 tomli-2.0.1-py3-none-any.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
		}},
		{"extra cpu: conflict markers pull tinydep", "3.12", "x86_64", []string{"cpu"}, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_28_x86_64.whl",
			"greenlet":       "3.1.0 greenlet-3.1.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"numpy":          "2.1.0 numpy-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"torchish":       "2.0.0+cpu torchish-2.0.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl",
			"tinydep":        "1.0.0 tinydep-1.0.0-py3-none-any.whl",
		}},
		{"extra GPU (any spelling): the other fork, no tinydep", "3.12", "x86_64", []string{"GPU"}, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_28_x86_64.whl",
			"greenlet":       "3.1.0 greenlet-3.1.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"numpy":          "2.1.0 numpy-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"torchish":       "2.0.0+cu121 torchish-2.0.0+cu121-cp312-cp312-manylinux_2_28_x86_64.whl",
		}},
		{"extra url: a direct URL wheel", "3.12", "arm64", []string{"url"}, map[string]string{
			"cffi":           "1.17.1 cffi-1.17.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"cryptography":   "43.0.1 cryptography-43.0.1-cp39-abi3-manylinux_2_28_aarch64.whl",
			"httptools":      "0.6.1 httptools-0.6.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"numpy":          "2.1.0 numpy-2.1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"psycopg-binary": "3.2.1 psycopg_binary-3.2.1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"pydantic-core":  "2.23.4 pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"uvloop":         "0.20.0 uvloop-0.20.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"urlpkg":         "1.0 urlpkg-1.0-py3-none-any.whl",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.Resolve("My_API", tt.extras, Platform{PythonVersion: tt.python, Arch: tt.arch})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for k, v := range common {
				want[k] = v
			}
			for k, v := range tt.want {
				want[k] = v
			}
			got := plan(res)
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s = %q, want %q", name, got[name], w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("unexpected %s %s", name, got[name])
				}
			}
			if !sort.SliceIsSorted(res, func(i, j int) bool { return res[i].Name < res[j].Name }) {
				t.Error("result is not sorted by name")
			}
			for _, r := range res {
				if r.Name == "local-wheel" && (r.Wheel.Path != "wheels/local_wheel-1.0.0-py3-none-any.whl" || r.Source.Kind != "path") {
					t.Errorf("local-wheel = %+v, %+v", r, r.Wheel)
				}
				if r.Wheel != nil && r.Wheel.SHA256 == "" {
					t.Errorf("%s: wheel without sha256", r.Name)
				}
			}
		})
	}
}

func TestResolveVirtualRootHasNoDevDeps(t *testing.T) {
	l := readLock(t, "workspace")
	res, err := l.Resolve("shop", nil, Platform{PythonVersion: "3.12", Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan(res); !reflect.DeepEqual(got, map[string]string{"shop": "0.1.0 member"}) {
		t.Errorf("Resolve(shop) = %v; dev groups must not be followed", got)
	}
	if res[0].Source.Kind != "virtual" {
		t.Errorf("shop source = %+v", res[0].Source)
	}
}

func TestResolveErrors(t *testing.T) {
	l := readLock(t, "workspace")
	x86 := Platform{PythonVersion: "3.12", Arch: "x86_64"}
	tests := []struct {
		name    string
		root    string
		extras  []string
		p       Platform
		wantErr []string
	}{
		{"root not locked", "billing", nil, x86, []string{"testdata/uvlocks/workspace/uv.lock: no package \"billing\"", "run `uv lock`"}},
		{"unknown extra", "my-api", []string{"nope"}, x86, []string{"my-api has no extra \"nope\" (it has cpu, gitdep, gpu, newglibc, sdist-only, url)", "run `uv lock`"}},
		{"sdist only", "my-api", []string{"sdist-only"}, x86, []string{"sdist-only 0.1.0: only a source distribution", "sdist_only-0.1.0.tar.gz", "does not build sdists"}},
		{"git", "my-api", []string{"gitdep"}, x86, []string{"gitpkg 1.0.0 comes from git (https://github.com/example/gitpkg", "only wheels"}},
		{"manylinux too new", "my-api", []string{"newglibc"}, x86, []string{
			"new-glibc 1.0.0: no wheel for python3.12 on manylinux x86_64 (glibc 2.34)",
			"new_glibc-1.0.0-cp312-cp312-manylinux_2_39_x86_64.whl (needs glibc 2.39; Lambda python3.12 has 2.34)",
			"new_glibc-1.0.0-cp312-cp312-musllinux_1_2_x86_64.whl (musllinux: Lambda's Python uses glibc)",
		}},
		{"every problem at once", "my-api", []string{"sdist-only", "gitdep", "newglibc"}, x86, []string{"gitpkg", "new-glibc", "sdist-only"}},
		{"no cp311 wheel for the gpu fork", "my-api", []string{"gpu"}, Platform{PythonVersion: "3.11", Arch: "x86_64"}, []string{"torchish 2.0.0+cu121: no wheel for python3.11", "(needs glibc 2.28; Lambda python3.11 has 2.26; for CPython 3.12)"}},
		{"requires-python", "my-api", nil, Platform{PythonVersion: "3.10", Arch: "x86_64"}, []string{"requires-python >=3.11, which excludes python3.10"}},
		{"bad arch", "my-api", nil, Platform{PythonVersion: "3.12", Arch: "amd64"}, []string{"architecture \"amd64\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.Resolve(tt.root, tt.extras, tt.p)
			if err == nil {
				t.Fatalf("Resolve succeeded with %v", plan(res))
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	_, err := l.Resolve("my-api", []string{"newglibc"}, x86)
	var nw *NoWheelError
	if !errors.As(err, &nw) || nw.Package != "new-glibc" || len(nw.Wheels) != 2 {
		t.Errorf("errors.As(NoWheelError) = %+v", nw)
	}
}

func TestResolveFullStackFastAPI(t *testing.T) {
	l := readLock(t, "full-stack-fastapi-template")
	for _, tt := range []struct {
		arch string
		want map[string]string
	}{
		{"x86_64", map[string]string{
			"fastapi":       "0.141.1 fastapi-0.141.1-py3-none-any.whl",
			"pydantic-core": "2.46.4 pydantic_core-2.46.4-cp314-cp314-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
			"uvloop":        "0.22.1 uvloop-0.22.1-cp314-cp314-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
			"websockets":    "16.0 websockets-16.0-cp314-cp314-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl",
			"shellingham":   "1.5.4 shellingham-1.5.4-py2.py3-none-any.whl",
		}},
		{"arm64", map[string]string{
			"pydantic-core": "2.46.4 pydantic_core-2.46.4-cp314-cp314-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
			"httptools":     "0.8.0 httptools-0.8.0-cp314-cp314-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl",
		}},
	} {
		res, err := l.Resolve("fastapi", []string{"standard"}, Platform{PythonVersion: "3.14", Arch: tt.arch})
		if err != nil {
			t.Fatalf("%s: %v", tt.arch, err)
		}
		got := plan(res)
		if len(got) != 43 {
			t.Errorf("%s: %d packages, want 43", tt.arch, len(got))
		}
		for name, w := range tt.want {
			if got[name] != w {
				t.Errorf("%s: %s = %q, want %q", tt.arch, name, got[name], w)
			}
		}
		for _, absent := range []string{"colorama", "tzdata", "pytest", "app"} {
			if _, ok := got[absent]; ok {
				t.Errorf("%s: %s should not be bundled", tt.arch, absent)
			}
		}
	}
	// The app itself needs emails, which needs dkimpy: an sdist only.
	_, err := l.Resolve("app", nil, Platform{PythonVersion: "3.14", Arch: "x86_64"})
	if err == nil || !strings.Contains(err.Error(), "dkimpy 1.1.8: only a source distribution") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("Resolve(app) = %v, want only the dkimpy sdist error", err)
	}
	_, err = l.Resolve("app", nil, Platform{PythonVersion: "3.12", Arch: "x86_64"})
	if err == nil || !strings.Contains(err.Error(), "requires-python >=3.14, <4.0, which excludes python3.12") {
		t.Errorf("Resolve(app, 3.12) = %v", err)
	}
}

func TestResolveForkShapes(t *testing.T) {
	const hash = "37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"
	pkg := func(name, version, extra string) string {
		return "[[package]]\nname = \"" + name + "\"\nversion = \"" + version + "\"\nsource = { registry = \"https://pypi.org/simple\" }\n" + extra +
			"wheels = [{ url = \"https://x/" + name + "-" + version + "-py3-none-any.whl\", hash = \"sha256:" + hash + "\" }]\n\n"
	}
	root := func(deps string) string {
		return "version = 1\nrequires-python = \">=3.9\"\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\ndependencies = [" + deps + "]\n\n"
	}
	tests := []struct {
		name    string
		lock    string
		p       Platform
		want    string // version of lib chosen
		wantErr string
	}{
		{
			name: "edge version and marker (x86_64)",
			lock: root(`{ name = "lib", version = "1.0", marker = "platform_machine == 'x86_64'" }, { name = "lib", version = "2.0", marker = "platform_machine == 'aarch64'" }`) +
				pkg("lib", "1.0", "") + pkg("lib", "2.0", ""),
			p: Platform{PythonVersion: "3.12", Arch: "x86_64"}, want: "1.0",
		},
		{
			name: "edge version and marker (arm64)",
			lock: root(`{ name = "lib", version = "1.0", marker = "platform_machine == 'x86_64'" }, { name = "lib", version = "2.0", marker = "platform_machine == 'aarch64'" }`) +
				pkg("lib", "1.0", "") + pkg("lib", "2.0", ""),
			p: Platform{PythonVersion: "3.12", Arch: "arm64"}, want: "2.0",
		},
		{
			name: "versions compared as PEP 440",
			lock: root(`{ name = "lib", version = "2.0.0" }`) + pkg("lib", "1.0", "") + pkg("lib", "2.0", ""),
			p:    Platform{PythonVersion: "3.12", Arch: "x86_64"}, want: "2.0",
		},
		{
			name: "edge without version: resolution markers",
			lock: root(`{ name = "lib" }`) +
				pkg("lib", "1.0", "resolution-markers = [\"python_full_version < '3.12'\"]\n") +
				pkg("lib", "2.0", "resolution-markers = [\"python_full_version >= '3.12' and python_full_version < '3.13'\", \"python_full_version >= '3.13'\"]\n"),
			p: Platform{PythonVersion: "3.13", Arch: "x86_64"}, want: "2.0",
		},
		{
			name: "patch-level fork follows the full version",
			lock: root(`{ name = "lib" }`) +
				pkg("lib", "1.0", "resolution-markers = [\"python_full_version < '3.12.4'\"]\n") +
				pkg("lib", "2.0", "resolution-markers = [\"python_full_version >= '3.12.4'\"]\n"),
			p: Platform{PythonVersion: "3.12.8", Arch: "x86_64"}, want: "2.0",
		},
		{
			name: "patch-level fork, minor version only: X.Y.0",
			lock: root(`{ name = "lib" }`) +
				pkg("lib", "1.0", "resolution-markers = [\"python_full_version < '3.12.4'\"]\n") +
				pkg("lib", "2.0", "resolution-markers = [\"python_full_version >= '3.12.4'\"]\n"),
			p: Platform{PythonVersion: "3.12", Arch: "x86_64"}, want: "1.0",
		},
		{
			name: "edge source narrows",
			lock: root(`{ name = "lib", source = { registry = "https://mirror.example/simple" } }`) + pkg("lib", "1.0", "") +
				strings.Replace(pkg("lib", "1.5", ""), "https://pypi.org/simple", "https://mirror.example/simple", 1),
			p: Platform{PythonVersion: "3.12", Arch: "x86_64"}, want: "1.5",
		},
		{
			name:    "ambiguous",
			lock:    root(`{ name = "lib" }`) + pkg("lib", "1.0", "") + pkg("lib", "2.0", ""),
			p:       Platform{PythonVersion: "3.12", Arch: "x86_64"},
			wantErr: "lib (required by app 0.1.0) is locked at 1.0, 2.0 and the lock does not say which applies to python3.12",
		},
		{
			name:    "both forks apply",
			lock:    root(`{ name = "lib", version = "1.0" }, { name = "mid" }`) + pkg("lib", "1.0", "") + pkg("lib", "2.0", "") + pkg("mid", "1.0", "dependencies = [{ name = \"lib\", version = \"2.0\" }]\n"),
			p:       Platform{PythonVersion: "3.12", Arch: "x86_64"},
			wantErr: "lib is locked at 1.0 and at 2.0, and both apply",
		},
		{
			name:    "dangling edge",
			lock:    root(`{ name = "ghost" }`),
			p:       Platform{PythonVersion: "3.12", Arch: "x86_64"},
			wantErr: "app 0.1.0 depends on ghost, which the lock does not contain; run `uv lock`",
		},
		{
			name:    "dangling version",
			lock:    root(`{ name = "lib", version = "3.0" }`) + pkg("lib", "1.0", ""),
			p:       Platform{PythonVersion: "3.12", Arch: "x86_64"},
			wantErr: "depends on lib 3.0, which the lock does not contain",
		},
		{
			name:    "bad marker",
			lock:    root(`{ name = "lib", marker = "python_version >>> '3'" }`) + pkg("lib", "1.0", ""),
			p:       Platform{PythonVersion: "3.12", Arch: "x86_64"},
			wantErr: "app 0.1.0: dependency lib: marker",
		},
		{
			name: "dependency cycle terminates",
			lock: root(`{ name = "lib" }`) + pkg("lib", "1.0", "dependencies = [{ name = \"app\" }]\n"),
			p:    Platform{PythonVersion: "3.12", Arch: "x86_64"}, want: "1.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLock([]byte(tt.lock), "uv.lock")
			if err != nil {
				t.Fatal(err)
			}
			res, err := l.Resolve("app", nil, tt.p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "uv.lock: ") {
					t.Fatalf("Resolve error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := plan(res)["lib"]
			if !strings.HasPrefix(got, tt.want+" ") {
				t.Errorf("lib = %q, want version %s", got, tt.want)
			}
		})
	}
}

func TestCheckDeclared(t *testing.T) {
	l := readLock(t, "full-stack-fastapi-template")
	pyproject := []string{
		"fastapi[standard]>=0.141.1,<1.0.0", "python-multipart<1.0.0,>=0.0.27", "email-validator<3.0.0.0,>=2.1.0.post1",
		"tenacity<10.0.0,>=8.2.3", "pydantic>2.0", "emails>=1.1.2,<2.0", "jinja2<4.0.0,>=3.1.4", "alembic<2.0.0,>=1.12.1",
		"httpx<1.0.0,>=0.25.1", "psycopg[binary]>=3.3.4,<4.0.0", "sqlmodel>=0.0.39,<1.0.0", "pydantic-settings<3.0.0,>=2.2.1",
		"sentry-sdk[fastapi]>=2.66.1,<3.0.0", "pyjwt<3.0.0,>=2.13.0", "pwdlib[argon2,bcrypt]>=0.3.0",
	}
	if err := l.CheckDeclared("app", pyproject); err != nil {
		t.Errorf("CheckDeclared(the real pyproject) = %v", err)
	}
	tests := []struct {
		name    string
		root    string
		reqs    []string
		wantErr []string
	}{
		{"new dependency", "app", append([]string{"boto3>=1.34"}, pyproject...), []string{"out of date with app's pyproject.toml", "boto3 is not in it", "run `uv lock`"}},
		{"transitive is not declared", "app", []string{"starlette"}, []string{"starlette is not in it"}},
		{"raised floor", "app", []string{"fastapi>=0.200"}, []string{"fastapi>=0.200 is required but 0.141.1 is locked"}},
		{"two problems", "app", []string{"Flask; python_version >= '3.9'", "pydantic<2"}, []string{"Flask is not in it; pydantic<2 is required but 2.13.4 is locked"}},
		{"missing root", "billing", nil, []string{"no package \"billing\"", "run `uv lock`"}},
		{"bad requirement", "app", []string{"fastapi >= "}, []string{"pyproject dependency", "fastapi >= "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.CheckDeclared(tt.root, tt.reqs)
			if err == nil {
				t.Fatal("CheckDeclared succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
	// Without requires-dist (older locks) the resolved edges count, with
	// names in any spelling and URL requirements accepted.
	ws := readLock(t, "workspace")
	if err := ws.CheckDeclared("common", []string{"Pydantic>=2", "python_dateutil", "tomli ; python_version < '3.12'", "pydantic @ https://example.com/p.whl"}); err != nil {
		t.Errorf("CheckDeclared(common) = %v", err)
	}
	if err := ws.CheckDeclared("my-api", []string{"torchish==2.0.0; extra == 'cpu'", "numpy>=2"}); err != nil {
		t.Errorf("CheckDeclared(my-api): a fork satisfying the range is enough: %v", err)
	}
}
