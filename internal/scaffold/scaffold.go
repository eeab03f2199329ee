// Package scaffold generates the files of new projects in a pipe
// workspace: `pipe new fastapi` writes a FastAPI service, the CDK construct
// of its API and the infra app that deploys it.
//
// Generation is idempotent and never loses a user's edit. A file is
// written only when it is absent, or when its content is exactly what the
// generator would have written before (for any options of this service,
// by this release or an earlier one, whose differing templates are kept
// under templates/v1/...), so it was not edited; otherwise it is kept and
// reported as edited.
// Files that list every service (the constructs' and the infra app's
// BUILD.star, the infra app's main.ts, the uv workspace's members) are
// rewritten with the new service only when they are exactly a rendering of
// the services they list; when edited they are kept and the lines to add
// by hand are reported. .gitignore and an existing uv workspace root are
// only ever appended to.
package scaffold

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/webadapter"
)

// Where the shared CDK packages live, as the Nx generator lays them out.
const (
	ConstructsDir = "packages/common/constructs"
	InfraDir      = "packages/infra"
)

// PythonVersion is the Lambda runtime of generated services: their
// fastapi_project's python_version and .python-version.
const PythonVersion = "3.12"

// FirstPort is the port `pipe run :serve` serves the first generated
// service on; each next service takes the next free one.
const FirstPort = 8000

// Option values, the first of each the default.
var (
	ComputeTypes        = []string{"rest", "http", "function-url"}
	AuthTypes           = []string{"iam", "cognito", "none"}
	IntegrationPatterns = []string{"isolated", "shared"}
)

// FastAPIOptions are the options of `pipe new fastapi`.
type FastAPIOptions struct {
	Name string
	// Directory holds the service's directory, relative to the workspace
	// root (default "packages").
	Directory string
	// Module is the Python module (default: Name with - → _).
	Module             string
	ComputeType        string // rest (default), http or function-url
	Auth               string // iam (default), cognito or none
	IntegrationPattern string // isolated (default) or shared
	// IaC is the infrastructure code: cdk (default) or terraform.
	IaC string
}

// FunctionURL is the compute type that puts the app behind a Lambda
// function URL instead of API Gateway.
const FunctionURL = "function-url"

// validCombination says why options cannot go together, "" when they can.
// A function URL is one function, so the app is its own router (the
// shared pattern), and it authorizes callers with IAM or not at all.
func validCombination(compute, auth, pattern string) string {
	if compute != FunctionURL {
		return ""
	}
	switch {
	case auth == "cognito":
		return "--compute-type function-url authorizes with --auth iam or none; for Cognito use --compute-type rest or http"
	case pattern == "isolated":
		return "--compute-type function-url is one function serving every route: use --integration-pattern shared (its default)"
	}
	return ""
}

// Status says what generation did to a file.
type Status string

const (
	Created   Status = "created"
	Updated   Status = "updated"
	Unchanged Status = "unchanged"
	Kept      Status = "kept (edited)"
)

// FileResult is one file's outcome. ByHand, for a kept file, is what the
// user must add to it for the new service to be wired in.
type FileResult struct {
	Path   string // workspace-relative, slash-separated
	Status Status
	ByHand string
}

// Result is what FastAPI did.
type Result struct {
	Service string         // the service's package path, e.g. packages/my-api
	Options FastAPIOptions // with the defaults filled in
	Port    int            // the port pipe run :serve serves it on
	Files   []FileResult
}

// Kept lists the files that were left alone because they were edited.
func (r *Result) Kept() []FileResult {
	var out []FileResult
	for _, f := range r.Files {
		if f.Status == Kept {
			out = append(out, f)
		}
	}
	return out
}

// usagef is an error in the options or the workspace's state that the
// user must fix: pipe exits 2 on it.
func usagef(format string, args ...any) error {
	return engine.Usagef(format, args...)
}

