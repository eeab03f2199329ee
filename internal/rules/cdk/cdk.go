package cdk

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/engine"
)

// AssemblyInfo is what a cdk_stack target provides to pipe deploy and
// pipe diff: where its cloud assembly is and which of its stacks to deploy.
type AssemblyInfo struct {
	// Dir is the cloud assembly directory (cdk.out), workspace-relative
	// and slash-separated.
	Dir string
	// Stacks are the stack names or globs of the stacks attribute; empty
	// means every stack of the assembly.
	Stacks []string
	// NoHotswap says why pipe deploy --hotswap must refuse the target's
	// stacks ("" allows hotswaps): hotswap = False, or the context value
	// pipe:hotswap = "false".
	NoHotswap string
}

// hotswapContext is the context key that, set to "false", marks a
// cdk_stack's stacks as ones pipe deploy --hotswap must refuse: the same
// value can tell the app itself that it synthesizes a production stage.
const hotswapContext = "pipe:hotswap"

// AssemblyKey is the key of a cdk_stack target's AssemblyInfo.
var AssemblyKey = engine.NewInfoKey[AssemblyInfo]("cdk.assembly")

// Register adds cdk_stack to reg.
func Register(reg *engine.Registry) {
	reg.Register(Stack)
}

// Stack is the cdk_stack rule.
var Stack = &engine.Rule{
	Name:    "cdk_stack",
	Version: "1",
	Doc: "Bundles a TypeScript CDK app with esbuild and synthesizes it with node into a cloud assembly at dist/<pkg>/<name>/cdk.out. " +
		"node runs from a copy of the workspace holding only the declared inputs, so Code.fromAsset('dist/...') paths are relative to the workspace root, " +
		"and each module's import.meta.url and __dirname name its source file's place in that copy.",
	Attrs: []engine.Attr{
		{Name: "app", Type: engine.AttrLabel, Required: true, Doc: "the app's entry point, e.g. src/main.ts"},
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "the app's TypeScript sources, e.g. glob([\"src/**/*.ts\"]); every file the app imports must be here or in deps"},
		{Name: "deps", Type: engine.AttrLabelList, Doc: "targets whose files the app imports or reads at synth (generated TypeScript, asset directories such as a python_bundle)"},
		{Name: "stacks", Type: engine.AttrStringList, Doc: "stack names or globs that pipe deploy and pipe diff take from this target, with the stacks they depend on (default: all; --stacks narrows further); each must match a stack of the assembly"},
		{Name: "context", Type: engine.AttrStringDict, Doc: "context values, as `cdk -c key=value` gives them; they override cdk.json's"},
		{Name: "account", Type: engine.AttrString, Doc: "CDK_DEFAULT_ACCOUNT for the app; unset, stacks that read it are environment-agnostic"},
		{Name: "region", Type: engine.AttrString, Doc: "CDK_DEFAULT_REGION for the app; unset, stacks that read it are environment-agnostic"},
		{Name: "typecheck", Type: engine.AttrBool, Doc: "also run tsc --noEmit -p <package> (needs typescript in node_modules and a tsconfig.json)"},
		{Name: "module_format", Type: engine.AttrString, Values: []string{"esm", "cjs"}, Doc: `how the app is bundled and run: "esm" (ES modules) or "cjs" (CommonJS); default: the app's extension (.mts, .cts), else the "type" of the nearest package.json above it`},
		{Name: "hotswap", Type: engine.AttrBool, Default: true, Doc: "whether pipe deploy --hotswap may update the stacks' Lambda functions directly; False for production stacks (so does context {\"pipe:hotswap\": \"false\"})"},
	},
	Analyze: analyze,
}

var (
	accountRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9]{12}$`) })
	regionRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`) })
)

// appExtensions are what esbuild bundles as an entry point by default.
var appExtensions = []string{".ts", ".tsx", ".mts", ".cts", ".js", ".mjs", ".cjs", ".jsx"}

