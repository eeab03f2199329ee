package python

import (
	"context"
	"path"
	"sort"

	"github.com/pipebuild/pipe/internal/engine"
)

// OpenAPISchema writes app.openapi() of a FastAPI app as JSON.
var OpenAPISchema = &engine.Rule{
	Name:    "openapi_schema",
	Version: "1",
	Doc:     "Imports a FastAPI app with the host Python and writes app.openapi() to dist/<pkg>/<name>/openapi.json.",
	Attrs: []engine.Attr{
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's Python sources"},
		{Name: "app", Type: engine.AttrString, Required: true, Doc: `the app object, "module.path:attribute"`},
		{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace packages the app imports; their packages go on PYTHONPATH"},
		{Name: "python_path", Type: engine.AttrStringList, Doc: "package-relative directories to put on PYTHONPATH (default: the package directory)"},
	},
	Analyze: analyzeOpenAPI,
}

// openapiScript imports the app and dumps its schema. Keys keep FastAPI's
// order (it is deterministic); indentation makes diffs readable.
const openapiScript = `
import importlib, json, sys
target, out = sys.argv[1], sys.argv[2]
module, _, attr = target.partition(":")
app = importlib.import_module(module)
for part in (attr or "app").split("."):
    app = getattr(app, part)
spec = app.openapi()
with open(out, "w", encoding="utf-8") as f:
    json.dump(spec, f, indent=2, ensure_ascii=False)
    f.write("\n")
`

func analyzeOpenAPI(ctx *engine.AnalysisContext) error {
	ws := ctx.Workspace()
	interp, err := hostInterpreter(ctx)
	if err != nil {
		return ctx.Errorf("%v", err)
	}
	srcs := ctx.Files("srcs")
	deps := ctx.Files("deps")
	out := ctx.Declare("openapi.json")
	pkg := ctx.Label().Pkg
	pyPath := pythonPath(pkg, ctx.Strings("python_path"), ctx.Labels("deps"))
	ctx.AddAction(&engine.Action{
		Mnemonic:    "OpenAPI",
		Description: "Generating OpenAPI schema " + ctx.Label().String(),
		Inputs:      append(append([]*engine.File(nil), srcs...), deps...),
		Outputs:     []*engine.File{out},
		Argv:        []string{interp.Path, "-B", "-c", openapiScript, ctx.String("app"), out.Path},
		Env: map[string]string{
			"PATH":                    ws.Settings.Path,
			"PYTHONPATH":              pyPath,
			"PYTHONHASHSEED":          "0",
			"PYTHONDONTWRITEBYTECODE": "1",
			"PYTHONNOUSERSITE":        "1",
		},
		Tools:   []string{interp.Identity},
		Sandbox: true,
	})
	ctx.Provide(out)
	return nil
}

// pythonPath joins the import roots, relative to the action's scratch
// directory (which mirrors the workspace): the package itself (or the
// directories python_path names) and the package of every dep.
func pythonPath(pkg string, dirs []string, deps []engine.Label) string {
	var roots []string
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" {
			p = "."
		}
		if !seen[p] {
			seen[p] = true
			roots = append(roots, p)
		}
	}
	if len(dirs) == 0 {
		add(pkg)
	}
	for _, d := range dirs {
		add(path.Join(pkg, d))
	}
	var depPkgs []string
	for _, l := range deps {
		depPkgs = append(depPkgs, l.Pkg)
	}
	sort.Strings(depPkgs)
	for _, p := range depPkgs {
		add(p)
	}
	s := ""
	for i, r := range roots {
		if i > 0 {
			s += ":"
		}
		s += r
	}
	return s
}

// hostInterpreter finds and identifies the workspace's interpreter once per
// command, under the analysis context: the probe runs a process.
func hostInterpreter(ctx *engine.AnalysisContext) (*Interpreter, error) {
	ws := ctx.Workspace()
	v, err := ctx.Probe("python-interpreter", func(c context.Context) (any, error) {
		p, err := FindInterpreter(ws)
		if err != nil {
			return nil, err
		}
		return LoadInterpreter(c, ws, p)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Interpreter), nil
}
