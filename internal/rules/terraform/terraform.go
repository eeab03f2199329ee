// Package terraform holds the terraform_module and terraform_root rules:
// Terraform (or OpenTofu) configurations checked by cached fmt and
// validate actions, and for a root module the fingerprint of everything
// a plan depends on, which pipe deploy compares with the last apply.
package terraform

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/tfcli"
)

// RootInfo is what a terraform_root target gives pipe deploy, pipe diff
// and pipe destroy.
type RootInfo struct {
	// Dir is the root module's directory (its package), workspace-relative
	// and slash-separated: terraform runs there, so relative paths and a
	// local state file mean what they mean when a person runs it.
	Dir string
	// Binary is the terraform or tofu binary (absolute), "" when none was
	// found; BinaryErr then says why.
	Binary    string
	BinaryErr string
	// Vars are the input variables (-var NAME=VALUE), $(location) expanded.
	Vars map[string]string
	// Backend are the -backend-config values for init.
	Backend map[string]string
	// Inputs is the workspace-relative path of the inputs file the build
	// writes: its fingerprint covers the sources, the modules and bundle
	// zips they use, the provider lock file, vars, backend and the
	// binary's identity.
	Inputs string
	// PathEnv is the PATH terraform runs with (workspace action_path).
	PathEnv string
}

// RootKey is the key of a terraform_root target's RootInfo.
var RootKey = engine.NewInfoKey[RootInfo]("terraform.root")

// Inputs is the content of a terraform_root's inputs file.
type Inputs struct {
	// Fingerprint is the sha256 of everything else in the file.
	Fingerprint string `json:"fingerprint"`
	// Files maps each input file (workspace path) to its sha256.
	Files map[string]string `json:"files"`
	// Identity holds vars, backend and the binary's identity.
	Identity string `json:"identity"`
}

// ReadInputs reads a terraform_root's inputs file.
func ReadInputs(file string) (*Inputs, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the terraform inputs: %w (run pipe build first)", err)
	}
	var in Inputs
	if err := json.Unmarshal(b, &in); err != nil || in.Fingerprint == "" {
		return nil, fmt.Errorf("%s: not a terraform inputs file; pipe build writes it again", file)
	}
	return &in, nil
}

// Register adds terraform_module and terraform_root to reg.
func Register(reg *engine.Registry) {
	reg.Register(Module)
	reg.Register(Root)
}

var commonAttrs = []engine.Attr{
	{Name: "srcs", Type: engine.AttrLabelList, Doc: "the module's files, e.g. glob([\"*.tf\"]); .tf and .tf.json files are format-checked"},
	{Name: "deps", Type: engine.AttrLabelList, Doc: "terraform_module targets this module calls by relative path (module \"x\" { source = \"../x\" }), and targets whose files it reads, such as a python_bundle's bundle.zip"},
	{Name: "validate", Type: engine.AttrBool, Default: true, Doc: "run terraform validate (after init -backend=false, providers from the plugin cache or mirror); False where the providers cannot be installed"},
}

// Module is the terraform_module rule.
var Module = &engine.Rule{
	Name:    "terraform_module",
	Version: "1",
	Doc:     "A Terraform module: terraform fmt -check and terraform validate run as cached actions; targets that depend on it get its files and those of its deps.",
	Attrs:   commonAttrs,
	Analyze: analyzeModule,
}

// Root is the terraform_root rule.
var Root = &engine.Rule{
	Name:    "terraform_root",
	Version: "1",
	Doc: "A Terraform root module that pipe deploy plans and applies (pipe diff shows the plan, pipe destroy destroys it). " +
		"pipe build checks it like a terraform_module and writes the fingerprint of everything a plan depends on; " +
		"pipe deploy skips it without running terraform when neither that nor the state changed since the last successful apply.",
	Attrs: append(append([]engine.Attr(nil), commonAttrs...),
		engine.Attr{Name: "vars", Type: engine.AttrStringDict, Doc: "input variables, passed as -var NAME=VALUE (terraform parses VALUE as its variable's type); $(location LABEL) is the path of a file of deps relative to the module, e.g. \"$(location //packages/api:bundle.zip)\""},
		engine.Attr{Name: "backend", Type: engine.AttrStringDict, Doc: "backend configuration for init (-backend-config=KEY=VALUE); the backend block itself is in the sources. Without a backend block the state is terraform.tfstate in the package"},
	),
	Analyze: analyzeRoot,
}

