package python

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/pipebuild/pipe/internal/engine"
)

// OpenAPISchema writes app.openapi() of a FastAPI app as JSON.
var OpenAPISchema = &engine.Rule{
	Name:    "openapi_schema",
	Version: "2",
	Doc:     "Imports a FastAPI app on the locked environment and writes app.openapi() to dist/<pkg>/<name>/openapi.json.",
	Attrs: withEnvAttrs(
		engine.Attr{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's Python sources"},
		engine.Attr{Name: "app", Type: engine.AttrString, Required: true, Doc: `the app object, "module.path:attribute"`},
		engine.Attr{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace packages the app imports; their packages go on sys.path"},
		engine.Attr{Name: "python_path", Type: engine.AttrStringList, Doc: "package-relative directories to put on sys.path (default: the package directory)"},
	),
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
	pt, err := analyzePython(ctx, envOptions{})
	if err != nil {
		return err
	}
	ws := ctx.Workspace()
	srcs := ctx.Files("srcs")
	deps := ctx.Files("deps")
	out := ctx.Declare("openapi.json")
	roots := importRoots(ctx.Label().Pkg, ctx.Strings("python_path"), ctx.Labels("deps"))
	app := ctx.String("app")
	ctx.AddAction(&engine.Action{
		Mnemonic:    "OpenAPI",
		Description: "Generating OpenAPI schema " + ctx.Label().String(),
		Inputs:      append(append([]*engine.File(nil), srcs...), deps...),
		Outputs:     []*engine.File{out},
		Identity:    fmt.Sprintf("openapi app=%s roots=%q %s", app, roots, pt.env.Identity()),
		Tools:       []string{pt.tool()},
		Sandbox:     true,
		Run: func(c context.Context, ec *engine.ExecContext) error {
			python, envDir, err := pt.ready(c, ec.Cache(), ec.Progress)
			if err != nil {
				return err
			}
			abs := under(ec.Dir, roots)
			argv := pythonArgv(python, envDir, abs, pyProgram{Script: openapiScript, Args: []string{app, ec.Output(out)}})
			err = ec.Run(c, engine.Command{Argv: argv, Env: pythonEnv(ws, envDir, abs), Confinement: confinement(python, envDir)})
			var ce *engine.CommandError
			if errors.As(err, &ce) {
				return fmt.Errorf("importing %s failed (%v) on %s", app, ce, pt.runsOn(python, ec.Cache()))
			}
			return err
		},
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
