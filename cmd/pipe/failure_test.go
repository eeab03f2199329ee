package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// failingGenrule has a multi-line command that reads its source and fails.
var failingGenrule = map[string]string{
	"a/in.txt": "input\n",
	"a/BUILD.star": `genrule(
    name = "g",
    srcs = ["in.txt"],
    outs = ["o.txt"],
    cmd = """echo starting
cat $(SRCS) >&2
exit 4""",
)
`,
}

// TestFailedGenruleShowsCommand: a failing genrule shows the first line of
// its expanded command (all of it with --verbose) and what it printed, and
// says how to keep its scratch directory.
func TestFailedGenruleShowsCommand(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, failingGenrule)
	b := ws.build(t)
	want := "FAIL //a:g (Genrule): command exited with status 4\n" +
		"  $ echo starting\n" +
		"    … 2 more lines (--verbose prints the whole command)\n" +
		"  starting\n  input\n" +
		"  (--sandbox-debug keeps the scratch directory and shows how to run the command there by hand)\n" +
		"failed: //a:g\n"
	if b.code != 1 || !strings.Contains(b.stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to contain:\n%s", b.code, b.stderr, want)
	}

	b = ws.build(t, "--verbose")
	want = "FAIL //a:g (Genrule): command exited with status 4\n" +
		"  $ echo starting\n    cat a/in.txt >&2\n    exit 4\n" +
		"  starting\n  input\n"
	if b.code != 1 || !strings.Contains(b.stderr, want) {
		t.Errorf("--verbose: exit %d, stderr:\n%s\nwant it to contain:\n%s", b.code, b.stderr, want)
	}
}

// TestVerbosePrintsCommands: with --verbose every executed command is
// shown, expanded, under its action.
func TestVerbosePrintsCommands(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/in.txt":     "x\n",
		"a/BUILD.star": "genrule(name = \"g\", srcs = [\"in.txt\"], outs = [\"o.txt\"], cmd = \"cp $< $@\")\n",
	})
	b := ws.build(t, "--verbose")
	if b.code != 0 || !strings.Contains(b.stderr, "Executing genrule //a:g") || !strings.Contains(b.stderr, "\n  $ cp a/in.txt dist/a/g/o.txt\n") {
		t.Errorf("exit %d, stderr:\n%s", b.code, b.stderr)
	}
}

// TestSandboxDebug keeps a failed action's scratch directory, with its
// staged inputs, and prints a command that runs the action there by hand
// with the same result; the next build removes the directory.
func TestSandboxDebug(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--sandbox-debug", "--sandbox_debug"} {
		ws := newWorkspace(t, failingGenrule)
		b := ws.build(t, flag)
		if b.code != 1 {
			t.Fatalf("%s: exit %d\n%s", flag, b.code, b.stderr)
		}
		m := regexp.MustCompile(`(?m)^  scratch directory kept: (\S+) \(the next build removes it\)\n  run the command there by hand:\n    (cd .*)$`).FindStringSubmatch(b.stderr)
		if m == nil {
			t.Fatalf("%s: stderr does not name the kept directory and the command:\n%s", flag, b.stderr)
		}
		dir, hand := m[1], m[2]
		if got, err := os.ReadFile(dir + "/a/in.txt"); err != nil || string(got) != "input\n" {
			t.Errorf("%s: the kept directory lacks the staged input: %q, %v", flag, got, err)
		}
		cmd := exec.Command("/bin/bash", "-c", hand)
		out, err := cmd.CombinedOutput()
		if code := exitCode(t, err); code != 4 || string(out) != "starting\ninput\n" {
			t.Errorf("%s: by hand: exit %d, output %q; want 4 and what the build printed", flag, code, out)
		}
		ws.build(t)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: the next build kept %s (%v)", flag, dir, err)
		}
	}
}

// TestFailedLineNamesTargetOnce: a target two of whose actions fail (the
// bundle and the type check of a cdk_stack with a syntax error, with
// --keep-going) is one entry of the failed: line.
func TestFailedLineNamesTargetOnce(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	ws := newWorkspace(t, map[string]string{
		"WORKSPACE.star":  "workspace(name = \"t\", node_modules = \"" + nm + "\")\n",
		"p/BUILD.star":    "cdk_stack(name = \"app\", app = \"src/main.ts\", srcs = glob([\"src/**/*.ts\"]), typecheck = True)\n",
		"p/tsconfig.json": `{"compilerOptions": {"strict": true, "noEmit": true, "module": "commonjs", "target": "ES2022", "skipLibCheck": true, "types": []}, "include": ["src/**/*.ts"]}`,
		"p/src/main.ts":   "const port: number = ;\n",
	})
	b := ws.build(t, "--keep-going")
	if got := b.labels("failed"); len(got) != 2 {
		t.Fatalf("failed actions %v, want the bundle and the type check\n%s", got, b.stderr)
	}
	if !strings.Contains(b.stderr, "\nfailed: //p:app\n") {
		t.Errorf("the failed: line does not name //p:app exactly once:\n%s", b.stderr)
	}
}