// module is what both rules declare: fmt and validate actions.
type module struct {
	pkg  string
	srcs []*engine.File
	// depFiles are every file of deps; modFiles those of the
	// terraform_module deps, which validate needs (a bundle's zip it
	// does not, and staging it would copy it for nothing).
	depFiles, modFiles []*engine.File
	bin                binary
}

func analyzeModule(ctx *engine.AnalysisContext) error {
	m, err := declareChecks(ctx)
	if err != nil {
		return err
	}
	// Dependents get the module's files and its deps' (nested modules,
	// files it reads), which they stage and fingerprint in turn.
	ctx.Provide(dedupe(append(append([]*engine.File(nil), m.srcs...), m.depFiles...))...)
	return nil
}

func analyzeRoot(ctx *engine.AnalysisContext) error {
	m, err := declareChecks(ctx)
	if err != nil {
		return err
	}
	vars, err := expandVars(ctx, m.pkg)
	if err != nil {
		return err
	}
	backend := ctx.Dict("backend")
	inputs := dedupe(append(append([]*engine.File(nil), m.srcs...), m.depFiles...))
	// terraform reads these from the module's directory whether srcs
	// lists them or not, so they are inputs of every plan.
	for _, name := range []string{".terraform.lock.hcl", "terraform.tfvars", "terraform.tfvars.json"} {
		if p := path.Join(m.pkg, name); ctx.FileExists(p) {
			inputs = dedupe(append(inputs, ctx.SourceFile(p)))
		}
	}
	varsJSON, _ := json.Marshal(vars) // map keys marshal sorted
	backendJSON, _ := json.Marshal(backend)
	identity := fmt.Sprintf("terraform vars=%s backend=%s binary=%s", varsJSON, backendJSON, m.bin.identity)
	out := ctx.Declare("inputs.json")
	ctx.AddAction(&engine.Action{
		Mnemonic:    "TerraformInputs",
		Description: "Fingerprinting " + ctx.Label().String(),
		Inputs:      inputs,
		Outputs:     []*engine.File{out},
		Identity:    "terraform-inputs " + identity,
		Tools:       []string{m.bin.identity},
		Run: func(_ context.Context, ec *engine.ExecContext) error {
			return writeInputs(ec, inputs, identity, out)
		},
	})
	ctx.Provide(out)
	engine.SetInfo(ctx, RootKey, RootInfo{
		Dir: m.pkg, Binary: m.bin.path, BinaryErr: m.bin.err,
		Vars: vars, Backend: backend, Inputs: out.Path, PathEnv: ctx.Workspace().Settings.Path,
	})
	return nil
}

// declareChecks declares the fmt and validate actions of a module.
func declareChecks(ctx *engine.AnalysisContext) (*module, error) {
	rule := ctx.Target.Rule.Name
	m := &module{pkg: ctx.Label().Pkg, bin: findBinary(ctx)}
	for _, f := range ctx.Files("srcs") {
		if f.Dir {
			return nil, ctx.Errorf("%s: srcs: %s is a directory; list the module's files (glob([\"*.tf\"]))", rule, f.Path)
		}
		if dir := path.Dir(f.Path); dir != m.pkg && !(dir == "." && m.pkg == "") {
			return nil, ctx.Errorf("%s: srcs: %s is not in the module's directory %s; terraform reads only the files of one directory, so give that directory its own BUILD.star and terraform_module", rule, f.Path, orRoot(m.pkg))
		}
		m.srcs = append(m.srcs, f)
	}
	var tf []*engine.File
	for _, f := range m.srcs {
		if strings.HasSuffix(f.Path, ".tf") || strings.HasSuffix(f.Path, ".tf.json") || strings.HasSuffix(f.Path, ".tfvars") {
			tf = append(tf, f)
		}
	}
	if len(tf) == 0 {
		return nil, ctx.Errorf("%s: srcs has no .tf file; give the module's files, such as glob([\"*.tf\"])", rule)
	}
	for _, l := range ctx.Labels("deps") {
		isModule := false
		if r := ctx.RuleOf(l); r != nil && (r.Name == "terraform_module" || r.Name == "terraform_root") {
			isModule = true
		}
		for _, f := range ctx.FilesOf(l) {
			// A bundle's directory is also provided; its zip is what a
			// configuration reads, and hashing the tree again adds nothing.
			if f.Dir {
				continue
			}
			m.depFiles = append(m.depFiles, f)
			if isModule {
				m.modFiles = append(m.modFiles, f)
			}
		}
	}
	fmtFiles := make([]string, 0, len(tf))
	for _, f := range tf {
		if !strings.HasSuffix(f.Path, ".tf.json") {
			fmtFiles = append(fmtFiles, f.Path)
		}
	}
	bin := m.bin
	stamp := ctx.Declare("fmt.txt")
	ctx.AddAction(&engine.Action{
		Mnemonic:    "TerraformFmt",
		Description: "Checking the format of " + ctx.Label().String(),
		Inputs:      tf,
		Outputs:     []*engine.File{stamp},
		Identity:    "terraform fmt -check",
		Tools:       []string{bin.identity},
		Sandbox:     true,
		Run: func(ctx context.Context, ec *engine.ExecContext) error {
			return runFmt(ctx, ec, bin, fmtFiles, stamp)
		},
	})
	if ctx.Bool("validate") {
		all := dedupe(append(append([]*engine.File(nil), m.srcs...), m.modFiles...))
		vstamp := ctx.Declare("validate.txt")
		pkg := m.pkg
		ctx.AddAction(&engine.Action{
			Mnemonic:    "TerraformValidate",
			Description: "Validating " + ctx.Label().String(),
			Inputs:      all,
			Outputs:     []*engine.File{vstamp},
			Identity:    "terraform init -backend=false && terraform validate dir=" + pkg,
			Tools:       []string{bin.identity},
			Sandbox:     true,
			Run: func(ctx context.Context, ec *engine.ExecContext) error {
				return runValidate(ctx, ec, bin, pkg, vstamp)
			},
		})
	}
	return m, nil
}