// loadable are the files esbuild's default loaders import.
var loadable = append([]string{".json", ".txt", ".css"}, appExtensions...)

func analyze(ctx *engine.AnalysisContext) error {
	ws := ctx.Workspace()
	pkg := ctx.Label().Pkg
	apps := ctx.Files("app")
	if len(apps) != 1 {
		return ctx.Errorf("cdk_stack: app %s provides %d files; point app at the one entry point, such as \"src/main.ts\"", ctx.Labels("app")[0], len(apps))
	}
	app := apps[0]
	if !hasAnySuffix(app.Path, appExtensions) {
		return ctx.Errorf("cdk_stack: app %s is not a TypeScript or JavaScript file (%s)", app.Path, strings.Join(appExtensions, ", "))
	}
	account, region := ctx.String("account"), ctx.String("region")
	if account != "" && !accountRE().MatchString(account) {
		return ctx.Errorf("cdk_stack: account %q is not a 12-digit AWS account id", account)
	}
	if region != "" && !regionRE().MatchString(region) {
		return ctx.Errorf("cdk_stack: region %q is not an AWS region name such as \"us-east-1\"", region)
	}
	for _, s := range ctx.Strings("stacks") {
		if _, err := path.Match(s, ""); err != nil || s == "" {
			return ctx.Errorf("cdk_stack: stacks: %q is not a stack name or glob", s)
		}
	}

	// Files of the package that configure the tools, as the CDK CLI and
	// esbuild read them from the project directory.
	config := func(name string) *engine.File {
		p := path.Join(pkg, name)
		if ctx.FileExists(p) {
			return ctx.SourceFile(p)
		}
		return nil
	}
	tsconfig, pkgJSON := config("tsconfig.json"), config("package.json")
	cdkJSON, cdkContext := config("cdk.json"), config("cdk.context.json")
	var tsconfigs []*engine.File
	tsconfigPackage := false
	if tsconfig != nil {
		chain, viaPackage, err := tsconfigChain(ctx, tsconfig.Path)
		if err != nil {
			return ctx.Errorf("cdk_stack: %v", err)
		}
		for _, p := range chain {
			tsconfigs = append(tsconfigs, ctx.SourceFile(p))
		}
		tsconfigPackage = viaPackage
	}

	srcs := ctx.Files("srcs")
	deps := ctx.Files("deps")
	// Only files esbuild can load without extra configuration can be
	// imported; the rest (a python_bundle's directory and zip, say) are
	// assets for the synth and stay out of the bundler's key, so a Python
	// edit does not bundle the app again.
	var depFiles []*engine.File
	for _, f := range deps {
		if !f.Dir && hasAnySuffix(f.Path, loadable) {
			depFiles = append(depFiles, f)
		}
	}
	code := dedupe(append(append(append([]*engine.File{app}, srcs...), depFiles...), append(tsconfigs, pkgJSON)...))
	declared := map[string]bool{}
	for _, f := range code {
		declared[f.Path] = true
	}

	tools, err := loadToolchain(ctx)
	if err != nil {
		return ctx.Errorf("cdk_stack: %v", err)
	}
	appJS := ctx.Declare("app.js")
	var tsconfigPath string
	if tsconfig != nil {
		tsconfigPath = tsconfig.Path
	}
	format, err := moduleFormat(ctx, app.Path)
	if err != nil {
		return ctx.Errorf("cdk_stack: %v", err)
	}
	bundle := &bundleSpec{root: ws.Root, entry: app.Path, out: appJS, tsconfig: tsconfigPath, declared: declared, label: ctx.Label(), format: format}
	var bundleTools []string
	if tsconfigPackage {
		// The tsconfig extends a file from an npm package.
		bundleTools = append(bundleTools, tools.modulesIdentity())
	}
	ctx.AddAction(&engine.Action{
		Mnemonic:    "CdkBundle",
		Description: "Bundling CDK app " + ctx.Label().String(),
		Inputs:      code,
		Outputs:     []*engine.File{appJS},
		Identity:    fmt.Sprintf("cdkbundle esbuild=%s entry=%s tsconfig=%q target=node%s packages=external sourcemap=inline format=%s meta=%s", esbuildVersion(), app.Path, tsconfigPath, nodeTarget, format, sourceLocationShim),
		Tools:       bundleTools,
		Run: func(_ context.Context, ec *engine.ExecContext) error {
			return bundle.bundle(ec)
		},
	})

	cdkOut := ctx.DeclareDir("cdk.out")
	synthInputs := dedupe(append(append([]*engine.File{appJS}, deps...), cdkJSON, cdkContext))
	ctxAttr := ctx.Dict("context")
	ctxKey, _ := json.Marshal(ctxAttr) // map keys marshal sorted
	synth := &synthSpec{
		tools: tools, inputs: synthInputs, appJS: appJS, outDir: cdkOut, cdkJSON: cdkJSON, cdkContext: cdkContext,
		context: ctxAttr, account: account, region: region, stacks: ctx.Strings("stacks"),
		label: ctx.Label(), pathEnv: ws.Settings.Path, format: format,
	}
	ctx.AddAction(&engine.Action{
		Mnemonic:    "CdkSynth",
		Description: "Synthesizing " + ctx.Label().String(),
		Inputs:      synthInputs,
		Outputs:     []*engine.File{cdkOut},
		Identity: fmt.Sprintf("cdksynth app=%s context=%s account=%q region=%q stacks=%q path=%q format=%s",
			appJS.Path, ctxKey, account, region, ctx.Strings("stacks"), ws.Settings.Path, format),
		Tools: tools.synthTools(),
		// The step stages the inputs itself (see mirror): node sees only
		// the declared inputs, so an asset directory missing from deps
		// fails the synth instead of being read unkeyed from dist/ and
		// going stale in the cache.
		Run: synth.run,
	})
	provided := []*engine.File{cdkOut}

	if ctx.Bool("typecheck") {
		if tsconfig == nil {
			return ctx.Errorf("cdk_stack: typecheck = True needs %s: tsc -p reads the compiler options from it", path.Join(pkg, "tsconfig.json"))
		}
		stamp := ctx.Declare("typecheck.txt")
		tc := &typecheckSpec{tools: tools, pkg: pkg, out: stamp}
		ctx.AddAction(&engine.Action{
			Mnemonic:    "CdkTypecheck",
			Description: "Type-checking " + ctx.Label().String(),
			Inputs:      code,
			Outputs:     []*engine.File{stamp},
			Identity:    fmt.Sprintf("tsc --noEmit -p %s", pkg),
			Tools:       []string{tools.nodeIdentity(), "typescript " + orMissing(tools.TypeScript), tools.modulesIdentity()},
			Sandbox:     true,
			Run:         tc.run,
		})
		provided = append(provided, stamp)
	}

	ctx.Provide(provided...)
	info := AssemblyInfo{Dir: cdkOut.Path, Stacks: append([]string(nil), ctx.Strings("stacks")...)}
	switch {
	case !ctx.Bool("hotswap"):
		info.NoHotswap = fmt.Sprintf("%s says hotswap = False", ctx.Label())
	case strings.EqualFold(ctxAttr[hotswapContext], "false"):
		info.NoHotswap = fmt.Sprintf("%s sets context %s = %q", ctx.Label(), hotswapContext, ctxAttr[hotswapContext])
	}
	engine.SetInfo(ctx, AssemblyKey, info)
	return nil
}

