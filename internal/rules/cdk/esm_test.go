package cdk_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// sourceLocationApp is a CDK app laid out as the Nx generators lay it out:
// a construct in packages/common/constructs that finds its Lambda code
// relative to its own source file, and the app in packages/infra. where
// is the construct's expression for its own directory (import.meta.url
// in an ES module, __dirname in CommonJS).
func sourceLocationApp(rootPackageJSON, build, where string) map[string]string {
	files := map[string]string{
		"packages/my-api/BUILD.star":            `genrule(name = "bundle", outs = ["index.py"], cmd = "echo 'handler = None' > $@")` + "\n",
		"packages/common/constructs/BUILD.star": `filegroup(name = "constructs", srcs = glob(["src/**/*.ts"]))` + "\n",
		"packages/common/constructs/src/app/my-api.ts": `import * as path from 'path';
import * as url from 'url';
import { CfnOutput } from 'aws-cdk-lib';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';

const here = ` + where + `;

export class MyApi extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    new s3assets.Asset(this, 'Code', { path: path.join(here, '../../../../../dist/packages/my-api/bundle') });
    new CfnOutput(this, 'Dir', { value: path.relative(process.cwd(), here) });
  }
}
`,
		"packages/infra/BUILD.star": build,
		"packages/infra/src/main.ts": `import { App, Stack } from 'aws-cdk-lib';
import { MyApi } from '../../common/constructs/src/app/my-api.js';

const app = new App();
new MyApi(new Stack(app, 'Api'), 'MyApi');
`,
	}
	if rootPackageJSON != "" {
		files["package.json"] = rootPackageJSON
	}
	return files
}

const infraBuild = `cdk_stack(
    name = "infra",
    app = "src/main.ts",
    srcs = glob(["src/**/*.ts"]),
    deps = ["//packages/common/constructs", "//packages/my-api:bundle"],%s
)
`

// TestSynthSourceLocations synthesizes, with the real aws-cdk-lib, apps
// whose constructs find their assets relative to their own source file:
// an ES module workspace ("type": "module", import.meta.url), a CommonJS
// one (__dirname), and an ES module workspace bundled as CommonJS on
// request. Each module sees its source location; the workspace's
// package.json, which the synth does not declare, decides nothing but
// the default format.
func TestSynthSourceLocations(t *testing.T) {
	t.Parallel()
	nm := testenv.CDKNodeModules(t)
	const esmRoot = `{"name": "@acme/source", "private": true, "type": "module"}`
	for _, tc := range []struct {
		name, root, attr, where, format string
	}{
		{"esm", esmRoot, "", "url.fileURLToPath(new URL('.', import.meta.url))", "esm"},
		{"esm dirname", esmRoot, "", "import.meta.dirname", "esm"},
		{"cjs", `{"name": "acme", "private": true}`, "", "__dirname", "cjs"},
		{"no package.json", "", "", "__dirname", "cjs"},
		{"esm bundled as cjs", esmRoot, "\n    module_format = \"cjs\",", "url.fileURLToPath(new URL('.', import.meta.url))", "cjs"},
		{"cjs bundled as esm", "", "\n    module_format = \"esm\",", "path.dirname(url.fileURLToPath(import.meta.url))", "esm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWS(t, nm, sourceLocationApp(tc.root, strings.Replace(infraBuild, "%s", tc.attr, 1), tc.where))
			w.buildOK(t)
			appJS := w.read(t, "dist/packages/infra/infra/app.js")
			if isESM := strings.Contains(appJS, "import.meta.url") && strings.Contains(appJS, "\nimport "); isESM != (tc.format == "esm") {
				t.Errorf("the bundle is not %s:\n%.400s", tc.format, appJS)
			}
			out := "dist/packages/infra/infra/cdk.out"
			var tmpl struct {
				Outputs map[string]struct{ Value any } `json:"Outputs"`
			}
			if err := json.Unmarshal([]byte(w.read(t, out+"/Api.template.json")), &tmpl); err != nil {
				t.Fatal(err)
			}
			var dir any
			for id, o := range tmpl.Outputs {
				if strings.HasPrefix(id, "MyApiDir") {
					dir = o.Value
				}
			}
			if dir != "packages/common/constructs/src/app" {
				t.Errorf("the construct's directory at synth was %v, want its source directory packages/common/constructs/src/app", dir)
			}
			assets, _ := filepath.Glob(filepath.Join(w.root, out, "asset.*", "index.py"))
			if len(assets) != 1 {
				t.Errorf("the bundle found relative to the construct's source is not staged in the assembly: %v", assets)
			}
			// The assembly names no scratch directory.
			b, _ := os.ReadFile(filepath.Join(w.root, out, "manifest.json"))
			if strings.Contains(string(b), ".pipe/sandbox") {
				t.Errorf("manifest.json names the scratch directory:\n%s", b)
			}
		})
	}
}
