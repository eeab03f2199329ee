package scaffold

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/evanw/esbuild/pkg/api"

	"github.com/pipebuild/pipe/internal/testenv"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"my-api", "api", "a1", "my_api", "orders-v2", "x-y-z"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":        "empty",
		"My-Api":  `did you mean "my-api"?`,
		"1api":    "starts with a digit",
		"my api":  "is not valid",
		"my--api": "single - or _",
		"my-api-": "is not valid",
		"-api":    "is not valid",
		"a/b":     "--parent-dir",
		"my.api":  "is not valid",
		"ápi":     "is not valid",
	} {
		err := ValidateName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %v, want an error saying %q", name, err, want)
		}
	}
}

func TestValidateModule(t *testing.T) {
	for _, ok := range []string{"my_api", "_private", "Api2", "orders"} {
		if err := ValidateModule(ok, "--module-name"); err != nil {
			t.Errorf("ValidateModule(%q): %v", ok, err)
		}
	}
	for module, want := range map[string]string{
		"my-api":    "not a Python identifier",
		"2fa":       "not a Python identifier",
		"class":     "a Python keyword",
		"async":     "a Python keyword",
		"json":      "the standard library's json",
		"test":      "the standard library's test",
		"fastapi":   "the fastapi package",
		"pydantic":  "the pydantic package",
		"tests":     "the tests package",
		"uvicorn":   "the uvicorn package",
		"starlette": "the starlette package",
	} {
		err := ValidateModule(module, `service name "x"`)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--module-name") {
			t.Errorf("ValidateModule(%q) = %v, want an error saying %q and naming --module-name", module, err, want)
		}
	}
}

func TestPascalCase(t *testing.T) {
	for in, want := range map[string]string{"my-api": "MyApi", "my_api": "MyApi", "api": "Api", "orders-v2": "OrdersV2"} {
		if got := PascalCase(in); got != want {
			t.Errorf("PascalCase(%q) = %q, want %q", in, got, want)
		}
	}
}

// everyOption yields every combination of options for a service name.
func everyOption(name string) []FastAPIOptions {
	var out []FastAPIOptions
	for _, c := range ComputeTypes {
		for _, a := range AuthTypes {
			for _, p := range IntegrationPatterns {
				if validCombination(c, a, p) == "" {
					out = append(out, FastAPIOptions{Name: name, ComputeType: c, Auth: a, IntegrationPattern: p})
				}
			}
		}
	}
	return out
}

// generateAll generates every combination for name into a fresh
// directory, each as its own workspace, and returns the files.
func generateAll(t *testing.T, name string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, o := range everyOption(name) {
		root := t.TempDir()
		if _, err := FastAPI(root, o); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		files := map[string]string{}
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(root, p)
				b, _ := os.ReadFile(p)
				files[filepath.ToSlash(rel)] = string(b)
			}
			return nil
		})
		out[o.ComputeType+"-"+o.Auth+"-"+o.IntegrationPattern] = files
	}
	return out
}

var doubleQuotedTS = regexp.MustCompile(`"[^"]*"`)

