package cdk

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/evanw/esbuild/pkg/api"

	"github.com/pipebuild/pipe/internal/engine"
)

// nodeTarget is the oldest node the bundle must run on: the oldest the
// CDK supports.
const nodeTarget = "20"

// esbuildModule is the esbuild release go.mod requires, for binaries built
// without module information (test binaries); TestEsbuildVersion keeps it
// in step with go.mod.
const esbuildModule = "v0.28.2"

var esbuildVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/evanw/esbuild" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return esbuildModule
})

// bundleSpec is what the bundle step needs, fixed at analysis.
type bundleSpec struct {
	root     string // workspace root, absolute
	entry    string // workspace path of the app
	out      *engine.File
	tsconfig string // workspace path, "" for none
	declared map[string]bool
	label    engine.Label
	format   string // formatESM or formatCJS
}

// bundle runs esbuild in-process. The output names paths relative to the
// workspace root, never to the scratch directory, so the same sources give
// the same bytes wherever and whenever they are built.
func (s *bundleSpec) bundle(ec *engine.ExecContext) error {
	// esbuild resolves the sources to their physical paths but takes the
	// working directory and output path as given: all must be physical, or
	// a workspace reached through a symlink gets source paths climbing
	// out of it.
	root, err := filepath.EvalSymlinks(s.root)
	if err != nil {
		return err
	}
	opts := api.BuildOptions{
		EntryPoints:   []string{filepath.Join(root, filepath.FromSlash(s.entry))},
		AbsWorkingDir: root,
		// As if written to dist/: the inline source map's relative source
		// paths then point from dist/<pkg>/<name>/ back to the sources.
		Outfile:  filepath.Join(root, filepath.FromSlash(s.out.Path)),
		Write:    false,
		Bundle:   true,
		Platform: api.PlatformNode,
		Format:   api.FormatCommonJS,
		// Each module's own location, as the app's code asks for it.
		Define:  sourceLocationDefines,
		Banner:  map[string]string{"js": bundleLocationBanner[s.format]},
		Plugins: []api.Plugin{s.sourceLocations(root)},
		Engines: []api.Engine{{Name: api.EngineNode, Version: nodeTarget}},
		// Every bare import (aws-cdk-lib, constructs, whatever else is
		// installed) stays a require() that node resolves from
		// node_modules at synth: the CDK relies on there being exactly one
		// copy of its classes, and the bundle then depends only on the
		// app's own sources.
		Packages:  api.PackagesExternal,
		Sourcemap: api.SourceMapInline,
		Metafile:  true,
		LogLevel:  api.LogLevelSilent,
		// Bundling puts all modules in one scope, where esbuild renames
		// colliding classes; stack traces and messages that print a
		// constructor's name should show the name in the source.
		KeepNames: true,
	}
	if s.format == formatESM {
		opts.Format = api.FormatESModule
	}
	if s.tsconfig != "" {
		opts.Tsconfig = filepath.Join(root, filepath.FromSlash(s.tsconfig))
	} else {
		// Without this esbuild would look for tsconfig.json files in
		// every directory above the sources: inputs nobody declared.
		opts.TsconfigRaw = "{}"
	}
	res := api.Build(opts)
	if len(res.Errors) > 0 {
		for _, m := range res.Errors {
			ec.Stderr.Write([]byte(formatMessage("error", m)))
		}
		first := res.Errors[0]
		msg := first.Text
		if l := first.Location; l != nil {
			msg = fmt.Sprintf("%s:%d:%d: %s", l.File, l.Line, l.Column+1, first.Text)
		}
		if n := len(res.Errors); n > 1 {
			msg += fmt.Sprintf(" (and %d more errors)", n-1)
		}
		return fmt.Errorf("esbuild: %s", msg)
	}
	for _, m := range res.Warnings {
		ec.Stderr.Write([]byte(formatMessage("warning", m)))
	}
	if err := s.checkInputs(res.Metafile); err != nil {
		return err
	}
	if len(res.OutputFiles) != 1 {
		return fmt.Errorf("esbuild wrote %d files, want exactly one", len(res.OutputFiles))
	}
	return os.WriteFile(ec.Output(s.out), res.OutputFiles[0].Contents, 0o644)
}

// sourceLocationShim names how bundled code learns its source location
// (below); it is part of the bundle's key, so a change to it bundles again.
const sourceLocationShim = "srcloc1"

// Bundled into one file, every module would see the bundle's location in
// import.meta.url, __dirname and __filename, and the app's
// new URL('../../dist/...', import.meta.url) would point nowhere. Each
// module that uses them gets its own, computed at run time from where the
// bundle is: the module's source file at its workspace path in the
// directory the app runs in. The bundle's bytes stay the same wherever it
// is built or run.
var sourceLocationDefines = map[string]string{
	"import.meta.url":      "__pipe_import_meta_url",
	"import.meta.filename": "__pipe_filename",
	"import.meta.dirname":  "__pipe_dirname",
	"__filename":           "__pipe_filename",
	"__dirname":            "__pipe_dirname",
}

// bundleLocationBanner gives the bundle its own URL, by module format.
var bundleLocationBanner = map[string]string{
	formatESM: `import { fileURLToPath as __pipe_fileURLToPath } from "node:url"; const __pipe_bundle_url = import.meta.url;`,
	formatCJS: `const __pipe_fileURLToPath = require("node:url").fileURLToPath; const __pipe_bundle_url = require("node:url").pathToFileURL(__filename).href;`,
}

