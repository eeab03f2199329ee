package python

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readLock(t testing.TB, name string) *Lock {
	t.Helper()
	file := filepath.Join("testdata", "uvlocks", name, "uv.lock")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLock(data, file)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func onlyPackage(t *testing.T, l *Lock, name string) *LockPackage {
	t.Helper()
	pkgs := l.Lookup(name)
	if len(pkgs) != 1 {
		t.Fatalf("Lookup(%q) = %d packages, want 1", name, len(pkgs))
	}
	return pkgs[0]
}

func TestParseLockFullStackFastAPI(t *testing.T) {
	l := readLock(t, "full-stack-fastapi-template")
	if l.Version != 1 || l.Revision != 3 || l.RequiresPython != ">=3.14, <4.0" {
		t.Errorf("header = version %d revision %d requires-python %q", l.Version, l.Revision, l.RequiresPython)
	}
	if !reflect.DeepEqual(l.Members, []string{"app"}) {
		t.Errorf("Members = %v", l.Members)
	}
	if len(l.ResolutionMarkers) != 2 {
		t.Errorf("ResolutionMarkers = %v", l.ResolutionMarkers)
	}
	if len(l.Packages) != 81 {
		t.Errorf("%d packages, want 81", len(l.Packages))
	}
	for _, p := range l.Packages {
		if p.Name == "" || p.Source.Kind == "" || p.Line == 0 {
			t.Errorf("package %+v lacks a name, source or line", p)
		}
		for _, w := range p.Wheels {
			if !sha256HexRE().MatchString(w.SHA256) || w.Size <= 0 || !strings.HasSuffix(w.Filename, ".whl") || !strings.HasPrefix(w.URL, "https://files.pythonhosted.org/") {
				t.Errorf("%s: wheel %+v", p.Name, w)
			}
		}
	}

	app := onlyPackage(t, l, "app")
	if app.Source != (Source{Kind: "editable", Value: "backend"}) || app.Version != "0.1.0" || app.Line != 66 {
		t.Errorf("app = %+v", app)
	}
	if len(app.Dependencies) != 15 || len(app.RequiresDist) != 15 {
		t.Errorf("app has %d dependencies and %d requires-dist, want 15 and 15", len(app.Dependencies), len(app.RequiresDist))
	}
	var fastapiDep LockDep
	for _, d := range app.Dependencies {
		if d.Name == "fastapi" {
			fastapiDep = d
		}
	}
	if !reflect.DeepEqual(fastapiDep.Extras, []string{"standard"}) {
		t.Errorf("app -> fastapi extras = %v", fastapiDep.Extras)
	}
	if dev := app.Dev["dev"]; len(dev) != 5 || dev[0].Name != "coverage" {
		t.Errorf("app dev group = %+v", app.Dev)
	}

	fastapi := onlyPackage(t, l, "FastAPI")
	if len(fastapi.Optional["standard"]) != 9 {
		t.Errorf("fastapi[standard] = %+v", fastapi.Optional)
	}
	if fastapi.Sdist == nil || fastapi.Sdist.Size != 425799 ||
		fastapi.Sdist.SHA256 != "e8822fc40db1e1858054d7a949a888695bc9bdce70139178e33bd2871a453ca1" {
		t.Errorf("fastapi sdist = %+v", fastapi.Sdist)
	}
	if w := fastapi.Wheels; len(w) != 1 || w[0].Filename != "fastapi-0.141.1-py3-none-any.whl" || w[0].Size != 131954 ||
		w[0].Hash != "sha256:bfb91aa2d334c61cb35ba9a116fc123b3d3df31640b801cf57a7a78ec3f603b3" {
		t.Errorf("fastapi wheels = %+v", w)
	}

	pwdlib := onlyPackage(t, l, "pwdlib")
	if len(pwdlib.Optional) != 2 || pwdlib.Optional["argon2"][0].Name != "argon2-cffi" {
		t.Errorf("pwdlib extras = %+v", pwdlib.Optional)
	}
	sqlalchemy := onlyPackage(t, l, "sqlalchemy")
	if !strings.HasPrefix(sqlalchemy.Dependencies[0].Marker, "platform_machine == 'AMD64' or") {
		t.Errorf("sqlalchemy -> greenlet marker = %q", sqlalchemy.Dependencies[0].Marker)
	}
	dkimpy := onlyPackage(t, l, "dkimpy")
	if len(dkimpy.Wheels) != 0 || dkimpy.Sdist == nil {
		t.Errorf("dkimpy should be sdist-only: %+v", dkimpy)
	}
	if n := len(onlyPackage(t, l, "psycopg-binary").Wheels); n < 10 {
		t.Errorf("psycopg-binary has %d wheels", n)
	}
}

func TestParseLockWorkspace(t *testing.T) {
	l := readLock(t, "workspace")
	if !reflect.DeepEqual(l.Members, []string{"common", "my-api", "shop"}) {
		t.Errorf("Members = %v", l.Members)
	}
	sources := map[string]Source{
		"shop":        {Kind: "virtual", Value: "."},
		"my-api":      {Kind: "editable", Value: "packages/my-api"},
		"vendored":    {Kind: "directory", Value: "libs/vendored"},
		"local-wheel": {Kind: "path", Value: "wheels/local_wheel-1.0.0-py3-none-any.whl"},
		"gitpkg":      {Kind: "git", Value: "https://github.com/example/gitpkg?rev=v1.0.0#4f2c8a1d9e7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"},
		"urlpkg":      {Kind: "url", Value: "https://example.com/dl/urlpkg-1.0-py3-none-any.whl"},
		"six":         {Kind: "registry", Value: "https://pypi.org/simple"},
	}
	for name, want := range sources {
		if got := onlyPackage(t, l, name).Source; got != want {
			t.Errorf("%s source = %+v, want %+v", name, got, want)
		}
	}
	lw := onlyPackage(t, l, "local-wheel").Wheels
	if len(lw) != 1 || lw[0].Filename != "local_wheel-1.0.0-py3-none-any.whl" || lw[0].Path != "wheels/local_wheel-1.0.0-py3-none-any.whl" || lw[0].URL != "" || lw[0].SHA256 == "" {
		t.Errorf("local-wheel wheels = %+v", lw)
	}
	numpy := l.Lookup("numpy")
	if len(numpy) != 2 || numpy[0].Version != "1.26.4" || numpy[1].Version != "2.1.0" ||
		!reflect.DeepEqual(numpy[1].ResolutionMarkers, []string{"python_full_version >= '3.12'"}) {
		t.Errorf("numpy forks = %+v", numpy)
	}
	api := onlyPackage(t, l, "my_api")
	var forks []LockDep
	for _, d := range api.Dependencies {
		if d.Name == "numpy" {
			forks = append(forks, d)
		}
	}
	if len(forks) != 2 || forks[0].Version != "1.26.4" || forks[0].Source == nil || forks[0].Source.Kind != "registry" || forks[0].Marker != "python_full_version < '3.12'" {
		t.Errorf("my-api -> numpy = %+v", forks)
	}
	if len(api.Optional) != 6 || len(api.Dev["dev"]) != 2 {
		t.Errorf("my-api extras %d, dev %+v", len(api.Optional), api.Dev)
	}
	torch := l.Lookup("torchish")
	if len(torch) != 2 || torch[0].Wheels[0].Filename != "torchish-2.0.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl" {
		t.Errorf("torchish = %+v (the URL's %%2B must decode to +)", torch[0].Wheels)
	}
}

func TestParseLockShapes(t *testing.T) {
	const header = "version = 1\nrequires-python = \">=3.12\"\n\n"
	const hash = "sha256:37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"
	tests := []struct {
		name    string
		toml    string
		check   func(t *testing.T, l *Lock)
		wantErr string
	}{
		{
			name: "array of tables dependencies",
			toml: header + `[[package]]
name = "a"
version = "0.1.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "b"
version = "0.1.0"
source = { registry = "https://pypi.org/simple" }

[[package.dependencies]]
name = "a"
version = "0.1.0"
source = { registry = "https://pypi.org/simple" }
marker = "sys_platform == 'linux'"
extra = ["x"]
`,
			check: func(t *testing.T, l *Lock) {
				d := l.Packages[1].Dependencies
				if len(d) != 1 || d[0].Name != "a" || d[0].Version != "0.1.0" || d[0].Marker != "sys_platform == 'linux'" || d[0].Extras[0] != "x" || d[0].Source.Kind != "registry" {
					t.Errorf("dependencies = %+v", d)
				}
			},
		},
		{
			name: "url source with subdirectory",
			toml: header + `[[package]]
name = "anyio"
version = "4.3.0"
source = { url = "https://example.com/anyio.tar.gz", subdirectory = "wat/foo" }
sdist = { hash = "` + hash + `" }
`,
			check: func(t *testing.T, l *Lock) {
				p := l.Packages[0]
				if p.Source != (Source{Kind: "url", Value: "https://example.com/anyio.tar.gz", Subdirectory: "wat/foo"}) || p.Sdist == nil || p.Sdist.SHA256 == "" {
					t.Errorf("package = %+v", p)
				}
			},
		},
		{
			name: "wheel from a local directory index",
			toml: header + `[[package]]
name = "tqdm"
version = "1.0.0"
source = { registry = "../wheels" }
wheels = [{ path = "../wheels/tqdm-1.0.0-py3-none-any.whl", hash = "` + hash + `" }]
`,
			check: func(t *testing.T, l *Lock) {
				w := l.Packages[0].Wheels[0]
				if w.Path != "../wheels/tqdm-1.0.0-py3-none-any.whl" || w.Filename != "tqdm-1.0.0-py3-none-any.whl" {
					t.Errorf("wheel = %+v", w)
				}
			},
		},
		{
			name: "member with a dynamic version",
			toml: header + `[[package]]
name = "my-api"
source = { editable = "." }
`,
			check: func(t *testing.T, l *Lock) {
				if p := l.Packages[0]; p.Version != "" || p.Source.Kind != "editable" {
					t.Errorf("package = %+v", p)
				}
			},
		},
		{
			name: "wheel without hash (git-built)",
			toml: header + `[[package]]
name = "a"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://example.com/a-1.0-py3-none-any.whl" }]
`,
			check: func(t *testing.T, l *Lock) {
				if w := l.Packages[0].Wheels[0]; w.SHA256 != "" || w.Hash != "" {
					t.Errorf("wheel = %+v", w)
				}
			},
		},
		{
			name: "sha512 kept as written",
			toml: header + `[[package]]
name = "a"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://example.com/a-1.0-py3-none-any.whl", hash = "sha512:abcd" }]
`,
			check: func(t *testing.T, l *Lock) {
				if w := l.Packages[0].Wheels[0]; w.SHA256 != "" || w.Hash != "sha512:abcd" {
					t.Errorf("wheel = %+v", w)
				}
			},
		},
		{
			name: "unknown keys are ignored",
			toml: header + `[options]
exclude-newer = "2024-01-01T00:00:00Z"

[[package]]
name = "a"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
provides-extras = ["x"]
`,
			check: func(t *testing.T, l *Lock) {
				if len(l.Packages) != 1 {
					t.Errorf("packages = %+v", l.Packages)
				}
			},
		},
		{name: "empty lock", toml: header, check: func(t *testing.T, l *Lock) {
			if len(l.Packages) != 0 {
				t.Error("packages in an empty lock")
			}
		}},
		{name: "not TOML", toml: "version = 1\n[[package]\nname = 'a'\n", wantErr: "uv.lock:2:"},
		{name: "no version", toml: "requires-python = '>=3.12'\n", wantErr: "no `version` key"},
		{name: "version 2", toml: "version = 2\n", wantErr: "lock format version 2"},
		{name: "version of wrong type", toml: "version = 'one'\n", wantErr: "uv.lock:1:11: version holds a TOML string where uv writes an integer"},
		{name: "package field of wrong type", toml: header + "[[package]]\nname = \"a\"\nversion = 1\n", wantErr: "uv.lock:6:11: package.version holds a TOML integer where uv writes a string"},
		{name: "bad requires-python", toml: "version = 1\nrequires-python = 'py3'\n", wantErr: "requires-python"},
		{name: "package without name", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\n\n[[package]]\nversion = \"1\"\n", wantErr: "uv.lock:9: a package has no name"},
		{name: "bad name", toml: header + "[[package]]\nname = \"-a\"\nversion = \"1\"\nsource = { registry = \"r\" }\n", wantErr: "not a valid distribution name"},
		{name: "no source", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\n", wantErr: "package a has no source"},
		{name: "two sources", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\", git = \"g\" }\n", wantErr: "both registry and git"},
		{name: "empty source", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { }\n", wantErr: "source names none"},
		{name: "registry without version", toml: header + "[[package]]\nname = \"a\"\nsource = { registry = \"r\" }\n", wantErr: "has no version"},
		{name: "bad sha256", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\nwheels = [{ url = \"https://x/a-1-py3-none-any.whl\", hash = \"sha256:zz\" }]\n", wantErr: "64 hex digits"},
		{name: "hash without algorithm", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\nsdist = { url = \"https://x/a.tar.gz\", hash = \"abc\" }\n", wantErr: "want algorithm:hex"},
		{name: "wheel with no location", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\nwheels = [{ size = 3 }]\n", wantErr: "neither url, path nor filename"},
		{name: "dependency without name", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\ndependencies = [{ marker = \"os_name == 'nt'\" }]\n", wantErr: "dependencies: a dependency has no name"},
		{name: "bad dependency source", toml: header + "[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\n[package.optional-dependencies]\nx = [{ name = \"b\", source = {} }]\n", wantErr: "optional-dependencies: x: dependency b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLock([]byte(tt.toml), "uv.lock")
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseLock succeeded, want an error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "uv.lock") {
					t.Fatalf("ParseLock error = %v, want it to start with the file and contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLock: %v", err)
			}
			tt.check(t, l)
		})
	}
}

func FuzzParseLock(f *testing.F) {
	for _, name := range []string{"workspace", "full-stack-fastapi-template"} {
		data, err := os.ReadFile(filepath.Join("testdata", "uvlocks", name, "uv.lock"))
		if err != nil {
			f.Fatal(err)
		}
		if len(data) > 6000 {
			// Slices of the locks keep the fuzzer's inputs small enough
			// to mutate and minimise quickly.
			cut := strings.Index(string(data[6000:]), "\n[[package]]")
			data = data[:6000+cut]
		}
		f.Add(data)
	}
	f.Add([]byte("version = 1\n[[package]]\nname = \"a\"\nsource = { editable = \".\" }\n"))
	f.Add([]byte("version = 1\n[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { path = \"a-1-py3-none-any.whl\" }\nwheels = [{ filename = \"a-1-py3-none-any.whl\" }]\n"))
	f.Add([]byte("version = 1\n[[package]]\nname = \"b\"\nversion = \"1\"\nsource = { registry = \"r\" }\n[[package.dependencies]]\nname = \"a\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock(data, "uv.lock")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "uv.lock") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, p := range l.Packages {
			if p.Name == "" || p.Source.Kind == "" {
				t.Fatalf("package without name or source: %+v", p)
			}
			for _, w := range p.Wheels {
				if w.Filename == "" {
					t.Fatalf("%s: wheel without file name: %+v", p.Name, w)
				}
			}
		}
		// Whatever parsed must resolve or fail cleanly.
		for i, p := range l.Packages {
			if i == 8 {
				break
			}
			_, _ = l.Resolve(p.Name, nil, Platform{PythonVersion: "3.12", Arch: "x86_64"})
		}
	})
}
