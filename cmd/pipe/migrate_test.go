package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// nxFixture is an Nx workspace laid out as @aws/nx-plugin's generators
// document it (see its README.md).
const nxFixture = "../../internal/migrate/testdata/nx"

// nxLock is the uv.lock `uv lock` would write for the fixture: both
// services depend on tinydep.
func nxLock(tiny testWheel, fastapi []testWheel) string {
	var b strings.Builder
	b.WriteString("version = 1\nrevision = 3\nrequires-python = \">=3.11\"\n\n[manifest]\nmembers = [\n    \"acme-billing-api\",\n    \"acme-orders-api\",\n]\n")
	for _, m := range []struct{ name, dir string }{{"acme-billing-api", "packages/billing_api"}, {"acme-orders-api", "packages/orders_api"}} {
		fmt.Fprintf(&b, "\n[[package]]\nname = %q\nversion = \"1.0.0\"\nsource = { editable = %q }\ndependencies = [\n    { name = \"fastapi\" },\n    { name = \"tinydep\" },\n]\n\n[package.metadata]\nrequires-dist = [{ name = \"fastapi\" }, { name = \"tinydep\" }]\n", m.name, m.dir)
	}
	// The services import FastAPI: openapi_schema runs them on the locked
	// environment, so the lock holds it (Debian's, made into wheels).
	for _, w := range append([]testWheel{tiny}, fastapi...) {
		e := lockEntryOf(w)
		fmt.Fprintf(&b, "\n[[package]]\nname = %q\nversion = %q\nsource = { registry = \"https://pypi.org/simple\" }\n", e.Name, e.Version)
		if len(e.Deps) > 0 {
			b.WriteString("dependencies = [\n")
			for _, d := range e.Deps {
				fmt.Fprintf(&b, "    { name = %q },\n", d)
			}
			b.WriteString("]\n")
		}
		fmt.Fprintf(&b, "wheels = [\n    { url = %q, hash = \"sha256:%s\", size = %d },\n]\n", e.Wheels[0].URL, e.Wheels[0].SHA256, e.Wheels[0].Size)
	}
	return b.String()
}