// normalize fills in defaults and checks every option.
func (o *FastAPIOptions) normalize() error {
	if err := ValidateName(o.Name); err != nil {
		return usagef("%v", err)
	}
	from := fmt.Sprintf("service name %q", o.Name)
	if o.Module == "" {
		o.Module = ModuleFor(o.Name)
	} else {
		from = "--module-name"
	}
	if err := ValidateModule(o.Module, from); err != nil {
		return usagef("%v", err)
	}
	for _, c := range []struct {
		flag   string
		v      *string
		values []string
	}{
		{"--compute-type", &o.ComputeType, ComputeTypes},
		{"--auth", &o.Auth, AuthTypes},
		{"--integration-pattern", &o.IntegrationPattern, IntegrationPatterns},
		{"--iac", &o.IaC, IaCProviders},
	} {
		if *c.v == "" && c.flag == "--integration-pattern" && o.ComputeType == FunctionURL {
			*c.v = "shared"
		}
		if *c.v == "" {
			*c.v = c.values[0]
		}
		if !slices.Contains(c.values, *c.v) {
			return usagef("%s %q: want one of %s", c.flag, *c.v, strings.Join(c.values, ", "))
		}
	}
	if why := validCombination(o.ComputeType, o.Auth, o.IntegrationPattern); why != "" {
		return usagef("%s", why)
	}
	if o.IaC == IaCTerraform && !slices.Contains(terraformComputeTypes, o.ComputeType) {
		return usagef("--compute-type %s has no Terraform modules yet: use --iac cdk, or --compute-type %s", o.ComputeType, strings.Join(terraformComputeTypes, " or "))
	}
	dir, err := cleanDirectory(o.Directory)
	if err != nil {
		return err
	}
	o.Directory = dir
	return nil
}

// cleanDirectory checks --parent-dir: a path inside the workspace where
// sources may live.
func cleanDirectory(d string) (string, error) {
	if d == "" {
		return "packages", nil
	}
	slash := filepath.ToSlash(d)
	if path.IsAbs(slash) || filepath.IsAbs(d) {
		return "", usagef("--parent-dir %s: give a path relative to the workspace root, like packages", d)
	}
	c := path.Clean(slash)
	if c == "." {
		return "", usagef("--parent-dir %s: services go in a sub-directory, like packages", d)
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", usagef("--parent-dir %s leaves the workspace", d)
	}
	for _, part := range strings.Split(c, "/") {
		if strings.HasPrefix(part, ".") || part == "node_modules" || part == "__pycache__" {
			return "", usagef("--parent-dir %s: pipe does not look for packages in %s", d, part)
		}
	}
	if first, _, _ := strings.Cut(c, "/"); first == "dist" {
		return "", usagef("--parent-dir %s: dist/ holds pipe's outputs", d)
	}
	return c, nil
}

// service is what the per-service templates see.
type service struct {
	Name, Module, Pascal string
	Dir                  string // the service's package path
	Compute, Auth        string
	Shared               bool
	PythonVersion        string
	IaC                  string // cdk or terraform
	Port                 int    // :serve's port
	Pins                 pins
}

// InfraDir and ConstructsDir let per-service templates name the shared
// packages.
func (service) InfraDir() string      { return InfraDir }
func (service) ConstructsDir() string { return ConstructsDir }

// OneLineConstructor says whether the API construct's constructor
// signature fits in 80 columns, where prettier keeps it on one line.
func (s service) OneLineConstructor() bool {
	return len("  constructor(scope: Construct, id: string, props: "+s.Pascal+"Props<TIntegrations>) {") <= 80
}

// Runtime is the aws-lambda Runtime member of PythonVersion, which the
// first release's templates name directly.
func (s service) Runtime() string {
	return "PYTHON_" + strings.ReplaceAll(s.PythonVersion, ".", "_")
}

// OneLineURLConstructor is OneLineConstructor for the function URL
// construct.
func (s service) OneLineURLConstructor() bool {
	return len("  constructor(scope: Construct, id: string, props: "+s.Pascal+"Props = {}) {") <= 80
}

func newService(o FastAPIOptions) service {
	return service{
		Name:          o.Name,
		Module:        o.Module,
		Pascal:        PascalCase(o.Name),
		Dir:           path.Join(o.Directory, o.Name),
		Compute:       o.ComputeType,
		Auth:          o.Auth,
		Shared:        o.IntegrationPattern == "shared",
		PythonVersion: PythonVersion,
		IaC:           o.IaC,
		Port:          FirstPort,
	}
}

// planned is one file generation wants in a given state.
type planned struct {
	path string
	mode fs.FileMode
	// want is the content to write.
	want []byte
	// previous are contents an earlier run may have left: a file holding
	// one of them was not edited and may be replaced.
	previous [][]byte
	// merge, for files shared between services, decides from the file's
	// current content (nil when absent).
	merge func(current []byte) (merged []byte, status Status, byHand string, err error)
}