// sourceLocations is the esbuild plugin that declares a module's location
// at its top, for the modules that ask for it (sourceLocationDefines
// renames their uses to these names).
func (s *bundleSpec) sourceLocations(root string) api.Plugin {
	outDir := path.Dir(s.out.Path)
	return api.Plugin{Name: "pipe-source-location", Setup: func(b api.PluginBuild) {
		b.OnLoad(api.OnLoadOptions{Filter: `\.(ts|tsx|mts|cts|js|jsx|mjs|cjs)$`, Namespace: "file"}, func(args api.OnLoadArgs) (api.OnLoadResult, error) {
			src, err := os.ReadFile(args.Path)
			if err != nil {
				return api.OnLoadResult{}, err
			}
			code := string(src)
			if !strings.Contains(code, "import.meta") && !strings.Contains(code, "__dirname") && !strings.Contains(code, "__filename") {
				return api.OnLoadResult{}, nil // esbuild loads it as usual
			}
			rel, err := filepath.Rel(root, args.Path)
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				// Outside the workspace: checkInputs refuses the file.
				return api.OnLoadResult{}, nil
			}
			code = prependToFirstLine(code, locationDecl(outDir, filepath.ToSlash(rel)))
			return api.OnLoadResult{Contents: &code, Loader: loaderFor(args.Path)}, nil
		})
	}}
}

// locationDecl declares the location of the module at workspace path rel
// for a bundle written to outDir: relative to the bundle's URL, so it is
// right in whichever directory the bundle and the sources are laid out.
func locationDecl(outDir, rel string) string {
	up := strings.Repeat("../", strings.Count(outDir, "/")+1)
	var segs []string
	for _, seg := range strings.Split(rel, "/") {
		segs = append(segs, url.PathEscape(seg))
	}
	file := up + strings.Join(segs, "/")
	dir := up + strings.Join(segs[:len(segs)-1], "/") + "/"
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return fmt.Sprintf("var __pipe_import_meta_url = new URL(%s, __pipe_bundle_url).href, __pipe_filename = __pipe_fileURLToPath(__pipe_import_meta_url), __pipe_dirname = __pipe_fileURLToPath(new URL(%s, __pipe_bundle_url)).slice(0, -1);", q(file), q(dir))
}

// prependToFirstLine puts decl before the code on its first line (after a
// #! line), so every other line keeps its number in messages and stack
// traces.
func prependToFirstLine(code, decl string) string {
	if strings.HasPrefix(code, "#!") {
		if i := strings.IndexByte(code, '\n'); i >= 0 {
			return code[:i+1] + decl + code[i+1:]
		}
		return code + "\n" + decl
	}
	return decl + code
}

// loaderFor is esbuild's default loader for a source file's extension.
func loaderFor(p string) api.Loader {
	switch path.Ext(p) {
	case ".ts", ".mts", ".cts":
		return api.LoaderTS
	case ".tsx":
		return api.LoaderTSX
	case ".jsx":
		return api.LoaderJSX
	}
	return api.LoaderJS
}

// formatMessage prints an esbuild message as compilers do, with 1-based
// columns like tsc and node (esbuild's own formatter counts from 0), and
// the source line with a caret under the column.
func formatMessage(kind string, m api.Message) string {
	var b strings.Builder
	loc := func(l *api.Location, text string) {
		if l == nil {
			fmt.Fprintf(&b, "%s\n", text)
			return
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s\n", l.File, l.Line, l.Column+1, text)
		if l.LineText != "" {
			prefix := l.LineText[:min(l.Column, len(l.LineText))]
			fmt.Fprintf(&b, "    %s\n    %s^\n", l.LineText, strings.Repeat(" ", utf8.RuneCountInString(prefix)))
		}
	}
	loc(m.Location, kind+": "+m.Text)
	for _, n := range m.Notes {
		loc(n.Location, "note: "+n.Text)
	}
	return b.String()
}

type metafile struct {
	Inputs map[string]struct {
		Imports []struct {
			Path     string `json:"path"`
			External bool   `json:"external"`
		} `json:"imports"`
	} `json:"inputs"`
}

// checkInputs makes the action hermetic: esbuild read every file it
// bundled from the workspace, and the key covered only the declared ones.
// A file read but not declared would let its edits go unnoticed.
func (s *bundleSpec) checkInputs(meta string) error {
	var m metafile
	if err := json.Unmarshal([]byte(meta), &m); err != nil {
		return fmt.Errorf("esbuild metafile: %w", err)
	}
	var undeclared []string
	for in := range m.Inputs {
		if !s.declared[in] {
			undeclared = append(undeclared, in)
		}
	}
	if len(undeclared) == 0 {
		return nil
	}
	sort.Strings(undeclared)
	var lines []string
	for _, u := range undeclared {
		var by []string
		for from, in := range m.Inputs {
			for _, imp := range in.Imports {
				if imp.Path == u && !imp.External {
					by = append(by, from)
				}
			}
		}
		sort.Strings(by)
		line := u
		if len(by) > 0 {
			line += " (imported by " + strings.Join(by, ", ") + ")"
		}
		lines = append(lines, line)
	}
	hint := fmt.Sprintf("add them to srcs of %s (for example with glob), or to deps if another target provides them", s.label)
	for _, u := range undeclared {
		if strings.HasPrefix(u, "../") || path.IsAbs(u) {
			hint += "; a file outside the workspace cannot be an input: move it into the workspace"
			break
		}
	}
	return fmt.Errorf("the app imports files that are not declared inputs:\n  %s\n%s", strings.Join(lines, "\n  "), hint)
}
