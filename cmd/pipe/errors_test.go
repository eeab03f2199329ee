package main

import (
	"strings"
	"testing"
)

// TestBuildFileErrors checks the exact message, position and exit code (2)
// of mistakes in BUILD.star and .star files. Nothing may be built.
func TestBuildFileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		args  []string
		want  string // the whole of stderr
	}{
		{
			name: "dependency cycle across packages",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = [\"//b:y\"],\n)\n",
				"b/BUILD.star": "filegroup(\n    name = \"y\",\n    srcs = [\"//a:x\"],\n)\n",
			},
			want: "pipe: a/BUILD.star:1:1: dependency cycle:\n" +
				"    //a:x\n" +
				" -> //b:y\n" +
				" -> //a:x\n" +
				"  remove one of these dependencies to break it\n",
		},
		{
			name: "dependency cycle of three, found from the middle",
			files: map[string]string{
				"a/BUILD.star": "filegroup(name = \"x\", srcs = [\"//b:y\"])\n",
				"b/BUILD.star": "filegroup(name = \"y\", srcs = [\"//c:z\"])\n",
				"c/BUILD.star": "filegroup(name = \"z\", srcs = [\"//a:x\"])\n",
			},
			args: []string{"//b:y"},
			want: "pipe: a/BUILD.star:1:1: dependency cycle:\n" +
				"    //a:x\n" +
				" -> //b:y\n" +
				" -> //c:z\n" +
				" -> //a:x\n" +
				"  remove one of these dependencies to break it\n",
		},
		{
			name: "target depends on itself",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = [\":x\"],\n)\n",
			},
			want: "pipe: a/BUILD.star:1:1: dependency cycle: //a:x depends on itself (attribute srcs)\n",
		},
		{
			name: "missing target in the same package",
			files: map[string]string{
				"a/BUILD.star": `filegroup(
    name = "names",
    srcs = [],
)

filegroup(
    name = "user",
    srcs = [":nmaes"],
)
`,
			},
			want: "pipe: a/BUILD.star:6:1: //a:user: attribute srcs refers to //a:nmaes, but package //a has no target or file \"nmaes\" (did you mean \"names\"?)\n",
		},
		{
			name: "missing target in another package",
			files: map[string]string{
				"b/BUILD.star": "filegroup(\n    name = \"names\",\n)\n",
				"a/BUILD.star": "genrule(\n    name = \"g\",\n    srcs = [\"//b:nmaes\"],\n    outs = [\"o\"],\n    cmd = \"true\",\n)\n",
			},
			args: []string{"//a:g"},
			want: "pipe: a/BUILD.star:1:1: //a:g: attribute srcs refers to //b:nmaes, but package //b has no target or file \"nmaes\" (did you mean \"names\"?)\n",
		},
		{
			name: "missing package",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = [\"//c:names\"],\n)\n",
			},
			want: "pipe: a/BUILD.star:1:1: //a:x: attribute srcs refers to //c:names, but there is no package //c (no BUILD.star in c/)\n",
		},
		{
			name: "unknown attribute",
			files: map[string]string{
				"a/BUILD.star": `genrule(
    name = "g",
    outs = ["o.txt"],
    cmd = "echo hi > $@",
    mesage = "hi",
)
`,
			},
			want: "pipe: a/BUILD.star:5:5: genrule: unknown attribute \"mesage\" (did you mean \"message\"?)\n",
		},
		{
			name: "unknown attribute in a macro",
			files: map[string]string{
				"a/defs.star": `def m(name):
    genrule(
        name = name,
        outs = ["o"],
        cmd = "true",
        srcz = [],
    )
`,
				"a/BUILD.star": "load(\"//a:defs.star\", \"m\")\n\nm(name = \"x\")\n",
			},
			want: "pipe: a/defs.star:6:9: genrule: unknown attribute \"srcz\" (did you mean \"srcs\"?) (in a macro called at a/BUILD.star:3:1)\n",
		},
		{
			name: "syntax error: unterminated string",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x,\n)\n",
			},
			want: "pipe: a/BUILD.star:2:12: syntax error: unexpected newline in string\n",
		},
		{
			// The column is that of the unexpected token, `srcs`.
			name: "syntax error: missing comma",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\"\n    srcs = [],\n)\n",
			},
			want: "pipe: a/BUILD.star:3:5: syntax error: got identifier, want ','\n",
		},
		{
			// The misspelt name is in the load statement, not at its uses.
			name: "load of a name the module does not define",
			files: map[string]string{
				"tools/defs.star": "def shout(name):\n    pass\n",
				"a/BUILD.star":    "load(\"//tools:defs.star\", \"shoutt\")\n\nshout(name = \"x\")\n",
			},
			want: "pipe: a/BUILD.star:1:28: load: name shoutt not found in //tools:defs.star (did you mean shout?)\n",
		},
		{
			name: "load of a name with no near match lists the module's names",
			files: map[string]string{
				"tools/defs.star": "def shout(name):\n    pass\n\ndef _private():\n    pass\n",
				"a/BUILD.star":    "load(\"//tools:defs.star\", loud = \"whisper\")\n",
			},
			want: "pipe: a/BUILD.star:1:35: load: name whisper not found in //tools:defs.star (it defines shout)\n",
		},
		{
			name: "misspelt rule",
			files: map[string]string{
				"a/BUILD.star": "genrul(\n    name = \"g\",\n    outs = [\"o\"],\n    cmd = \"true\",\n)\n",
			},
			want: "pipe: a/BUILD.star:1:1: undefined: genrul (did you mean genrule?)\n",
		},
		{
			name: "undefined name",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = undefined_var,\n)\n",
			},
			want: "pipe: a/BUILD.star:3:12: undefined: undefined_var\n",
		},
		{
			// The column is where the glob call starts, as for rule calls.
			name: "glob leaves the package",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = glob([\"../*.star\"]),\n)\n",
			},
			want: "pipe: a/BUILD.star:3:12: glob: include: pattern \"../*.star\" leaves the package: a package can only glob its own files; give the files to a filegroup in their own package and depend on it\n",
		},
		{
			name: "label leaves the package",
			files: map[string]string{
				"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = [\"../b/x.txt\"],\n)\n",
			},
			want: "pipe: a/BUILD.star:3:5: filegroup: attribute srcs: label \"../b/x.txt\": target name \"../b/x.txt\" must not contain \"..\"\n",
		},
		{
			name: "duplicate target name",
			files: map[string]string{
				"a/BUILD.star": `filegroup(
    name = "x",
)

genrule(
    name = "x",
    outs = ["o"],
    cmd = "touch $@",
)
`,
			},
			want: "pipe: a/BUILD.star:6:5: genrule: duplicate target name \"x\": already declared at a/BUILD.star:1:1\n",
		},
		{
			name: "missing required attribute",
			files: map[string]string{
				"a/BUILD.star": "genrule(\n    name = \"g\",\n    outs = [\"o\"],\n)\n",
			},
			want: "pipe: a/BUILD.star:1:1: genrule: target \"g\": missing required attribute \"cmd\" (string)\n",
		},
		{
			name: "missing name",
			files: map[string]string{
				"a/BUILD.star": "\ngenrule(\n    outs = [\"o\"],\n    cmd = \"x\",\n)\n",
			},
			want: "pipe: a/BUILD.star:2:1: genrule: missing required attribute \"name\"\n",
		},
		{
			name: "load cycle",
			files: map[string]string{
				"a/BUILD.star": "load(\"//a:one.star\", \"f\")\n\nf()\n",
				"a/one.star":   "load(\"//a:two.star\", \"g\")\n\ndef f():\n    pass\n",
				"a/two.star":   "# two\nload(\"//a:one.star\", \"f\")\n\ndef g():\n    pass\n",
			},
			want: "pipe: a/two.star:2:1: load cycle: a/one.star -> a/two.star -> a/one.star\n",
		},
		{
			name: "load of a missing file",
			files: map[string]string{
				"a/BUILD.star": "load(\"//a:nope.star\", \"f\")\n",
			},
			want: "pipe: a/BUILD.star:1:1: cannot load //a:nope.star: load a/nope.star: no such file in the workspace\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ws := newWorkspace(t, c.files)
			stdout, stderr, code := runPipe(t, ws, append([]string{"build"}, c.args...)...)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if stderr != c.want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("stdout: %q, want nothing", stdout)
			}
			if ws.exists("dist") {
				t.Errorf("a BUILD-file error created dist/: %q", listFiles(t, ws.path("dist")))
			}
		})
	}
}

