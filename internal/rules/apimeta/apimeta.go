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
	Version: "1",
	Doc: "Generates a TypeScript module exporting OPERATION_DETAILS (operation name → { path, method }) " +
		"and the Operations type from an OpenAPI 3.x JSON document. The file is written at out in the " +
		"source tree, which pipe owns (add it to .gitignore), and as dist/<pkg>/<name>/" + distName + ".",
	Attrs: []engine.Attr{
		{Name: "spec", Type: engine.AttrLabel, Required: true, Doc: "a .json file, or a target providing exactly one .json file, such as an openapi_schema target"},
		{Name: "out", Type: engine.AttrString, Required: true, Doc: "where to write the module in the source tree, relative to the package; must end in .ts"},
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
	ctx.Provide(src, dist)
	return nil
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