// Module formats of a bundled app.
const (
	formatESM = "esm"
	formatCJS = "cjs"
)

// moduleFormat decides how the app is bundled and run, as node would
// load its source: module_format if set, else the entry's extension (.mts
// and .mjs are ES modules, .cts and .cjs CommonJS), else the "type" of the
// nearest package.json from the app's directory up to the workspace root.
func moduleFormat(ctx *engine.AnalysisContext, app string) (string, error) {
	if f := ctx.String("module_format"); f != "" {
		return f, nil
	}
	switch path.Ext(app) {
	case ".mts", ".mjs":
		return formatESM, nil
	case ".cts", ".cjs":
		return formatCJS, nil
	}
	for dir := path.Dir(app); ; dir = path.Dir(dir) {
		p := path.Join(dir, "package.json")
		if dir == "." {
			p = "package.json"
		}
		if ctx.FileExists(p) {
			b, err := ctx.ReadFile(p)
			if err != nil {
				return "", err
			}
			var pj struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(b, &pj); err != nil {
				return "", fmt.Errorf("%s: not valid JSON (%v); node reads its \"type\" to load the app", p, err)
			}
			if pj.Type == "module" {
				return formatESM, nil
			}
			return formatCJS, nil
		}
		if dir == "." || dir == "/" {
			return formatCJS, nil
		}
	}
}

func hasAnySuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// dedupe drops nils and repeated paths, keeping the first.
func dedupe(files []*engine.File) []*engine.File {
	var out []*engine.File
	seen := map[string]bool{}
	for _, f := range files {
		if f != nil && !seen[f.Path] {
			seen[f.Path] = true
			out = append(out, f)
		}
	}
	return out
}

// tsconfigChain lists a tsconfig.json and the files it extends, transitively,
// as workspace paths: esbuild reads them all. viaPackage reports an extends
// that names an npm package, which node_modules provides.
func tsconfigChain(ctx *engine.AnalysisContext, first string) (chain []string, viaPackage bool, err error) {
	seen := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		chain = append(chain, p)
		b, err := ctx.ReadFile(p)
		if err != nil {
			return err
		}
		var cfg struct {
			Extends json.RawMessage `json:"extends"`
		}
		if err := json.Unmarshal(stripJSONC(b), &cfg); err != nil {
			return fmt.Errorf("%s: not valid JSON: %v", p, err)
		}
		var exts []string
		if len(cfg.Extends) > 0 {
			var one string
			if json.Unmarshal(cfg.Extends, &one) == nil {
				exts = []string{one}
			} else if err := json.Unmarshal(cfg.Extends, &exts); err != nil {
				return fmt.Errorf("%s: extends must be a string or a list of strings", p)
			}
		}
		for _, e := range exts {
			if !strings.HasPrefix(e, "./") && !strings.HasPrefix(e, "../") {
				viaPackage = true
				continue
			}
			next := path.Join(path.Dir(p), e)
			if next == ".." || strings.HasPrefix(next, "../") {
				return fmt.Errorf("%s extends %s, which is outside the workspace", p, e)
			}
			if !ctx.FileExists(next) && !strings.HasSuffix(next, ".json") {
				next += ".json"
			}
			if !ctx.FileExists(next) {
				return fmt.Errorf("%s extends %s, which does not exist", p, e)
			}
			if err := visit(next); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(first); err != nil {
		return nil, false, err
	}
	sort.Strings(chain[1:])
	return chain, viaPackage, nil
}

// stripJSONC turns the JSON-with-comments of tsconfig files into JSON:
// comments and trailing commas go, strings stay as they are.
func stripJSONC(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			end := min(j+1, len(b))
			out = append(out, b[i:end]...)
			i = end - 1
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for i < len(b) && b[i] != '\n' {
				i++
			}
			if i < len(b) {
				out = append(out, '\n')
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			i += 2
			for i+1 < len(b) && (b[i] != '*' || b[i+1] != '/') {
				i++
			}
			i++
		case c == ',':
			j := i + 1
			for j < len(b) && strings.ContainsRune(" \t\r\n", rune(b[j])) {
				j++
			}
			if j < len(b) && (b[j] == '}' || b[j] == ']') {
				continue
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}