// TestQuerySeesBuildFileErrors: query and graph report the same errors as
// build, with the same exit code.
func TestQuerySeesBuildFileErrors(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": "filegroup(\n    name = \"x\",\n    srcs = [\"//b:y\"],\n)\n",
		"b/BUILD.star": "filegroup(\n    name = \"y\",\n    srcs = [\"//a:x\"],\n)\n",
	})
	want := "pipe: a/BUILD.star:1:1: dependency cycle:\n    //a:x\n -> //b:y\n -> //a:x\n  remove one of these dependencies to break it\n"
	for _, args := range [][]string{{"query", "//..."}, {"query", "deps(//b:y)"}, {"graph", "//..."}} {
		stdout, stderr, code := runPipe(t, ws, args...)
		if code != 2 || stderr != want || stdout != "" {
			t.Errorf("pipe %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and:\n%s", strings.Join(args, " "), code, stdout, stderr, want)
		}
	}
}

// TestExitCodes: 0 ok, 1 build failure, 2 usage or BUILD-file error.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{
		"a/BUILD.star": `genrule(
    name = "ok",
    outs = ["ok.txt"],
    cmd = "echo ok > $@",
)

genrule(
    name = "fails",
    outs = ["fails.txt"],
    cmd = "echo oops >&2; false",
)
`,
	})
	cases := []struct {
		args       []string
		code       int
		wantStderr string // a substring
	}{
		{[]string{"build", "//a:ok"}, 0, "1 actions: 1 executed, 0 cached, 0 failed"},
		{[]string{"build", "//a:fails"}, 1, "FAIL //a:fails (Genrule): command exited with status 1\n  $ echo oops >&2; false\n  oops\n  (--sandbox-debug keeps the scratch directory and shows how to run the command there by hand)\nfailed: //a:fails\n"},
		{[]string{"build", "--nope"}, 2, "pipe: unknown flag: --nope (see pipe build --help)\n"},
		{[]string{"--nope", "build"}, 2, "pipe: unknown flag: --nope"},
		{[]string{"build", "-j"}, 2, "flag needs an argument"},
		{[]string{"build", "--color", "sometimes", "//a:ok"}, 2, "pipe: --color \"sometimes\": want auto, always or never\n"},
		{[]string{"frobnicate"}, 2, "pipe: unknown command \"frobnicate\" for \"pipe\"\n"},
		{[]string{"build", "//a:b:c"}, 2, "pipe: pattern \"//a:b:c\": label \"//a:b:c\": target name \"b:c\" contains the character ':'\n"},
		{[]string{"build", "//nope/..."}, 2, "pipe: //nope/...: no directory nope in the workspace\n"},
		{[]string{"build", "//a:okk"}, 2, "pipe: //a:okk: no target \"okk\" in package //a (a/BUILD.star) (did you mean \"ok\"?)\n"},
		{[]string{"build", "//zz"}, 2, "pipe: //zz:zz: no package //zz (there is no BUILD.star in zz/)\n"},
		{[]string{"build", "../x"}, 2, "pipe: pattern \"../x\" leaves the workspace\n"},
		{[]string{"query"}, 2, "accepts 1 arg(s), received 0"},
		{[]string{"query", "deps(//a:ok"}, 2, "pipe: query: "},
		{[]string{"query", "--output", "xml", "//..."}, 2, "pipe: --output \"xml\": want label, label_kind or json\n"},
		{[]string{"graph", "--format", "svg"}, 2, "pipe: --format \"svg\": want dot or json\n"},
		{[]string{"clean", "extra"}, 2, "unknown command \"extra\" for \"pipe clean\""},
		{[]string{"-C", "does-not-exist", "build"}, 2, "pipe: -C does-not-exist: not a directory\n"},
	}
	for _, c := range cases {
		_, stderr, code := runPipe(t, ws, c.args...)
		if code != c.code {
			t.Errorf("pipe %s: exit %d, want %d\nstderr:\n%s", strings.Join(c.args, " "), code, c.code, stderr)
		}
		if !strings.Contains(stderr, c.wantStderr) {
			t.Errorf("pipe %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), c.wantStderr, stderr)
		}
	}

	// Outside any workspace.
	empty := &workspace{Root: t.TempDir(), Cache: t.TempDir()}
	_, stderr, code := runPipe(t, empty, "build")
	if code != 2 || !strings.Contains(stderr, "no WORKSPACE.star in "+empty.Root+" or any parent directory") {
		t.Errorf("outside a workspace: exit %d, stderr:\n%s", code, stderr)
	}
}

// An unfinished function call in a query names what was expected.
func TestQueryParseErrorNamesClosingParen(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, map[string]string{"a/BUILD.star": "filegroup(name = \"x\")\n"})
	_, stderr, code := runPipe(t, ws, "query", "deps(//a:x")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	// deps(x) may be followed by ", depth" or ")": the message must not claim
	// only "," would do.
	if !strings.Contains(stderr, `")"`) {
		t.Errorf("stderr does not mention the missing \")\":\n%s", stderr)
	}
}