// TestGeneratedFilesAreFormatted holds generated files to what a formatter
// would leave: Python as black (79 columns) and pycodestyle, TypeScript
// as prettier with singleQuote, JSON 2-space, one final newline, no
// trailing blanks, and TypeScript that esbuild parses.
func TestGeneratedFilesAreFormatted(t *testing.T) {
	for combo, files := range generateAll(t, "orders-api") {
		for name, content := range files {
			where := combo + ": " + name
			if !strings.HasSuffix(content, "\n") || strings.HasSuffix(content, "\n\n") {
				t.Errorf("%s does not end with exactly one newline", where)
			}
			// PEP 8 puts two blank lines between top-level definitions;
			// nothing else wants more than one.
			blank := "\n\n\n"
			if strings.HasSuffix(name, ".py") {
				blank = "\n\n\n\n"
			}
			if strings.Contains(content, blank) {
				t.Errorf("%s has too many blank lines in a row", where)
			}
			if strings.Contains(content, "\t") {
				t.Errorf("%s has a tab", where)
			}
			for i, line := range strings.Split(content, "\n") {
				if strings.TrimRight(line, " ") != line {
					t.Errorf("%s:%d has trailing blanks", where, i+1)
				}
				limit := 0
				switch filepath.Ext(name) {
				case ".py":
					limit = 79
				case ".ts":
					// prettier never breaks an import of one name.
					if !strings.HasPrefix(line, "import {") {
						limit = 80
					}
					code, _, _ := strings.Cut(line, "//")
					if trimmed := strings.TrimSpace(line); !strings.HasPrefix(trimmed, "//") &&
						!strings.HasPrefix(trimmed, "*") && !strings.HasPrefix(trimmed, "/*") &&
						doubleQuotedTS.MatchString(code) {
						t.Errorf("%s:%d uses double quotes: %s", where, i+1, line)
					}
				case ".star", ".toml":
					limit = 100
				}
				if limit > 0 && len([]rune(line)) > limit {
					t.Errorf("%s:%d is %d characters, over %d: %s", where, i+1, len([]rune(line)), limit, line)
				}
			}
			switch filepath.Ext(name) {
			case ".ts":
				res := api.Transform(content, api.TransformOptions{Loader: api.LoaderTS})
				for _, m := range res.Errors {
					t.Errorf("%s: esbuild: %s (line %d)", where, m.Text, m.Location.Line)
				}
			case ".json":
				var v any
				if err := json.Unmarshal([]byte(content), &v); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
		}
	}
}

// TestGeneratedPythonParses parses every generated Python file.
func TestGeneratedPythonParses(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		testenv.Need(t, "python3", "install Python 3 to parse the generated Python with")
	}
	sources := map[string]string{}
	for name, content := range generateAll(t, "orders-api")["rest-iam-isolated"] {
		if strings.HasSuffix(name, ".py") {
			sources[name] = content
		}
	}
	b, _ := json.Marshal(sources)
	cmd := exec.Command(py, "-c", "import ast, json, sys\nfor n, s in json.load(sys.stdin).items(): ast.parse(s, n)")
	cmd.Stdin = strings.NewReader(string(b))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("generated Python does not parse: %v\n%s", err, out)
	}
	if len(sources) != 4 {
		t.Errorf("%d Python files, want 4", len(sources))
	}
}

// The Python side does not depend on the API's options, and each option
// shows in the TypeScript only where it should.
func TestOptionsShapeTheConstructs(t *testing.T) {
	all := generateAll(t, "orders-api")
	base := all["rest-iam-isolated"]
	for combo, files := range all {
		for name, content := range files {
			if strings.HasPrefix(name, "packages/orders-api/") && content != base[name] {
				t.Errorf("%s: %s differs from rest-iam-isolated's: the service's own files do not depend on the options", combo, name)
			}
		}
		api := files["packages/common/constructs/src/app/apis/orders-api.ts"]
		stack := files["packages/infra/src/stacks/orders-api-stack.ts"]
		parts := strings.Split(combo, "-")
		n := len(parts)
		compute, auth, pattern := strings.Join(parts[:n-2], "-"), parts[n-2], parts[n-1]
		check := func(cond bool, what string) {
			t.Helper()
			if !cond {
				t.Errorf("%s: %s", combo, what)
			}
		}
		check(strings.Contains(api, "AWS_LAMBDA_EXEC_WRAPPER: '/opt/bootstrap'") && strings.Contains(api, "PORT: '8000'") &&
			strings.Contains(api, "handler: 'run.sh'") && strings.Contains(api, "Tracing.ACTIVE") &&
			strings.Contains(api, "Duration.seconds(30)") && strings.Contains(api, "const BUNDLE = 'dist/packages/orders-api/bundle';"),
			"the function lacks the adapter's settings")
		switch compute {
		case "rest":
			check(strings.Contains(api, "AWS_LWA_INVOKE_MODE: 'response_stream'") && strings.Contains(api, "ResponseTransferMode.STREAM"), "REST does not stream")
			check(files["packages/common/constructs/src/core/api/rest-api.ts"] != "" && files["packages/common/constructs/src/core/api/http-api.ts"] == "", "REST core files")
		case "http":
			check(strings.Contains(api, "AWS_LWA_INVOKE_MODE: 'buffered'") && strings.Contains(api, "HttpLambdaIntegration"), "HTTP does not buffer")
			check(files["packages/common/constructs/src/core/api/http-api.ts"] != "" && files["packages/common/constructs/src/core/api/rest-api.ts"] == "", "HTTP core files")
		case "function-url":
			check(strings.Contains(api, "AWS_LWA_INVOKE_MODE: 'response_stream'") && strings.Contains(api, "invokeMode: InvokeMode.RESPONSE_STREAM"), "the function URL does not stream")
			check(strings.Contains(api, "FunctionUrlAuthType.AWS_IAM") == (auth == "iam"), "the function URL authorizes with IAM only with --auth iam")
			check(strings.Contains(api, "this.handler.grantInvokeUrl(grantee)") == (auth == "iam"), "grantInvokeAccess grants invoking the URL")
			check(files["packages/common/constructs/src/core/api/http-api.ts"] == "" && files["packages/common/constructs/src/core/api/rest-api.ts"] == "", "a function URL needs no API Gateway core file")
		}
		check(files["packages/common/constructs/src/core/runtime-config.ts"] != "", "every API registers in RuntimeConfig")
		check(strings.Contains(api, "pythonRuntime(RUNTIME.pythonVersion)") && strings.Contains(api, "lambdaArchitecture(RUNTIME.architecture)") &&
			strings.Contains(api, "from '../../generated/orders-api/runtime.gen'"), "the runtime and architecture come from runtime.gen.ts")
		check(strings.Contains(api, "restrictCorsTo") || compute != "function-url", "the function URL has restrictCorsTo")
		check(strings.Contains(api, "grantInvokeAccess") == (auth == "iam"), "grantInvokeAccess only with IAM")
		check(strings.Contains(api, "readonly identity: {\n    readonly userPool: IUserPool;") == (auth == "cognito"), "identity prop only with Cognito")
		check(strings.Contains(api, "execute-api:/*/OPTIONS/*") == (auth == "iam" && compute == "rest"), "the REST resource policy opens OPTIONS with IAM")
		check(strings.Contains(stack, "new UserPool(") == (auth == "cognito"), "the stack makes a user pool only with Cognito")
		check(strings.Contains(api, "$router") == (pattern == "shared"), "$router only when shared")
		check(strings.Contains(api, "pascalCase(operation)") == (pattern == "isolated"), "a function per operation only when isolated")
		check(strings.Contains(api, "scopePermissionToMethod: false") == (pattern == "shared" && compute == "rest"), "a shared REST API has one permission")
		check(strings.Contains(api, "scopePermissionToRoute: false") == (pattern == "shared" && compute == "http"), "a shared HTTP API has one permission")
		check(strings.Contains(stack, "OrdersApi.defaultIntegrations(this).build()") == (compute != "function-url"), "the stack builds the default integrations")
	}
}

