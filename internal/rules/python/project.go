package python

import (
	"fmt"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
)

// FastAPIProject is the macro for one FastAPI service: it declares
// :<name> (everything below), :openapi, :bundle and :serve, the targets the
// Nx py#fast-api generator gives a project, and :test and :lint, which
// pipe test runs.
var FastAPIProject = &engine.Macro{
	Name:    "fastapi_project",
	Version: "1",
	Doc:     "A FastAPI service: :<name>, :openapi (openapi_schema), :bundle (python_bundle), :serve (pipe run), :test (py_test over tests/, when there are tests) and :lint (py_lint).",
	Attrs: []engine.Attr{
		{Name: "module", Type: engine.AttrString, Doc: "the app's top-level module (default: name with - → _)"},
		{Name: "app", Type: engine.AttrString, Doc: `the ASGI app (default "<module>.main:app")`},
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "sources (default: glob([\"<module>/**/*.py\"]))"},
		{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace members the app imports"},
		{Name: "python_version", Type: engine.AttrString, Doc: "the Lambda runtime's Python, and the one openapi, serve and tests run (default: .python-version, else requires-python's lowest, else " + DefaultPythonVersion + ")"},
		{Name: "architecture", Type: engine.AttrString, Default: "x86_64", Values: []string{"x86_64", "arm64"}, Aliases: ArchitectureAliases},
		{Name: "port", Type: engine.AttrInt, Default: int64(8000)},
		{Name: "extras", Type: engine.AttrStringList},
		{Name: "lock", Type: engine.AttrLabel},
		{Name: "requirements", Type: engine.AttrLabel, Doc: "a hash-pinned requirements.txt instead of uv.lock"},
		{Name: "python_path", Type: engine.AttrStringList},
		{Name: "run_sh", Type: engine.AttrLabel, Doc: "run.sh for the bundle (default: the package's run.sh if there is one, else generated)"},
		{Name: "lint", Type: engine.AttrBool, Default: true, Doc: "declare :lint (ruff from the lock's dev group)"},
	},
	Expand: expandProject,
}

func expandProject(m *engine.MacroCall) error {
	name := m.String("name")
	module := m.String("module")
	if module == "" {
		module = strings.ReplaceAll(name, "-", "_")
	}
	if !isIdentifier(module) {
		return fmt.Errorf("module %q is not a Python module name; set module = \"...\"", module)
	}
	app := m.String("app")
	if app == "" {
		app = module + ".main:app"
	}
	srcs, _ := m.Attrs["srcs"].([]engine.Label)
	if len(srcs) == 0 {
		pyPath, _ := m.Attrs["python_path"].([]string)
		prefix := ""
		if len(pyPath) > 0 {
			prefix = strings.TrimSuffix(pyPath[0], "/") + "/"
		}
		files, err := m.Glob([]string{prefix + module + "/**/*.py"}, []string{"**/__pycache__/**"})
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no sources: glob([\"%s%s/**/*.py\"]) matched nothing in //%s; create %s%s/main.py or set module or srcs", prefix, module, m.Package, prefix, module)
		}
		for _, f := range files {
			srcs = append(srcs, engine.Label{Pkg: m.Package, Name: f})
		}
	}
	deps, _ := m.Attrs["deps"].([]engine.Label)
	pyPath, _ := m.Attrs["python_path"].([]string)
	tags, _ := m.Attrs["tags"].([]string)
	// What every target that runs Python shares: the interpreter and the
	// lock.
	withEnv := func(attrs map[string]any) map[string]any {
		attrs["python_version"] = m.Attrs["python_version"]
		attrs["extras"] = m.Attrs["extras"]
		for _, attr := range []string{"lock", "requirements"} {
			if l, ok := m.Attrs[attr].(engine.Label); ok && l != (engine.Label{}) {
				attrs[attr] = l
			}
		}
		return attrs
	}
	if err := m.Declare("openapi_schema", withEnv(map[string]any{
		"name": "openapi", "srcs": srcs, "deps": deps, "app": app, "python_path": pyPath, "tags": tags,
	})); err != nil {
		return err
	}
	bundle := map[string]any{
		"name": "bundle", "srcs": srcs, "deps": deps, "module": module, "app": app,
		"python_version": m.Attrs["python_version"], "architecture": m.Attrs["architecture"],
		"port": m.Attrs["port"], "extras": m.Attrs["extras"], "python_path": pyPath, "tags": tags,
	}
	if l, ok := m.Attrs["run_sh"].(engine.Label); ok && l != (engine.Label{}) {
		bundle["run_sh"] = l
	} else if files, err := m.Glob([]string{"run.sh"}, nil); err == nil && len(files) == 1 {
		// A run.sh kept beside BUILD.star (pipe new writes one) is the
		// one users edit, so it is the one the bundle ships.
		bundle["run_sh"] = "run.sh"
	}
	for _, attr := range []string{"lock", "requirements"} {
		if l, ok := m.Attrs[attr].(engine.Label); ok && l != (engine.Label{}) {
			bundle[attr] = l
		}
	}
	if err := m.Declare("python_bundle", bundle); err != nil {
		return err
	}
	if err := m.Declare("fastapi_serve", withEnv(map[string]any{
		"name": "serve", "srcs": srcs, "deps": deps, "app": app, "port": m.Attrs["port"], "python_path": pyPath, "tags": tags,
	})); err != nil {
		return err
	}
	tests, err := m.Glob([]string{"tests/**/*.py", "conftest.py"}, []string{"**/__pycache__/**"})
	if err != nil {
		return err
	}
	if len(tests) > 0 {
		// The tests import the app: its sources are the test's deps.
		testDeps := append(append([]engine.Label(nil), srcs...), deps...)
		var testSrcs []engine.Label
		for _, f := range tests {
			testSrcs = append(testSrcs, engine.Label{Pkg: m.Package, Name: f})
		}
		if err := m.Declare("py_test", withEnv(map[string]any{
			"name": "test", "srcs": testSrcs, "deps": testDeps, "python_path": pyPath, "tags": tags,
		})); err != nil {
			return err
		}
		srcs = append(append([]engine.Label(nil), srcs...), testSrcs...)
	}
	if lint, _ := m.Attrs["lint"].(bool); lint {
		if err := m.Declare("py_lint", withEnv(map[string]any{
			"name": "lint", "srcs": srcs, "tags": tags,
		})); err != nil {
			return err
		}
	}
	return m.Declare("filegroup", map[string]any{
		"name": name, "srcs": []string{":openapi", ":bundle"}, "tags": tags,
	})
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