// FastAPI generates a FastAPI service into the workspace at root.
func FastAPI(root string, opts FastAPIOptions) (*Result, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	svc := newService(opts)
	if err := checkServiceDir(root, svc); err != nil {
		return nil, err
	}
	port, err := servePort(root, svc)
	if err != nil {
		return nil, err
	}
	svc.Port = port
	if svc.Pins, err = readPins(root); err != nil {
		return nil, err
	}
	files, err := plan(root, svc)
	if err != nil {
		return nil, err
	}
	// Every decision is made before anything is written, so a conflict
	// found late leaves the workspace as it was.
	type decision struct {
		p       planned
		content []byte
		res     FileResult
	}
	var decisions []decision
	for _, p := range files {
		current, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p.path)))
		if errors.Is(err, fs.ErrNotExist) {
			current = nil
		} else if err != nil {
			return nil, err
		}
		d := decision{p: p, res: FileResult{Path: p.path}}
		switch {
		case p.merge != nil:
			merged, status, byHand, err := p.merge(current)
			if err != nil {
				return nil, err
			}
			d.content, d.res.Status, d.res.ByHand = merged, status, byHand
		case current == nil:
			d.content, d.res.Status = p.want, Created
		case bytes.Equal(current, p.want):
			d.res.Status = Unchanged
		case isPrevious(current, p.previous):
			d.content, d.res.Status = p.want, Updated
		default:
			d.res.Status = Kept
		}
		decisions = append(decisions, d)
	}
	res := &Result{Service: svc.Dir, Options: opts, Port: svc.Port}
	for _, d := range decisions {
		if d.res.Status == Created || d.res.Status == Updated {
			if err := writeFile(root, d.p.path, d.content, d.p.mode); err != nil {
				return res, err
			}
		}
		res.Files = append(res.Files, d.res)
	}
	return res, nil
}

func isPrevious(current []byte, previous [][]byte) bool {
	for _, p := range previous {
		if bytes.Equal(current, p) {
			return true
		}
	}
	return false
}

func writeFile(root, rel string, content []byte, mode fs.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	// Atomic, so an interrupted run leaves each file whole, old or new.
	return files.WriteAtomic(filepath.Join(root, filepath.FromSlash(rel)), content, mode)
}

