package cdk_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/engine"
)

// bundleOnly runs the bundle action alone: these tests need neither node
// nor node_modules.
func (w *testWS) bundleOnly(t *testing.T) (*engine.Plan, error) {
	t.Helper()
	ws, p, err := w.plan()
	if err != nil {
		t.Fatal(err)
	}
	a := actionOf(t, p, "CdkBundle")
	digests := engine.LoadFileDigests(filepath.Join(ws.StateDir(), "digests"))
	ex := &engine.Executor{WS: ws, Cache: w.cache, Digests: digests, Jobs: 1, PipeVersion: "test"}
	_, err = ex.Execute(context.Background(), []*engine.Action{a})
	return p, err
}

func failed(t *testing.T, err error) (string, string) {
	t.Helper()
	var bf *engine.BuildFailedError
	if !errors.As(err, &bf) {
		t.Fatalf("error %v, want a failed action", err)
	}
	return bf.Failed[0].Err.Error(), bf.Failed[0].Output
}

func TestBundle(t *testing.T) {
	t.Parallel()
	w := newWS(t, "", map[string]string{
		"p/BUILD.star": `cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/**/*.ts"]))` + "\n",
		"p/src/main.ts": `import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { greet } from './lib/greet';

const app = new App();
console.log(greet(lambda.Runtime.PYTHON_3_12.name), app);
`,
		"p/src/lib/greet.ts": "export const greet = (who: string): string => `hello ${who}`;\n",
	})
	p, err := w.bundleOnly(t)
	if err != nil {
		t.Fatal(err)
	}
	a := actionOf(t, p, "CdkBundle")
	var inputs []string
	for _, f := range a.Inputs {
		inputs = append(inputs, f.Path)
	}
	if got := strings.Join(inputs, " "); got != "p/src/main.ts p/src/lib/greet.ts" {
		t.Errorf("inputs %s", got)
	}
	js := w.read(t, "dist/p/app/app.js")
	for _, want := range []string{`require("aws-cdk-lib")`, `require("aws-cdk-lib/aws-lambda")`, "hello ${who}",
		"//# sourceMappingURL=data:application/json;base64,"} {
		if !strings.Contains(js, want) {
			t.Errorf("app.js lacks %s:\n%s", want, js)
		}
	}
	if strings.Contains(js, w.root) || strings.Contains(js, ".pipe") {
		t.Errorf("app.js names a local path:\n%s", js)
	}
}

// TestBundleUndeclaredInput: the metafile shows esbuild read a file that is
// not an input; the key would not notice its edits.
func TestBundleUndeclaredInput(t *testing.T) {
	t.Parallel()
	w := newWS(t, "", map[string]string{
		"p/BUILD.star":      `cdk_stack(name = "app", app = "src/main.ts", srcs = ["src/main.ts"])` + "\n",
		"p/src/main.ts":     "import { x } from './extra';\nimport { y } from '../../q/shared';\nconsole.log(x, y);\n",
		"p/src/extra.ts":    "export const x = 1;\n",
		"q/shared.ts":       "export const y = 2;\n",
		"q/BUILD.star":      "",
		"p/src/unused.ts":   "export const z = 3;\n",
		"p/tsconfig.json":   `{"compilerOptions": {"strict": true}}`,
		"p/package.json":    `{"name": "p"}`,
		"p/cdk.json":        `{}`,
		"p/unrelated.json":  `{}`,
		"p/src/notes.d.txt": "",
	})
	_, err := w.bundleOnly(t)
	msg, _ := failed(t, err)
	want := "the app imports files that are not declared inputs:\n  p/src/extra.ts (imported by p/src/main.ts)\n  q/shared.ts (imported by p/src/main.ts)\nadd them to srcs of //p:app"
	if !strings.HasPrefix(msg, want) {
		t.Errorf("error\n%s\nwant it to start with\n%s", msg, want)
	}
	// tsconfig.json and package.json of the package are inputs: esbuild
	// reads them.
	_, p, _ := w.plan()
	var inputs []string
	for _, f := range actionOf(t, p, "CdkBundle").Inputs {
		inputs = append(inputs, f.Path)
	}
	if got := strings.Join(inputs, " "); got != "p/src/main.ts p/tsconfig.json p/package.json" {
		t.Errorf("inputs %s", got)
	}
}

func TestBundleSyntaxError(t *testing.T) {
	t.Parallel()
	w := newWS(t, "", map[string]string{
		"p/BUILD.star":  `cdk_stack(name = "app", app = "src/main.ts", srcs = glob(["src/*.ts"]))` + "\n",
		"p/src/main.ts": "import { b } from './b';\nconst a: number = 1;\nconsole.log(a b);\n",
		"p/src/b.ts":    "export const b = 1;\n",
	})
	_, err := w.bundleOnly(t)
	msg, out := failed(t, err)
	if want := `esbuild: p/src/main.ts:3:15: Expected ")" but found "b"`; msg != want {
		t.Errorf("error\n  %s\nwant\n  %s", msg, want)
	}
	if want := "p/src/main.ts:3:15: error: Expected \")\" but found \"b\"\n    console.log(a b);\n                  ^\n"; out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
}

// TestBundleTsconfigExtends: a tsconfig and what it extends are inputs.
func TestBundleTsconfigExtends(t *testing.T) {
	t.Parallel()
	w := newWS(t, "", map[string]string{
		"tsconfig.base.json": `{"compilerOptions": {"paths": {"@lib/*": ["./lib/*"]}}}`,
		"lib/BUILD.star":     `filegroup(name = "lib", srcs = ["util.ts"])` + "\n",
		"lib/util.ts":        "export const u = 'util';\n",
		"p/tsconfig.json":    "{\n  // Nx-style\n  \"extends\": \"../tsconfig.base.json\",\n}\n",
		"p/BUILD.star":       `cdk_stack(name = "app", app = "src/main.ts", deps = ["//lib"])` + "\n",
		"p/src/main.ts":      "import { u } from '@lib/util';\nconsole.log(u);\n",
	})
	p, err := w.bundleOnly(t)
	if err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, f := range actionOf(t, p, "CdkBundle").Inputs {
		inputs = append(inputs, f.Path)
	}
	if got := strings.Join(inputs, " "); got != "p/src/main.ts lib/util.ts p/tsconfig.json tsconfig.base.json" {
		t.Errorf("inputs %s", got)
	}
	if js := w.read(t, "dist/p/app/app.js"); !strings.Contains(js, `"util"`) {
		t.Errorf("the paths alias was not bundled:\n%s", js)
	}
}

func TestAnalysisErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ build, want string }{
		{`cdk_stack(name = "a", app = "x.txt")`, `app p/x.txt is not a TypeScript or JavaScript file`},
		{`cdk_stack(name = "a", app = "m.ts", account = "12")`, `account "12" is not a 12-digit AWS account id`},
		{`cdk_stack(name = "a", app = "m.ts", region = "Europe")`, `region "Europe" is not an AWS region name`},
		{`cdk_stack(name = "a", app = "m.ts", typecheck = True)`, `typecheck = True needs p/tsconfig.json`},
		{`cdk_stack(name = "a", app = "m.ts", stacks = ["[x"])`, `stacks: "[x" is not a stack name or glob`},
	} {
		w := newWS(t, "", map[string]string{"p/BUILD.star": tc.build + "\n", "p/m.ts": "", "p/x.txt": ""})
		_, _, err := w.plan()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "p/BUILD.star:1:1: //p:a: cdk_stack: ") {
			t.Errorf("%s: error %v, want %q", tc.build, err, tc.want)
		}
	}
}
