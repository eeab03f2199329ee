package python

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
)

// FastAPIServe is a runnable target: `pipe run //pkg:serve` starts uvicorn
// with --reload on the app, serving /docs, /redoc and /openapi.json.
var FastAPIServe = &engine.Rule{
	Name:    "fastapi_serve",
	Version: "1",
	Doc:     "Runs the app locally with uvicorn --reload (pipe run).",
	Attrs: []engine.Attr{
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's sources"},
		{Name: "app", Type: engine.AttrString, Required: true, Doc: `"module.path:attribute"`},
		{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace packages the app imports"},
		{Name: "port", Type: engine.AttrInt, Default: int64(8000)},
		{Name: "host", Type: engine.AttrString, Default: "127.0.0.1"},
		{Name: "python_path", Type: engine.AttrStringList},
	},
	Analyze: func(ctx *engine.AnalysisContext) error {
		ws := ctx.Workspace()
		interp, err := hostInterpreter(ctx)
		if err != nil {
			return ctx.Errorf("%v", err)
		}
		pkg := ctx.Label().Pkg
		// Absolute import roots: the program runs in the source tree, so
		// --reload sees edits as they are saved.
		var roots []string
		for _, r := range strings.Split(pythonPath(pkg, ctx.Strings("python_path"), ctx.Labels("deps")), ":") {
			roots = append(roots, filepath.Join(ws.Root, filepath.FromSlash(r)))
		}
		env := map[string]string{"PYTHONPATH": strings.Join(roots, string(os.PathListSeparator))}
		var reloadDirs []string
		for _, r := range roots {
			reloadDirs = append(reloadDirs, "--reload-dir", r)
		}
		argv := []string{interp.Path, "-m", "uvicorn", ctx.String("app"),
			"--reload", "--host", ctx.String("host"), "--port", strconv.FormatInt(ctx.Int("port"), 10)}
		ctx.SetRunnable(&engine.Runnable{Argv: append(argv, reloadDirs...), Env: env, Dir: pkg})
		return nil
	},
}