// checkServiceDir refuses a service directory that holds anything but an
// earlier generation of this service.
func checkServiceDir(root string, svc service) error {
	dir := filepath.Join(root, filepath.FromSlash(svc.Dir))
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return usagef("%s exists and is not a directory: choose another name or --parent-dir", svc.Dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	// An earlier run, even with BUILD.star or pyproject.toml deleted:
	// regenerate what was not edited.
	named := []byte(fmt.Sprintf("name = %q", svc.Name))
	build, _ := os.ReadFile(filepath.Join(dir, engine.BuildFile))
	if bytes.Contains(build, []byte("fastapi_project(")) && bytes.Contains(build, named) {
		return nil
	}
	if pyproject, _ := os.ReadFile(filepath.Join(dir, "pyproject.toml")); bytes.Contains(pyproject, named) {
		return nil
	}
	return usagef("%s exists and is not empty, and is not a service pipe new fastapi generated "+
		"(no %s with fastapi_project(name = %q)): choose another name or --parent-dir", svc.Dir, engine.BuildFile, svc.Name)
}

// plan lists every file of the service, in the order they are reported.
func plan(root string, svc service) ([]planned, error) {
	var files []planned
	// One rendering per combination of options: any of them is what an
	// earlier run may have written.
	variants := func(tmpl string) ([]byte, [][]byte, error) {
		want, err := render(tmpl, svc)
		if err != nil {
			return nil, nil, err
		}
		var prev [][]byte
		for _, c := range ComputeTypes {
			for _, a := range AuthTypes {
				for _, p := range IntegrationPatterns {
					v := svc
					v.Compute, v.Auth, v.Shared = c, a, p == "shared"
					b, err := render(tmpl, v)
					if err != nil {
						return nil, nil, err
					}
					prev = append(prev, b)
					earlier, err := previousRenderings(tmpl, v)
					if err != nil {
						return nil, nil, err
					}
					prev = append(prev, earlier...)
				}
			}
		}
		return want, prev, nil
	}
	add := func(rel, tmpl string, mode fs.FileMode) error {
		want, prev, err := variants(tmpl)
		if err != nil {
			return err
		}
		files = append(files, planned{path: rel, mode: mode, want: want, previous: prev})
		return nil
	}
	mod := path.Join(svc.Dir, svc.Module)
	for _, f := range []struct{ rel, tmpl string }{
		{path.Join(svc.Dir, "BUILD.star"), "service/BUILD.star.tmpl"},
		{path.Join(svc.Dir, "pyproject.toml"), "service/pyproject.toml.tmpl"},
		{path.Join(svc.Dir, ".python-version"), "service/python-version.tmpl"},
		{path.Join(mod, "__init__.py"), "service/module/__init__.py.tmpl"},
		{path.Join(mod, "init.py"), "service/module/init.py.tmpl"},
		{path.Join(mod, "main.py"), "service/module/main.py.tmpl"},
		{path.Join(svc.Dir, "tests", "test_main.py"), "service/tests/test_main.py.tmpl"},
	} {
		if err := add(f.rel, f.tmpl, 0o644); err != nil {
			return nil, err
		}
	}
	// run.sh is the bundle's own (python_bundle writes the same one), so
	// the service starts locally exactly as the Web Adapter starts it.
	files = append(files, planned{
		path: path.Join(svc.Dir, "run.sh"), mode: 0o755,
		want: []byte(webadapter.RunScript(svc.Module+".main:app", 8000)),
	})

	files = append(files, planned{path: ".gitignore", merge: mergeGitignore})
	files = append(files, planned{path: "pyproject.toml", merge: func(cur []byte) ([]byte, Status, string, error) {
		return mergeWorkspaceMembers(cur, svc.Dir)
	}})
	if svc.IaC == IaCTerraform {
		tf, err := planTerraform(root, svc)
		return append(files, tf...), err
	}
	pkgJSON, err := render("root/package.json.tmpl", svc)
	if err != nil {
		return nil, err
	}
	files = append(files, planned{path: "package.json", merge: func(cur []byte) ([]byte, Status, string, error) {
		return mergePackageJSON(cur, pkgJSON)
	}})

	entry := stackEntry{Name: svc.Name, Pascal: svc.Pascal, Dir: svc.Dir}
	cdir := ConstructsDir
	for _, f := range []struct{ rel, tmpl string }{
		{path.Join(cdir, "tsconfig.json"), "constructs/tsconfig.json.tmpl"},
		{path.Join(cdir, ".gitignore"), "constructs/gitignore.tmpl"},
		{path.Join(cdir, "src/core/api/utils.ts"), "constructs/src/core/api/utils.ts.tmpl"},
		{path.Join(cdir, "src/core/runtime-config.ts"), "constructs/src/core/runtime-config.ts.tmpl"},
	} {
		if err := add(f.rel, f.tmpl, 0o644); err != nil {
			return nil, err
		}
	}
	// A function URL needs no API Gateway construct.
	if svc.Compute != FunctionURL {
		core := path.Join(cdir, "src/core/api", svc.Compute+"-api.ts")
		if err := add(core, "constructs/src/core/api/"+svc.Compute+"-api.ts.tmpl", 0o644); err != nil {
			return nil, err
		}
	}
	if err := add(path.Join(cdir, "src/app/apis", svc.Name+".ts"), "constructs/src/app/apis/"+svc.Compute+"-api.ts.tmpl", 0o644); err != nil {
		return nil, err
	}
	// The API's file is any compute type's template: an earlier run may
	// have used another.
	apiFile := &files[len(files)-1]
	for _, other := range ComputeTypes {
		if other == svc.Compute {
			continue
		}
		_, prev, err := variants("constructs/src/app/apis/" + other + "-api.ts.tmpl")
		if err != nil {
			return nil, err
		}
		apiFile.previous = append(apiFile.previous, prev...)
	}
	files = append(files, registryFile(path.Join(cdir, "BUILD.star"), constructsBuild, entry))

	for _, f := range []struct{ rel, tmpl string }{
		{path.Join(InfraDir, "tsconfig.json"), "infra/tsconfig.json.tmpl"},
		{path.Join(InfraDir, "cdk.json"), "infra/cdk.json.tmpl"},
		{path.Join(InfraDir, "src/stacks", svc.Name+"-stack.ts"), "infra/src/stacks/stack.ts.tmpl"},
	} {
		if err := add(f.rel, f.tmpl, 0o644); err != nil {
			return nil, err
		}
	}
	files = append(files, registryFile(path.Join(InfraDir, "BUILD.star"), infraBuild, entry))
	files = append(files, registryFile(path.Join(InfraDir, "src/main.ts"), infraMain, entry))
	if err := checkClassNames(root, svc); err != nil {
		return nil, err
	}
	return files, nil
}

// checkClassNames refuses a service whose CDK class names would be those
// of another generated service (my-api and my_api are both MyApi).
func checkClassNames(root string, svc service) error {
	ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(ConstructsDir), "src", "app", "apis"))
	if err != nil {
		return nil
	}
	for _, e := range ents {
		other, ok := strings.CutSuffix(e.Name(), ".ts")
		if !ok || other == svc.Name {
			continue
		}
		if PascalCase(other) == svc.Pascal {
			return usagef("service %q would share the CDK class name %s with the existing %s/src/app/apis/%s: choose another name",
				svc.Name, svc.Pascal, ConstructsDir, e.Name())
		}
	}
	return nil
}
