package testenv

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestSkipSummaryReachesTerminal runs plain `go test` on a package with a
// test that needs a component no machine has, as a developer would on a
// terminal: go test hides a passing package's output, yet the terminal
// shows the summary of what was skipped, and again on a second run (which
// go test would otherwise answer from its cache, silently).
func TestSkipSummaryReachesTerminal(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		// The demo must skip, as it does on a developer's machine.
		if !strings.HasPrefix(kv, "PIPE_REQUIRE_ALL=") {
			env = append(env, kv)
		}
	}
	for run := 1; run <= 2; run++ {
		pty := OpenPty(t, 200, 40)
		cmd := exec.Command(goBin, "test", "./testdata/skipdemo")
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := pty.Start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("go test: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		term, err := pty.Output(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stdout.String(), "ok ") || strings.Contains(stdout.String(), "(cached)") || strings.Contains(stdout.String(), "unicorn") {
			t.Errorf("run %d: go test printed:\n%s\nwant only an ok line, not cached", run, stdout.String())
		}
		want := "pipe tests: ./internal/testenv/testdata/skipdemo skipped 1 test: components are missing (CI installs them with .ci/run and fails instead, PIPE_REQUIRE_ALL=1)\n" +
			"  a unicorn (apt-get install unicorn): TestNeedsUnicorn\n"
		if term != want {
			t.Errorf("run %d: the terminal showed:\n%q\nwant:\n%q", run, term, want)
		}
	}
}

// TestPackagesThatSkipReport: every package whose tests use testenv (and
// so may call Need) runs testenv.Main from its TestMain (directly or
// through a helper), or its skips would go unreported.
func TestPackagesThatSkipReport(t *testing.T) {
	t.Parallel()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	const importPath = `"github.com/pipebuild/pipe/internal/testenv"`
	uses := map[string]bool{}    // package directory → its tests import testenv
	reports := map[string]bool{} // → a function of its tests calls testenv.Main
	hasTestMain := map[string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return fs.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(p))
		self := f.Name.Name == "testenv" || f.Name.Name == "testenv_test"
		for _, imp := range f.Imports {
			if imp.Path.Value == importPath {
				uses[dir] = true
			}
		}
		if self {
			uses[dir] = true
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Body == nil {
				continue
			}
			if fn.Name.Name == "TestMain" {
				hasTestMain[dir] = true
			}
			// TestMain may call it through a helper (testMain) that
			// sets servers up.
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch f := call.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := f.X.(*ast.Ident); ok && x.Name == "testenv" && f.Sel.Name == "Main" {
						reports[dir] = true
					}
				case *ast.Ident:
					if self && f.Name == "Main" {
						reports[dir] = true
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) < 3 {
		t.Fatalf("found %d packages using testenv; the walk is wrong", len(uses))
	}
	for dir := range uses {
		if !reports[dir] || !hasTestMain[dir] {
			t.Errorf("%s: its tests use testenv but no TestMain runs testenv.Main: their skips would not be summed up (add func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) })", dir)
		}
	}
}