func orRoot(pkg string) string {
	if pkg == "" {
		return "(the workspace root)"
	}
	return pkg
}

var locationRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\(location ([^)]*)\)`) })

// expandVars returns the vars attribute with each $(location LABEL)
// replaced by the path of that file relative to the module's directory,
// where terraform resolves relative paths.
func expandVars(ctx *engine.AnalysisContext, pkg string) (map[string]string, error) {
	deps := map[engine.Label][]*engine.File{}
	for _, l := range ctx.Labels("deps") {
		deps[l] = ctx.FilesOf(l)
	}
	out := map[string]string{}
	for k, v := range ctx.Dict("vars") {
		var err error
		out[k] = locationRE().ReplaceAllStringFunc(v, func(m string) string {
			arg := strings.TrimSpace(locationRE().FindStringSubmatch(m)[1])
			l, perr := engine.ParseLabel(arg, pkg)
			if perr != nil {
				err = fmt.Errorf("vars[%q]: $(location %s): %v", k, arg, perr)
				return m
			}
			fs, ok := deps[l]
			if !ok {
				// A file of a dep: //pkg:bundle.zip names one output.
				for dl, dfs := range deps {
					for _, f := range dfs {
						if dl.Pkg == l.Pkg && path.Join(l.Pkg, l.Name) == f.Path {
							fs, ok = []*engine.File{f}, true
						}
					}
				}
			}
			var plain []*engine.File
			for _, f := range fs {
				if !f.Dir {
					plain = append(plain, f)
				}
			}
			if !ok || len(plain) != 1 {
				err = fmt.Errorf("vars[%q]: $(location %s) must name one file of deps (add the target to deps, or name one of its files such as //pkg:bundle.zip); it names %d", k, arg, len(plain))
				return m
			}
			rel, rerr := filepath.Rel(filepath.FromSlash("/"+pkg), filepath.FromSlash("/"+plain[0].Path))
			if rerr != nil {
				err = rerr
				return m
			}
			return filepath.ToSlash(rel)
		})
		if err != nil {
			return nil, ctx.Errorf("terraform_root: %v", err)
		}
	}
	return out, nil
}

// writeInputs hashes the inputs and writes the inputs file.
func writeInputs(ec *engine.ExecContext, inputs []*engine.File, identity string, out *engine.File) error {
	in := Inputs{Files: map[string]string{}, Identity: identity}
	for _, f := range inputs {
		b, err := os.ReadFile(ec.Input(f))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		in.Files[f.Path] = hex.EncodeToString(sum[:])
	}
	names := make([]string, 0, len(in.Files))
	for p := range in.Files {
		names = append(names, p)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, p := range names {
		fmt.Fprintf(h, "%d:%s%s\n", len(p), p, in.Files[p])
	}
	fmt.Fprintf(h, "%d:%s\n", len(identity), identity)
	in.Fingerprint = hex.EncodeToString(h.Sum(nil))
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	return files.WriteAtomic(ec.Output(out), append(b, '\n'), 0o644)
}

// binary is the terraform or tofu a target runs, found at analysis.
type binary struct {
	path     string
	err      string
	identity string
}

// findBinary resolves workspace(terraform = ...): a path (absolute or
// relative to the workspace) or a name looked up on the action PATH;
// unset, tofu and then terraform on the action PATH. A missing binary is
// reported by the actions that need it, so the workspace's other
// targets still build.
func findBinary(ctx *engine.AnalysisContext) binary {
	ws := ctx.Workspace()
	setting, _ := ws.Settings.Extra["terraform"].(string)
	names := []string{"tofu", "terraform"}
	if setting != "" {
		names = []string{setting}
	}
	for _, n := range names {
		p := n
		if strings.Contains(n, "/") {
			if !filepath.IsAbs(p) {
				p = filepath.Join(ws.Root, filepath.FromSlash(p))
			}
		} else {
			p = lookPath(n, ws.Settings.Path)
		}
		if p == "" {
			continue
		}
		id := ctx.ToolIdentity(p)
		if strings.HasSuffix(id, "(missing)") {
			continue
		}
		return binary{path: p, identity: id}
	}
	why := fmt.Sprintf("no tofu or terraform on the action PATH (%s): install OpenTofu or Terraform, or set workspace(terraform = \"/path/to/tofu\") in WORKSPACE.star", ws.Settings.Path)
	if setting != "" {
		why = fmt.Sprintf("workspace(terraform = %q) is not an executable file (nor a program on the action PATH %s): point it at a terraform or tofu binary", setting, ws.Settings.Path)
	}
	return binary{err: why, identity: "terraform (not found)"}
}

func lookPath(name, pathEnv string) string {
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func (b binary) cli(ec *engine.ExecContext, dataDir, showDir string) (*tfcli.CLI, error) {
	if b.path == "" {
		return nil, fmt.Errorf("%s", b.err)
	}
	c := &tfcli.CLI{Path: b.path, CacheDir: ec.Cache().Dir(), DataDir: dataDir, PathEnv: ec.Workspace().Settings.Path, ShowDir: showDir}
	confine(ec, c)
	return c, nil
}

// runFmt runs terraform fmt -check over the staged files.
func runFmt(ctx context.Context, ec *engine.ExecContext, bin binary, names []string, stamp *engine.File) error {
	c, err := bin.cli(ec, filepath.Join(ec.Dir, ".terraform-data"), "")
	if err != nil {
		return err
	}
	args := append([]string{"fmt", "-check", "-list=true", "-no-color"}, names...)
	out, err := c.Output(ctx, ec.Dir, args...)
	if err != nil {
		if te, ok := err.(*tfcli.Error); ok && te.ExitCode == 3 {
			bad := strings.Fields(string(out))
			return fmt.Errorf("not formatted as terraform fmt writes them: %s; run `%s fmt %s` to fix", strings.Join(bad, ", "), filepath.Base(bin.path), strings.Join(bad, " "))
		}
		return err
	}
	return files.WriteAtomic(ec.Output(stamp), []byte("formatted\n"), 0o644)
}

// runValidate runs init -backend=false and validate in the staged copy of
// the module, whose relative module sources resolve to the staged deps.
func runValidate(ctx context.Context, ec *engine.ExecContext, bin binary, pkg string, stamp *engine.File) error {
	dir := filepath.Join(ec.Dir, filepath.FromSlash(pkg))
	c, err := bin.cli(ec, filepath.Join(ec.Dir, ".terraform-data"), pkg)
	if err != nil {
		return err
	}
	if err := c.Run(ctx, dir, nil, "init", "-backend=false", "-input=false", "-no-color"); err != nil {
		return fmt.Errorf("%w\n(validate needs the module's providers; on a machine without registry access put them in the mirror %s, or set validate = False)", err, filepath.Join(ec.Cache().Dir(), "terraform", "mirror"))
	}
	if err := c.Run(ctx, dir, nil, "validate", "-json", "-no-color"); err != nil {
		return err
	}
	return files.WriteAtomic(ec.Output(stamp), []byte("valid\n"), 0o644)
}

// dedupe drops nils and repeated paths, keeping the first.
func dedupe(fs []*engine.File) []*engine.File {
	var out []*engine.File
	seen := map[string]bool{}
	for _, f := range fs {
		if f != nil && !seen[f.Path] {
			seen[f.Path] = true
			out = append(out, f)
		}
	}
	return out
}
