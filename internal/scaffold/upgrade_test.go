package scaffold

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/rules/apimeta"
	"github.com/pipebuild/pipe/internal/testenv"
)

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromFirstRelease: testdata/v1-workspace is what the first
// release of `pipe new fastapi` wrote for my-api (defaults) and other-api
// (http, cognito, shared). Generating again with this release brings
// every file nobody edited up to date, keeps none as edited, and the
// result (my-api updated, other-api as it was, a function-url service
// added) type-checks.
func TestUpgradeFromFirstRelease(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "testdata/v1-workspace", root)
	for _, o := range []FastAPIOptions{{Name: "my-api"}, {Name: "new-api", ComputeType: FunctionURL}} {
		res, err := FastAPI(root, o)
		if err != nil {
			t.Fatalf("%s: %v", o.Name, err)
		}
		for _, f := range res.Files {
			if f.Status == Kept {
				t.Errorf("%s: %s kept as edited; it is the first release's, unedited", o.Name, f.Path)
			}
		}
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if b := read(ConstructsDir + "/BUILD.star"); strings.Count(b, "    runtime = \"//packages/") != 3 {
		t.Errorf("constructs BUILD.star does not give all three services a runtime:\n%s", b)
	}
	if api := read(ConstructsDir + "/src/app/apis/my-api.ts"); !strings.Contains(api, "runtime.gen") {
		t.Errorf("my-api's construct was not brought up to date:\n%s", api)
	}
	if b := read("packages/my-api/BUILD.star"); !strings.Contains(b, "    port = 8000,\n") {
		t.Errorf("my-api keeps the default port 8000 it served on:\n%s", b)
	}
	if b := read("packages/new-api/BUILD.star"); !strings.Contains(b, "    port = 8001,\n") {
		t.Errorf("new-api takes 8001 (my-api and other-api both had the default 8000):\n%s", b)
	}

	nm := testenv.CDKNodeModules(t)
	for _, name := range []string{"my-api", "other-api", "new-api"} {
		meta, err := apimeta.Generate([]byte(synthSpec), "openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		gen := filepath.Join(root, ConstructsDir, "src", "generated", name)
		writeTestFile(t, filepath.Join(gen, "metadata.gen.ts"), string(meta))
		writeTestFile(t, filepath.Join(gen, "runtime.gen.ts"), string(apimeta.GenerateRuntime(apimeta.Runtime{PythonVersion: "3.12", Architecture: "x86_64"}, "//packages/"+name+":bundle")))
	}
	if err := os.Symlink(nm, filepath.Join(root, "node_modules")); err != nil {
		t.Fatal(err)
	}
	tsc := exec.Command("node", filepath.Join(nm, "typescript", "bin", "tsc"), "--noEmit", "-p", InfraDir)
	tsc.Dir = root
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Fatalf("tsc --noEmit -p %s: %v\n%s", InfraDir, err, out)
	}
}
