package scaffold

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readBuild(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "packages", name, "BUILD.star"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Each service gets its own :serve port, the lowest free one from 8000,
// and keeps it when generated again or when others are added.
func TestServePorts(t *testing.T) {
	root := t.TempDir()
	for i, name := range []string{"b-api", "a-api", "c-api"} {
		res, err := FastAPI(root, FastAPIOptions{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		want := 8000 + i
		if res.Port != want {
			t.Errorf("%s: port %d, want %d (in the order services are generated)", name, res.Port, want)
		}
		if b := readBuild(t, root, name); !strings.Contains(b, fmt.Sprintf("    port = %d,\n", want)) {
			t.Errorf("%s's BUILD.star does not set port = %d:\n%s", name, want, b)
		}
	}
	// Again, with other options: the same port.
	res, err := FastAPI(root, FastAPIOptions{Name: "a-api", ComputeType: "http"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Port != 8001 {
		t.Errorf("a-api generated again: port %d, want its own 8001", res.Port)
	}
	// A port the user set is taken, whatever the number, and kept.
	b := readBuild(t, root, "b-api")
	if err := os.WriteFile(filepath.Join(root, "packages", "b-api", "BUILD.star"), []byte(strings.Replace(b, "port = 8000", "port = 9000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err = FastAPI(root, FastAPIOptions{Name: "d-api"}); err != nil {
		t.Fatal(err)
	}
	if res.Port != 8000 {
		t.Errorf("d-api: port %d, want 8000, freed when b-api moved to 9000", res.Port)
	}
	if res, err = FastAPI(root, FastAPIOptions{Name: "b-api"}); err != nil || res.Port != 9000 {
		t.Errorf("b-api generated again: port %d (%v), want the 9000 its BUILD.star sets", res.Port, err)
	}
}

func TestProjectPorts(t *testing.T) {
	build := []byte(`load("//tools:defs.star", "x")

fastapi_project(
    name = "a",
    port = 8003,
)

fastapi_project(name = "b")

fastapi_project(
    name = "c",
    python_version = "3.12",
)

py_test(name = "t", port = 1)
`)
	got := projectPorts(build)
	if len(got) != 3 || got[0] != 8003 || got[1] != 8000 || got[2] != 8000 {
		t.Errorf("projectPorts = %v, want [8003 8000 8000]", got)
	}
}

// The generated pyproject.toml pins every dependency: the lock's versions
// when the workspace has one, the defaults otherwise.
func TestPyprojectPins(t *testing.T) {
	root := t.TempDir()
	if _, err := FastAPI(root, FastAPIOptions{Name: "my-api"}); err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	py := read("packages/my-api/pyproject.toml")
	for _, want := range []string{
		`"aws-lambda-powertools[tracer]==` + defaultPins.Powertools + `"`,
		`"fastapi==` + defaultPins.FastAPI + `"`,
		`"uvicorn==` + defaultPins.Uvicorn + `"`,
		`"fastapi[standard]==` + defaultPins.FastAPI + `"`,
		`"pytest==` + defaultPins.Pytest + `"`,
		`"ruff==` + defaultPins.Ruff + `"`,
	} {
		if !strings.Contains(py, want) {
			t.Errorf("pyproject.toml lacks %s:\n%s", want, py)
		}
	}
	if got := read("packages/my-api/.python-version"); got != PythonVersion+"\n" {
		t.Errorf(".python-version = %q, want %q", got, PythonVersion+"\n")
	}

	lock := "version = 1\nrevision = 3\nrequires-python = \">=3.12\"\n\n" +
		"[[package]]\nname = \"fastapi\"\nversion = \"0.115.6\"\nsource = { registry = \"https://pypi.org/simple\" }\n\n" +
		"[[package]]\nname = \"ruff\"\nversion = \"0.9.1\"\nsource = { registry = \"https://pypi.org/simple\" }\n\n" +
		"[[package]]\nname = \"my-api\"\nversion = \"0.1.0\"\nsource = { virtual = \"packages/my-api\" }\n"
	if err := os.WriteFile(filepath.Join(root, "uv.lock"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FastAPI(root, FastAPIOptions{Name: "other-api"}); err != nil {
		t.Fatal(err)
	}
	py = read("packages/other-api/pyproject.toml")
	for _, want := range []string{`"fastapi==0.115.6"`, `"fastapi[standard]==0.115.6"`, `"ruff==0.9.1"`, `"uvicorn==` + defaultPins.Uvicorn + `"`} {
		if !strings.Contains(py, want) {
			t.Errorf("with a lock, pyproject.toml lacks %s:\n%s", want, py)
		}
	}

	if err := os.WriteFile(filepath.Join(root, "uv.lock"), []byte("[[package]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := FastAPI(root, FastAPIOptions{Name: "third-api"})
	if err == nil || !strings.Contains(err.Error(), "uv.lock: line 1") {
		t.Errorf("a broken uv.lock: %v, want an error naming uv.lock and the line", err)
	}
}

func TestFunctionURLOptions(t *testing.T) {
	root := t.TempDir()
	res, err := FastAPI(root, FastAPIOptions{Name: "s-api", ComputeType: FunctionURL})
	if err != nil {
		t.Fatal(err)
	}
	if res.Options.IntegrationPattern != "shared" || res.Options.Auth != "iam" {
		t.Errorf("function-url defaults: %+v, want shared and iam", res.Options)
	}
	for _, bad := range []struct {
		opts FastAPIOptions
		want string
	}{
		{FastAPIOptions{Name: "x-api", ComputeType: FunctionURL, Auth: "cognito"}, "for Cognito use --compute-type rest or http"},
		{FastAPIOptions{Name: "x-api", ComputeType: FunctionURL, IntegrationPattern: "isolated"}, "use --integration-pattern shared"},
		{FastAPIOptions{Name: "x-api", ComputeType: FunctionURL, IaC: IaCTerraform}, "has no Terraform modules yet: use --iac cdk"},
	} {
		_, err := FastAPI(root, bad.opts)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want an error saying %q", bad.opts, err, bad.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "packages", "x-api")); err == nil {
		t.Errorf("a refused combination wrote the service")
	}
}

// FuzzProjectPorts: any BUILD file gives one port per fastapi_project
// call at the start of a line, each a number pipe could have written or
// the default, and reading never panics.
func FuzzProjectPorts(f *testing.F) {
	f.Add([]byte("fastapi_project(\n    name = \"a\",\n    port = 8003,\n)\n"))
	f.Add([]byte("fastapi_project(name = \"b\")\nfastapi_project(\n    port = 99999999999999999999,\n)\n"))
	f.Add([]byte("x = 1\n  fastapi_project(port = 1)\n"))
	f.Fuzz(func(t *testing.T, build []byte) {
		ports := projectPorts(build)
		if want := projectCallRE().FindAllIndex(build, -1); len(ports) != len(want) {
			t.Fatalf("%d ports for %d calls", len(ports), len(want))
		}
		for _, p := range ports {
			if p < 0 {
				t.Fatalf("negative port %d", p)
			}
		}
	})
}

// FuzzReadPins: any uv.lock gives pins or an error naming uv.lock.
func FuzzReadPins(f *testing.F) {
	f.Add([]byte("version = 1\n\n[[package]]\nname = \"fastapi\"\nversion = \"0.115.6\"\n"))
	f.Add([]byte("[[package]\n"))
	f.Add([]byte("package = 3\n"))
	f.Add([]byte("[[package]]\nname = \"ruff\"\nversion = \"1\\\"\\n[evil]\"\n"))
	f.Fuzz(func(t *testing.T, lock []byte) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "uv.lock"), lock, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := readPins(root)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "uv.lock: ") {
				t.Fatalf("error does not name uv.lock: %v", err)
			}
			return
		}
		for _, v := range []string{p.FastAPI, p.Uvicorn, p.Powertools, p.Pytest, p.Ruff} {
			if !versionRE().MatchString(v) {
				t.Fatalf("pin %q is not a version: %+v", v, p)
			}
		}
	})
}