// TestMigrateNx migrates the fixture and builds it: the services' bundles
// and specs in Nx's dist/ places, metadata.gen.ts in the constructs'
// sources, and the ES module CDK app synthesized with the real aws-cdk-lib,
// its constructs finding the bundles relative to their sources. A dry run
// writes nothing, and an existing BUILD.star is kept unless --force.
func TestMigrateNx(t *testing.T) {
	t.Parallel()
	requirePython(t)
	nm := testenv.CDKNodeModules(t)
	ws := copyWorkspace(t, nxFixture)
	before := genSnapshot(t, ws)
	stdout, stderr, code := runPipe(t, ws, "migrate", "nx", "--dry-run")
	if code != 0 {
		t.Fatalf("migrate nx --dry-run: exit %d\n%s%s", code, stdout, stderr)
	}
	if after := genSnapshot(t, ws); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("--dry-run wrote files")
	}
	for _, want := range []string{
		"Nx workspace " + ws.Root + ": 8 projects",
		"would create  WORKSPACE.star",
		"would create  packages/infra/BUILD.star",
		"--- packages/orders_api/BUILD.star\n",
		"acme.orders_api:bundle-x86",
		"//packages/orders_api:bundle-x86",
		// Edge cases: an executor pipe does not know, a project nested in
		// another's directory, projects without targets.
		"@acme/tools              gen-docs     @acme/workspace-plugin:docs  executor @acme/workspace-plugin:docs is not one pipe translates",
		"acme.orders_api-e2e      e2e          @nx/playwright:playwright",
		"@acme/docs               -            -                            no targets and no TypeScript sources",
		"packages/common/types (@acme/common-types) has no targets: its BUILD.star is a filegroup",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("migrate nx --dry-run does not say %q:\n%s", want, stdout)
		}
	}

	// What uv sync and npm install leave in a checkout of the workspace.
	if err := os.MkdirAll(ws.path(".venv/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(debianPython, ws.path(".venv/bin/python")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(nm, ws.path("node_modules")); err != nil {
		t.Fatal(err)
	}
	tiny := tinyWheel(t)
	wheels := debianWheels(t)
	requirePyenv(t, "3.11")
	mirror := newWheelMirror(t)
	mirror.serve(tiny, tiny.Data)
	for _, w := range wheels {
		mirror.serve(w, w.Data)
	}
	ws.write(t, "uv.lock", nxLock(tiny, wheels))
	// Debian's FastAPI is built for this machine's Python 3.11.
	for _, f := range []string{"packages/orders_api/pyproject.toml", "packages/billing_api/pyproject.toml"} {
		ws.write(t, f, strings.ReplaceAll(ws.read(t, f), ">=3.12", ">=3.11"))
	}
	ws.write(t, ".python-version", "3.11\n")
	env := []string{"PIPE_PYTHON_INDEX=" + mirror.srv.URL}

	stdout, stderr, code = runPipe(t, ws, "migrate", "nx")
	if code != 0 {
		t.Fatalf("migrate nx: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, f := range []string{"WORKSPACE.star", "packages/orders_api/BUILD.star", "packages/billing_api/BUILD.star", "packages/common/constructs/BUILD.star", "packages/common/types/BUILD.star", "packages/infra/BUILD.star"} {
		if !ws.exists(f) {
			t.Errorf("migrate nx did not write %s", f)
		}
	}
	for _, f := range []string{"packages/docs/BUILD.star", "packages/tools/BUILD.star", "packages/orders_api/e2e/BUILD.star"} {
		if ws.exists(f) {
			t.Errorf("migrate nx wrote %s, for a project with nothing to translate", f)
		}
	}

	// The migrated workspace builds, without edits.
	b := ws.buildEnvOK(t, env, "//...")
	meta := ws.read(t, "packages/common/constructs/src/generated/orders-api/metadata.gen.ts")
	if !strings.Contains(meta, "getOrder") || !strings.Contains(meta, "placeOrder") {
		t.Errorf("metadata.gen.ts lacks the orders API's operations:\n%s", meta)
	}
	if got, want := ws.read(t, "dist/packages/orders_api/bundle-x86/run.sh"), ws.read(t, "packages/orders_api/run.sh"); got != want {
		t.Errorf("the bundle's run.sh is not the project's:\n%s", got)
	}
	for _, f := range []string{"dist/packages/orders_api/bundle-x86/tinydep/__init__.py", "dist/packages/billing_api/bundle-arm/acme_billing_api/main.py", "dist/packages/orders_api/openapi/openapi.json"} {
		if !ws.exists(f) {
			t.Errorf("%s was not built (Nx's place for it)", f)
		}
	}
	out := "dist/packages/infra/infra/cdk.out"
	var manifest struct {
		Artifacts map[string]struct {
			Type       string `json:"type"`
			Properties struct {
				DirectoryName string `json:"directoryName"`
			} `json:"properties"`
		} `json:"artifacts"`
	}
	if err := json.Unmarshal([]byte(ws.read(t, out+"/manifest.json")), &manifest); err != nil {
		t.Fatalf("%v\n%s", err, b.stderr)
	}
	stage := ""
	for _, a := range manifest.Artifacts {
		if a.Type == "cdk:cloud-assembly" {
			stage = a.Properties.DirectoryName
		}
	}
	if stage == "" {
		t.Fatalf("the assembly has no stage:\n%s", ws.read(t, out+"/manifest.json"))
	}
	// Stages keep their assets in the top assembly.
	for _, module := range []string{"acme_orders_api", "acme_billing_api"} {
		if assets, _ := filepath.Glob(ws.path(out + "/asset.*/" + module + "/main.py")); len(assets) != 1 {
			t.Errorf("the bundle of %s, found relative to its construct's source, is not staged in the assembly: %v\n%s", module, assets, b.stderr)
		}
	}
	if tmpl := ws.read(t, out+"/"+stage+"/"+filepath.Base(firstGlob(t, ws.path(out+"/"+stage+"/*.template.json")))); !strings.Contains(tmpl, "GET /orders/{order_id}") {
		t.Errorf("the stack's outputs do not list the orders API's operations from metadata.gen.ts:\n%s", tmpl)
	}

	// Again: the BUILD.star files are there, and one was edited.
	ws.write(t, "packages/infra/BUILD.star", ws.read(t, "packages/infra/BUILD.star")+"# mine\n")
	stdout, _, code = runPipe(t, ws, "migrate", "nx")
	if code != 0 || !strings.Contains(stdout, "kept (exists; --force overwrites)  packages/infra/BUILD.star") || !strings.Contains(stdout, "unchanged  packages/orders_api/BUILD.star") {
		t.Errorf("a second migrate nx: exit %d\n%s", code, stdout)
	}
	if !strings.HasSuffix(ws.read(t, "packages/infra/BUILD.star"), "# mine\n") {
		t.Errorf("migrate nx overwrote an edited BUILD.star without --force")
	}
	stdout, _, code = runPipe(t, ws, "migrate", "nx", "--force")
	if code != 0 || !strings.Contains(stdout, "overwritten  packages/infra/BUILD.star") || strings.HasSuffix(ws.read(t, "packages/infra/BUILD.star"), "# mine\n") {
		t.Errorf("migrate nx --force: exit %d\n%s", code, stdout)
	}
}

func firstGlob(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) == 0 {
		t.Fatalf("nothing matches %s", pattern)
	}
	return m[0]
}

// TestMigrateNxNotNx: a directory without nx.json is a usage error.
func TestMigrateNxNotNx(t *testing.T) {
	t.Parallel()
	ws := newWorkspace(t, nil)
	_, stderr, code := runPipe(t, ws, "migrate", "nx")
	if code != 2 || !strings.Contains(stderr, "no nx.json in "+ws.Root) {
		t.Errorf("exit %d\n%s", code, stderr)
	}
}