func TestRegistriesRoundTrip(t *testing.T) {
	entries := []stackEntry{entryOf("a-api", "packages/a-api"), entryOf("b-api", "services/b-api")}
	for _, r := range []registry{constructsBuild, infraBuild, infraMain} {
		b, err := renderRegistry(r, entries)
		if err != nil {
			t.Fatal(err)
		}
		got := r.parse(b)
		if len(got) != 2 || got[0].Name != "a-api" || got[1].Name != "b-api" {
			t.Errorf("%s: parse(render) = %+v", r.tmpl, got)
		}
		again, _ := renderRegistry(r, got)
		if string(again) != string(b) {
			t.Errorf("%s: rendering the parsed entries differs:\n%s\nfrom:\n%s", r.tmpl, again, b)
		}
	}
}

func TestMergeWorkspaceMembers(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		status         Status
	}{
		{"absent", "", "members = [\n    \"packages/x\",\n]\n", Created},
		{"one a line", "[tool.uv.workspace]\nmembers = [\n    \"a\",\n]\n", "[tool.uv.workspace]\nmembers = [\n    \"a\",\n    \"packages/x\",\n]\n", Updated},
		{"no trailing comma", "[tool.uv.workspace]\nmembers = [\n  \"a\"\n]\n", "[tool.uv.workspace]\nmembers = [\n  \"a\",\n  \"packages/x\",\n]\n", Updated},
		{"inline", "[tool.uv.workspace]\nmembers = [\"a\", \"b\"]\n", "[tool.uv.workspace]\nmembers = [\"a\", \"b\", \"packages/x\"]\n", Updated},
		{"empty inline", "[tool.uv.workspace]\nmembers = []\n", "[tool.uv.workspace]\nmembers = [\"packages/x\"]\n", Updated},
		{"no members", "[tool.uv.workspace]\nexclude = [\"old\"]\n", "[tool.uv.workspace]\nmembers = [\"packages/x\"]\nexclude = [\"old\"]\n", Updated},
		{"not a workspace", "[project]\nname = \"p\"\n", "[project]\nname = \"p\"\n\n[tool.uv.workspace]\nmembers = [\n    \"packages/x\",\n]\n", Updated},
		{"a glob holds it", "[tool.uv.workspace]\nmembers = [\"packages/*\"]\n", "", Unchanged},
		{"excluded", "[tool.uv.workspace]\nmembers = [\"packages/*\"]\nexclude = [\"packages/x\"]\n", "", Kept},
		{"dotted keys", "[tool.uv]\nworkspace = { members = [\"a\"] }\n", "", Kept},
		{"not TOML", "[tool.uv.workspace\n", "", Kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			if tc.in != "" {
				in = []byte(tc.in)
			}
			out, status, byHand, err := mergeWorkspaceMembers(in, "packages/x")
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("status %q, want %q", status, tc.status)
			}
			if tc.want != "" && !strings.HasSuffix(string(out), tc.want) {
				t.Errorf("got:\n%s\nwant (suffix):\n%s", out, tc.want)
			}
			if status == Kept && !strings.Contains(byHand, `"packages/x"`) {
				t.Errorf("kept without saying what to add: %q", byHand)
			}
		})
	}
}

