package python

import (
	"context"
	"fmt"
	"path"
	"strconv"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

// FastAPIServe is a runnable target: `pipe run //pkg:serve` starts uvicorn
// with --reload on the app, serving /docs, /redoc and /openapi.json, on the
// locked environment.
var FastAPIServe = &engine.Rule{
	Name:    "fastapi_serve",
	Version: "2",
	Doc:     "Runs the app locally with uvicorn --reload (pipe run), on the locked environment.",
	Attrs: withEnvAttrs(
		engine.Attr{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's sources"},
		engine.Attr{Name: "app", Type: engine.AttrString, Required: true, Doc: `"module.path:attribute"`},
		engine.Attr{Name: "deps", Type: engine.AttrLabelList, Doc: "sources of workspace packages the app imports"},
		engine.Attr{Name: "port", Type: engine.AttrInt, Default: int64(8000)},
		engine.Attr{Name: "host", Type: engine.AttrString, Default: "127.0.0.1"},
		engine.Attr{Name: "python_path", Type: engine.AttrStringList},
	),
	Analyze: func(ctx *engine.AnalysisContext) error {
		pt, err := analyzePython(ctx, envOptions{})
		if err != nil {
			return err
		}
		ws := ctx.Workspace()
		pkg := ctx.Label().Pkg
		label := ctx.Label()
		// Absolute import roots: the program runs in the source tree, so
		// --reload sees edits as they are saved.
		roots := under(ws.Root, importRoots(pkg, ctx.Strings("python_path"), ctx.Labels("deps")))
		port := strconv.FormatInt(ctx.Int("port"), 10)
		args := []string{ctx.String("app"), "--reload", "--host", ctx.String("host"), "--port", port}
		// Each service has its own port (pipe new gives each the next
		// free one), so say which before uvicorn's own start-up lines.
		banner := fmt.Sprintf("%s: serving %s on http://%s:%s (docs at /docs); port = in %s changes it",
			label, ctx.String("app"), ctx.String("host"), port, path.Join(pkg, engine.BuildFile))
		for _, r := range roots {
			args = append(args, "--reload-dir", r)
		}
		ctx.SetRunnable(&engine.Runnable{
			Dir: pkg,
			Prepare: func(c context.Context, cc *cache.Cache, info func(string)) (*engine.Runnable, error) {
				if err := pt.needs(label, "uvicorn", ""); err != nil {
					return nil, err
				}
				python, envDir, err := pt.ready(c, cc, nil)
				if err != nil {
					return nil, err
				}
				info("python: " + pt.runsOn(python, cc))
				return &engine.Runnable{
					Argv:   pythonArgv(python, envDir, roots, pyProgram{Module: "uvicorn", Args: args}),
					Env:    map[string]string{"PYTHONNOUSERSITE": "1"},
					Dir:    pkg,
					Banner: banner,
				}, nil
			},
		})
		return nil
	},
}
