package buildfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/engine"
)

// A BUILD file that loops for ever stops with an error naming the file.
func TestRunawayBuildFile(t *testing.T) {
	root := workspace(t, map[string]string{
		"p/BUILD.star": "n = [0]\nfor i in range(1000000000):\n    n[0] += i\n",
	})
	start := time.Now()
	_, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "p")
	if err == nil || !strings.Contains(err.Error(), "p/BUILD.star:2") || !strings.Contains(err.Error(), "does not end") {
		t.Fatalf("err = %v; want an error at p/BUILD.star:2 saying the loop does not end", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("stopping took %v", d)
	}
}

// FuzzEvalBuildFile: any BUILD.star evaluates to a package or an error
// positioned in a file of the workspace, without a panic.
func FuzzEvalBuildFile(f *testing.F) {
	f.Add("fake_rule(name = \"a\", files = [\"x\"], count = 3)\n")
	f.Add("load(\"//:defs.star\", \"m\")\nm(\"b\")\n")
	f.Add("x = [i for i in range(10)]\nfake_rule(name = \"c\" + str(len(x)), mode = \"fast\")\n")
	f.Add("fake_rule(name = \"d\", srcs = glob([\"**/*\"]), dep = \":a\")\n")
	f.Add("def f(n):\n    return f(n)\nf(1)\n")
	f.Add("s = \"x\" * 100000000\n")
	f.Fuzz(func(t *testing.T, src string) {
		root := t.TempDir()
		files := map[string]string{
			engine.WorkspaceFile: "workspace(name = \"fuzz\")\n",
			"defs.star":          "def m(name):\n    fake_rule(name = name)\n",
			"BUILD.star":         "",
			"p/BUILD.star":       src,
			"p/data.txt":         "x",
		}
		for rel, content := range files {
			path := filepath.Join(root, filepath.FromSlash(rel))
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		pkg, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "p")
		if err != nil {
			var be *engine.BuildFileError
			if errors.As(err, &be) && be.Pos.File != "" && !strings.HasSuffix(be.Pos.File, ".star") {
				t.Fatalf("error positioned outside a .star file: %v", err)
			}
			return
		}
		for _, name := range pkg.Order {
			if pkg.Targets[name] == nil {
				t.Fatalf("target %q listed but missing", name)
			}
		}
	})
}

// A .star file that is a symbolic link to outside the workspace is not
// evaluated.
func TestStarFileOutsideRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "defs.star")
	if err := os.WriteFile(outside, []byte("def m(name):\n    fake_rule(name = name)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := workspace(t, map[string]string{
		"p/BUILD.star": "load(\"//:defs.star\", \"m\")\nm(\"a\")\n",
	})
	if err := os.Symlink(outside, filepath.Join(root, "defs.star")); err != nil {
		t.Fatal(err)
	}
	_, err := NewEvaluator(root, testRegistry()).LoadPackage(context.Background(), "p")
	if err == nil || !strings.Contains(err.Error(), "outside the workspace") {
		t.Errorf("err = %v, want a refusal naming the link", err)
	}
}