func TestMergeGitignore(t *testing.T) {
	out, status, _, _ := mergeGitignore([]byte("/dist\nnode_modules\n*.log"))
	if status != Updated || string(out) != "/dist\nnode_modules\n*.log\n.pipe/\n.venv/\n__pycache__/\n" {
		t.Errorf("%s %q", status, out)
	}
	if _, status, _, _ := mergeGitignore([]byte("dist/\n.pipe/\n.venv/\n__pycache__/\nnode_modules/\n")); status != Unchanged {
		t.Errorf("complete .gitignore: %s", status)
	}
}

// The generated package.json pins the versions pipe's cdk tests run with.
func TestPackageJSONPinsTheTestedVersions(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "rules", "cdk", "testdata", "npm", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(want, &fixture); err != nil {
		t.Fatal(err)
	}
	b, err := render("root/package.json.tmpl", nil)
	if err != nil {
		t.Fatal(err)
	}
	var gen struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := json.Unmarshal(b, &gen); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{}
	for k, v := range gen.Dependencies {
		all[k] = v
	}
	for k, v := range gen.DevDependencies {
		all[k] = v
	}
	var names []string
	for k := range fixture.Dependencies {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if all[k] != fixture.Dependencies[k] {
			t.Errorf("package.json pins %s %q; the cdk test fixture has %q", k, all[k], fixture.Dependencies[k])
		}
	}
	if len(all) != len(fixture.Dependencies) {
		t.Errorf("package.json has %v; the fixture %v", all, fixture.Dependencies)
	}
	if !strings.Contains(string(b), `"aws-cdk-lib": "2.276.0"`) {
		t.Errorf("mergePackageJSON's advice must name the pinned versions")
	}
}

func TestFastAPIIsIdempotent(t *testing.T) {
	root := t.TempDir()
	res, err := FastAPI(root, FastAPIOptions{Name: "my-api"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Service != "packages/my-api" || res.Options.Module != "my_api" || res.Options.ComputeType != "rest" ||
		res.Options.Auth != "iam" || res.Options.IntegrationPattern != "isolated" || res.Options.Directory != "packages" {
		t.Errorf("defaults: %+v", res)
	}
	res, err = FastAPI(root, FastAPIOptions{Name: "my-api"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if f.Status != Unchanged {
			t.Errorf("second run: %s %s", f.Path, f.Status)
		}
	}
	// The other compute type's construct is an earlier rendering too.
	res, err = FastAPI(root, FastAPIOptions{Name: "my-api", ComputeType: "http", IntegrationPattern: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if f.Path == "packages/common/constructs/src/app/apis/my-api.ts" && f.Status != Updated {
			t.Errorf("switching to http: the API's construct is %s, want updated", f.Status)
		}
	}
}

func TestCleanDirectory(t *testing.T) {
	for in, want := range map[string]string{"": "packages", "services": "services", "a/b/": "a/b", "./apps": "apps"} {
		if got, err := cleanDirectory(in); err != nil || got != want {
			t.Errorf("cleanDirectory(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{".", "..", "../x", "/abs", "dist", "dist/x", ".hidden", "a/node_modules"} {
		if _, err := cleanDirectory(bad); err == nil {
			t.Errorf("cleanDirectory(%q) accepted", bad)
		}
	}
}
