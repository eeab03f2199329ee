// Package apimeta holds api_metadata, which turns an OpenAPI document into
// the TypeScript operation table that CDK and client code import.
package apimeta

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/python"
)

// Register adds api_metadata to reg.
func Register(reg *engine.Registry) {
	reg.Register(Rule)
}

// distName is the file's name under dist/<pkg>/<name>/: fixed, so tools
// that read dist/ need not know the rule's out attribute.
const distName = "metadata.gen.ts"

// Rule is api_metadata.
var Rule = &engine.Rule{
	Name:    "api_metadata",
	Version: "2",
	Doc: "Generates a TypeScript module exporting OPERATION_DETAILS (operation name → { path, method }) " +
		"and the Operations type from an OpenAPI 3.x JSON document. The file is written at out in the " +
		"source tree, which pipe owns (add it to .gitignore), and as dist/<pkg>/<name>/" + distName + ". " +
		"With runtime, also " + runtimeName + " beside out: the Python version and architecture of that python_bundle, " +
		"so the CDK constructs take them from the service's BUILD.star.",
	Attrs: []engine.Attr{
		{Name: "spec", Type: engine.AttrLabel, Required: true, Doc: "a .json file, or a target providing exactly one .json file, such as an openapi_schema target"},
		{Name: "out", Type: engine.AttrString, Required: true, Doc: "where to write the module in the source tree, relative to the package; must end in .ts"},
		{Name: "runtime", Type: engine.AttrLabel, Doc: "a python_bundle target (fastapi_project's :bundle): write " + runtimeName + " beside out with its python_version and architecture"},
	},
	Analyze: analyze,
}

func analyze(ctx *engine.AnalysisContext) error {
	spec, err := specFile(ctx)
	if err != nil {
		return err
	}
	out := ctx.String("out")
	if err := checkOut(ctx, out); err != nil {
		return ctx.Errorf("api_metadata: out %q %v", out, err)
	}
	src := ctx.DeclareAt(path.Join(ctx.Label().Pkg, out))
	dist := ctx.Declare(distName)
	ctx.AddAction(&engine.Action{
		Mnemonic:    "ApiMetadata",
		Description: fmt.Sprintf("Generating %s from %s", src.Path, spec.Path),
		Inputs:      []*engine.File{spec},
		Outputs:     []*engine.File{src, dist},
		Identity:    "apimeta.Generate v" + GeneratorVersion,
		Run: func(_ context.Context, ec *engine.ExecContext) error {
			b, err := os.ReadFile(ec.Input(spec))
			if err != nil {
				return err
			}
			// The workspace-relative path, not ec.Input's absolute one, so
			// the bytes are the same in every checkout and cache hits hold.
			gen, err := Generate(b, spec.Path)
			if err != nil {
				return err
			}
			for _, o := range []*engine.File{src, dist} {
				if err := os.WriteFile(ec.Output(o), gen, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	})
	provided := []*engine.File{src, dist}
	if labels := ctx.Labels("runtime"); len(labels) == 1 {
		f, err := runtimeModule(ctx, labels[0], path.Join(path.Dir(out), runtimeName))
		if err != nil {
			return err
		}
		provided = append(provided, f)
	}
	ctx.Provide(provided...)
	return nil
}

// runtimeName is the module the runtime attribute writes.
const runtimeName = "runtime.gen.ts"

// runtimeModule declares the action writing out (package-relative) from
// the platform the python_bundle named by bundle builds for. Only the
// platform is read, so the bundle itself need not be built first.
func runtimeModule(ctx *engine.AnalysisContext, bundle engine.Label, out string) (*engine.File, error) {
	info, ok := engine.InfoOf(ctx, bundle, python.BundleKey)
	if !ok || info.Plan == nil {
		return nil, ctx.Errorf("api_metadata: runtime %s is not a python_bundle target; name the service's :bundle (fastapi_project declares it)", bundle)
	}
	rt := Runtime{PythonVersion: info.Plan.Platform.PythonVersion, Architecture: info.Plan.Platform.Arch}
	f := ctx.DeclareAt(path.Join(ctx.Label().Pkg, out))
	from := bundle.String()
	ctx.AddAction(&engine.Action{
		Mnemonic:    "ApiRuntime",
		Description: fmt.Sprintf("Generating %s from %s", f.Path, from),
		Outputs:     []*engine.File{f},
		Identity:    fmt.Sprintf("apimeta.GenerateRuntime v%s %s %s %s", GeneratorVersion, from, rt.PythonVersion, rt.Architecture),
		Run: func(_ context.Context, ec *engine.ExecContext) error {
			return os.WriteFile(ec.Output(f), GenerateRuntime(rt, from), 0o644)
		},
	})
	return f, nil
}

// specFile picks the one .json file the spec attribute provides: a target
// such as openapi_schema may provide other files beside its document.
func specFile(ctx *engine.AnalysisContext) (*engine.File, error) {
	labels := ctx.Labels("spec")
	if len(labels) == 0 {
		return nil, ctx.Errorf("api_metadata: spec is empty; name the OpenAPI document or the target that writes it")
	}
	label := labels[0]
	all := ctx.Files("spec")
	var jsons []*engine.File
	var names []string
	for _, f := range all {
		names = append(names, f.Path)
		if !f.Dir && strings.HasSuffix(strings.ToLower(f.Path), ".json") {
			jsons = append(jsons, f)
		}
	}
	switch {
	case len(jsons) == 1:
		return jsons[0], nil
	case len(all) == 0:
		return nil, ctx.Errorf("api_metadata: spec %s provides no files; it must provide one .json OpenAPI document", label)
	case len(jsons) == 0:
		return nil, ctx.Errorf("api_metadata: spec %s provides no .json file (it provides %s); it must provide one OpenAPI document", label, strings.Join(names, ", "))
	}
	var js []string
	for _, f := range jsons {
		js = append(js, f.Path)
	}
	return nil, ctx.Errorf("api_metadata: spec %s provides %d .json files (%s); point spec at a file or a target that provides exactly one", label, len(jsons), strings.Join(js, ", "))
}

// checkOut keeps out inside the package's own source files: pipe deletes
// and rewrites it, so it must not land in dist/, .pipe/, another package,
// or outside the workspace.
func checkOut(ctx *engine.AnalysisContext, out string) error {
	switch {
	case out == "":
		return fmt.Errorf("is empty; name the .ts file to write, relative to the package")
	case strings.Contains(out, `\`):
		return fmt.Errorf("holds a backslash; write paths with /")
	case path.IsAbs(out):
		return fmt.Errorf("is absolute; write it relative to the package")
	case path.Clean(out) != out:
		return fmt.Errorf("is not a clean path (did you mean %q?)", path.Clean(out))
	case out == ".." || strings.HasPrefix(out, "../"):
		return fmt.Errorf("leaves the package")
	case !strings.HasSuffix(out, ".ts") || path.Base(out) == ".ts":
		return fmt.Errorf("must name a .ts file")
	}
	pkg := ctx.Label().Pkg
	ws := path.Join(pkg, out)
	for _, top := range []string{"dist", ".pipe"} {
		if ws == top || strings.HasPrefix(ws, top+"/") {
			return fmt.Errorf("is inside %s/, which pipe manages; pick a path among the package's sources", top)
		}
	}
	for d := path.Dir(out); d != "."; d = path.Dir(d) {
		if sub := path.Join(pkg, d); ctx.FileExists(path.Join(sub, engine.BuildFile)) {
			return fmt.Errorf("is inside package //%s; a target writes only into its own package", sub)
		}
	}
	return nil
}
