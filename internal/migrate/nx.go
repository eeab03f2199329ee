// Package migrate moves a workspace of another build tool onto pipe:
// `pipe migrate nx` reads an Nx workspace (nx.json and every project.json)
// and writes WORKSPACE.star and a BUILD.star per project, with pipe's
// rules for the targets @aws/nx-plugin's generators write: a FastAPI
// project's bundle-x86/bundle-arm, openapi and serve, the shared
// constructs' generate:<api>-metadata, and a ts#infra app's synth. Every
// other target is reported, with its project, executor and what to do
// instead, never guessed at.
//
// Outputs keep Nx's places under dist/ where pipe's layout allows it
// (dist/<project>/<target>/), so code that finds a bundle relative to its
// source, as the generated constructs do, keeps working.
package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/scaffold"
)

// NxOptions say where the Nx workspace is and what may be written.
type NxOptions struct {
	Root string // the directory that holds nx.json
	// DryRun plans everything and writes nothing.
	DryRun bool
	// Force overwrites BUILD.star files that exist; without it they are
	// kept and reported.
	Force bool
}

// Status says what happened (or, in a dry run, would happen) to a file.
type Status string

const (
	Created     Status = "created"
	Overwritten Status = "overwritten"
	Kept        Status = "kept"      // it exists; --force overwrites a BUILD.star
	Unchanged   Status = "unchanged" // it exists with exactly this content
	Updated     Status = "updated"   // .gitignore gained lines
)

// File is one file the migration writes.
type File struct {
	Path    string // workspace-relative, slash-separated
	Status  Status
	Content []byte // what is (or would be) written; for a kept file, what would have been
	// Project is the Nx project a BUILD.star comes from.
	Project string
}

// Translated is an Nx target that became a pipe target.
type Translated struct {
	Project, Target string
	Label           string
	Rule            string
}

// Skipped is an Nx target (or a project without targets) pipe did not
// translate, and what to do instead.
type Skipped struct {
	Project  string
	Dir      string
	Target   string // "" for the project as a whole
	Executor string
	Reason   string
}

// NxResult is what a migration did.
type NxResult struct {
	Root       string
	Projects   int
	Files      []File
	Translated []Translated
	Skipped    []Skipped
	// Notes are things the user must know or check, one sentence each.
	Notes  []string
	DryRun bool
}

// nxProject is a project.json, with {projectRoot}, {workspaceRoot} and
// {projectName} replaced.
type nxProject struct {
	Name        string               `json:"name"`
	Root        string               `json:"root"`
	SourceRoot  string               `json:"sourceRoot"`
	ProjectType string               `json:"projectType"`
	Metadata    map[string]any       `json:"metadata"`
	Targets     map[string]*nxTarget `json:"targets"`

	dir string // workspace-relative directory of project.json
}

type nxTarget struct {
	Executor  string         `json:"executor"`
	Command   string         `json:"command"`
	Options   map[string]any `json:"options"`
	DependsOn []any          `json:"dependsOn"`
	Outputs   []string       `json:"outputs"`
}

// commands is what a run-commands target runs: options.command, or each
// of options.commands (strings or {"command": …}), else the target's own
// command shorthand.
func (t *nxTarget) commands() []string {
	var out []string
	if c, ok := t.Options["command"].(string); ok && c != "" {
		out = append(out, c)
	}
	if cs, ok := t.Options["commands"].([]any); ok {
		for _, c := range cs {
			switch v := c.(type) {
			case string:
				out = append(out, v)
			case map[string]any:
				if s, ok := v["command"].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 && t.Command != "" {
		out = append(out, t.Command)
	}
	return out
}

func (t *nxTarget) option(name string) string {
	s, _ := t.Options[name].(string)
	return s
}

// words splits every command of the target; ok is false when one cannot
// be read.
func (t *nxTarget) words() ([][]string, bool) {
	var all [][]string
	for _, c := range t.commands() {
		cmds, err := splitCommand(c)
		if err != nil {
			return nil, false
		}
		all = append(all, cmds...)
	}
	return all, true
}

// Nx migrates the Nx workspace at opts.Root.
func Nx(opts NxOptions) (*NxResult, error) {
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "nx.json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, engine.Usagef("no nx.json in %s: pipe migrate nx reads an Nx workspace; run it at the workspace's root (or pass -C DIR)", root)
		}
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(root, "nx.json")); err != nil {
		return nil, err
	} else if !json.Valid(b) {
		return nil, engine.Usagef("%s: not valid JSON", filepath.Join(root, "nx.json"))
	}
	projects, err := findProjects(root)
	if err != nil {
		return nil, err
	}
	m := &migration{root: root, res: &NxResult{Root: root, Projects: len(projects), DryRun: opts.DryRun}, outputs: map[string]string{}, byName: map[string]*nxProject{}, builds: map[string]*buildFile{}}
	for _, p := range projects {
		m.byName[p.Name] = p
	}
	m.projects = projects
	m.plan()
	if err := m.write(opts); err != nil {
		return m.res, err
	}
	return m.res, nil
}

// migration is the state of one run.
type migration struct {
	root     string
	res      *NxResult
	projects []*nxProject
	byName   map[string]*nxProject
	// outputs maps the dist/ paths translated targets write (files and
	// directories) to their labels.
	outputs map[string]string
	builds  map[string]*buildFile // project dir → its BUILD.star
	// defaults maps a project dir to the label others depend on for its
	// sources or outputs.
	defaults map[string]string
	// metadata maps a project dir to its api_metadata labels.
	metadata  map[string][]string
	pathsOnce sync.Once
	paths     map[string]string // tsconfig paths alias → target file
}

// findProjects reads every project.json below root, skipping what Nx
// skips (node_modules, dist, hidden directories).
func findProjects(root string) ([]*nxProject, error) {
	var out []*nxProject
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root {
			name := d.Name()
			if name == "node_modules" || name == "dist" || strings.HasPrefix(name, ".") || name == "__pycache__" {
				return fs.SkipDir
			}
		}
		if d.IsDir() || d.Name() != "project.json" {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var proj nxProject
		if err := json.Unmarshal(b, &proj); err != nil {
			return engine.Usagef("%s: not a valid project.json: %v", path.Join(rel, "project.json"), err)
		}
		proj.dir = rel
		if proj.Name == "" {
			proj.Name = packageName(filepath.Dir(p))
		}
		if proj.Name == "" {
			proj.Name = path.Base("/" + rel)
		}
		proj.substitute()
		out = append(out, &proj)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	return out, err
}

// packageName is the "name" of dir's package.json, which Nx uses for a
// project.json without one.
func packageName(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return ""
	}
	var pj struct {
		Name string `json:"name"`
	}
	json.Unmarshal(b, &pj)
	return pj.Name
}

// substitute replaces Nx's tokens in every string of the targets.
func (p *nxProject) substitute() {
	r := strings.NewReplacer("{projectRoot}", p.dir, "{workspaceRoot}/", "", "{workspaceRoot}", ".", "{projectName}", p.Name)
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			return r.Replace(x)
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = walk(x[k])
			}
		}
		return v
	}
	for _, t := range p.Targets {
		if t == nil {
			continue
		}
		t.Command = r.Replace(t.Command)
		for k := range t.Options {
			t.Options[k] = walk(t.Options[k])
		}
		for i := range t.Outputs {
			t.Outputs[i] = r.Replace(t.Outputs[i])
		}
	}
	p.SourceRoot = r.Replace(p.SourceRoot)
}

// buildFile is a BUILD.star being planned.
type buildFile struct {
	project *nxProject
	vars    []string // top-level assignments, rendered
	rules   []*rule
	names   map[string]bool
}

type rule struct {
	comment []string
	kind    string
	name    string
	attrs   [][2]string // name, rendered value
}

func (m *migration) build(p *nxProject) *buildFile {
	b, ok := m.builds[p.dir]
	if !ok {
		b = &buildFile{project: p, names: map[string]bool{}}
		m.builds[p.dir] = b
	}
	return b
}

func (b *buildFile) add(r *rule) {
	b.rules = append(b.rules, r)
	b.names[r.name] = true
}

// label is the pipe label of target name in project dir.
func label(dir, name string) string {
	if path.Base("/"+dir) == name && dir != "" {
		return "//" + dir
	}
	return "//" + dir + ":" + name
}

// targetName turns an Nx target name into a pipe one (generate:x → x).
func targetName(nx string) string {
	n := strings.TrimPrefix(nx, "generate:")
	return strings.NewReplacer(":", "-", "\"", "", "'", "", "\\", "-").Replace(n)
}

func (m *migration) translated(p *nxProject, target, name, kind string) {
	m.res.Translated = append(m.res.Translated, Translated{Project: p.Name, Target: target, Label: label(p.dir, name), Rule: kind})
}

func (m *migration) skip(p *nxProject, target, reason string) {
	exec := ""
	if t := p.Targets[target]; t != nil {
		exec = t.Executor
	}
	m.res.Skipped = append(m.res.Skipped, Skipped{Project: p.Name, Dir: p.dir, Target: target, Executor: exec, Reason: reason})
}

func (m *migration) note(format string, args ...any) {
	m.res.Notes = append(m.res.Notes, fmt.Sprintf(format, args...))
}

// plan decides every project's BUILD.star and what is not translated.
func (m *migration) plan() {
	m.defaults = map[string]string{}
	m.metadata = map[string][]string{}
	done := map[*nxProject]map[string]bool{}
	mark := func(p *nxProject, t string) {
		if done[p] == nil {
			done[p] = map[string]bool{}
		}
		done[p][t] = true
	}
	// Python services first: the others refer to their outputs.
	for _, p := range m.projects {
		if m.isFastAPI(p) {
			for _, t := range m.planFastAPI(p) {
				mark(p, t)
			}
		}
	}
	var apps []*nxProject
	for _, p := range m.projects {
		if m.isFastAPI(p) {
			continue
		}
		if t, ok := m.synthTarget(p); ok {
			apps = append(apps, p)
			mark(p, t)
			continue
		}
		for _, t := range m.planTypeScript(p) {
			mark(p, t)
		}
	}
	for _, p := range apps {
		t, _ := m.synthTarget(p)
		m.planCDKApp(p, t)
	}
	for _, p := range m.projects {
		names := make([]string, 0, len(p.Targets))
		for n := range p.Targets {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 && m.builds[p.dir] == nil {
			m.skip(p, "", "no targets and no TypeScript sources: nothing to build, so no BUILD.star")
		}
		for _, n := range names {
			if !done[p][n] {
				m.skip(p, n, m.whyNot(p, n))
			}
		}
	}
	// A project inside another's directory is a package of its own once
	// it has a BUILD.star: the outer one's globs stop at it.
	for _, inner := range m.projects {
		if m.builds[inner.dir] == nil {
			continue
		}
		for _, outer := range m.projects {
			if outer != inner && outer.dir != "" && strings.HasPrefix(inner.dir, outer.dir+"/") && m.builds[outer.dir] != nil {
				m.note("%s (%s) is inside %s (%s): it is a package of its own, //%s, and //%s's globs stop at it", inner.dir, inner.Name, outer.dir, outer.Name, inner.dir, outer.dir)
			}
		}
	}
}

// isFastAPI recognises a py#fast-api project: a pyproject.toml, and the
// generator's metadata or a target that serves or describes a FastAPI app.
func (m *migration) isFastAPI(p *nxProject) bool {
	if !m.exists(path.Join(p.dir, "pyproject.toml")) {
		return false
	}
	if t, _ := p.Metadata["apiType"].(string); t == "fast-api" {
		return true
	}
	for _, t := range p.Targets {
		if t == nil {
			continue
		}
		for _, c := range t.commands() {
			if strings.Contains(c, "fastapi dev") || strings.Contains(c, "generate_open_api") {
				return true
			}
		}
	}
	return false
}

func (m *migration) exists(rel string) bool {
	_, err := os.Stat(filepath.Join(m.root, filepath.FromSlash(rel)))
	return err == nil
}

func (m *migration) read(rel string) []byte {
	b, _ := os.ReadFile(filepath.Join(m.root, filepath.FromSlash(rel)))
	return b
}

var (
	fastapiDevRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`fastapi\s+(?:dev|run)\s+(\S+?)/main\.py`) })
	importMainRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?m)^from\s+([A-Za-z_][A-Za-z0-9_]*)\.main\s+import\s+app`)
	})
	identRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })
	pyVersionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(3\.\d+)`) })
	requiresRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`>=\s*(3\.\d+)`) })
)

// pythonModule finds the service's top-level module: the sourceRoot, the
// module fastapi dev serves, the module generate_open_api.py imports,
// else the directory's name.
func (m *migration) pythonModule(p *nxProject) string {
	if sr := p.SourceRoot; sr != "" && path.Dir(sr) == p.dir && identRE().MatchString(path.Base(sr)) {
		return path.Base(sr)
	}
	names := make([]string, 0, len(p.Targets))
	for n := range p.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, c := range p.Targets[n].commands() {
			if mm := fastapiDevRE().FindStringSubmatch(c); mm != nil && identRE().MatchString(mm[1]) {
				return mm[1]
			}
		}
	}
	if mm := importMainRE().FindSubmatch(m.read(path.Join(p.dir, "scripts", "generate_open_api.py"))); mm != nil {
		return string(mm[1])
	}
	return strings.ReplaceAll(path.Base("/"+p.dir), "-", "_")
}

// pythonVersion is the Lambda runtime's Python the bundle is made for:
// .python-version (the project's, else the workspace's), else the lower
// bound of requires-python.
func (m *migration) pythonVersion(p *nxProject) (string, string) {
	for _, f := range []string{path.Join(p.dir, ".python-version"), ".python-version"} {
		if v := strings.TrimSpace(string(m.read(f))); v != "" {
			if mm := pyVersionRE().FindStringSubmatch(v); mm != nil {
				return mm[1], f
			}
		}
	}
	var pp struct {
		Project struct {
			RequiresPython string `toml:"requires-python"`
		} `toml:"project"`
	}
	if toml.Unmarshal(m.read(path.Join(p.dir, "pyproject.toml")), &pp) == nil {
		if mm := requiresRE().FindStringSubmatch(pp.Project.RequiresPython); mm != nil {
			return mm[1], path.Join(p.dir, "pyproject.toml") + " requires-python"
		}
	}
	return "3.12", ""
}

// planFastAPI translates a FastAPI project's bundles, openapi and serve;
// it returns the Nx targets it consumed.
func (m *migration) planFastAPI(p *nxProject) []string {
	b := m.build(p)
	module := m.pythonModule(p)
	if !identRE().MatchString(module) {
		m.skip(p, "", fmt.Sprintf("cannot tell the service's Python module (found %q): write its BUILD.star by hand", module))
		return nil
	}
	b.vars = append(b.vars, fmt.Sprintf("# The service's sources: its module, %s.\nSRCS = glob([%s], exclude = [\"**/__pycache__/**\"])", module, strconv.Quote(module+"/**/*.py")))
	app := module + ".main:app"
	pyVersion, from := m.pythonVersion(p)
	if from == "" {
		m.note("%s: no .python-version or requires-python; its bundles are for Python %s: set python_version in %s/BUILD.star to the Lambda runtime's", p.dir, pyVersion, p.dir)
	}
	var used, outs []string
	names := make([]string, 0, len(p.Targets))
	for n := range p.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	serveDone := false
	for _, n := range names {
		t := p.Targets[n]
		if t == nil {
			continue
		}
		cmds, ok := t.words()
		if !ok {
			continue
		}
		switch {
		case isBundle(cmds):
			name := targetName(n)
			arch := "x86_64"
			for _, w := range cmds {
				if v, ok := flagValue(w, "--python-platform"); ok && (strings.HasPrefix(v, "aarch64") || strings.HasPrefix(v, "arm64")) {
					arch = "arm64"
				}
			}
			if v, ok := flagValue(cmds[len(cmds)-1], "--target"); ok {
				if want := path.Join("dist", p.dir, name); path.Clean(v) != want {
					m.note("%s:%s wrote the bundle to %s; pipe writes it to %s (dist/<package>/<target>): update what reads it", p.Name, n, v, want)
				}
			}
			r := &rule{kind: "python_bundle", name: name, comment: []string{
				fmt.Sprintf("Nx %s: the Lambda bundle, from uv.lock's wheels for %s, the app and run.sh.", n, arch),
				fmt.Sprintf("dist/%s/%s/ and dist/%s/%s.zip", p.dir, name, p.dir, name),
			}}
			r.attrs = append(r.attrs, [2]string{"srcs", "SRCS"}, [2]string{"module", strconv.Quote(module)},
				[2]string{"python_version", strconv.Quote(pyVersion)}, [2]string{"architecture", strconv.Quote(arch)})
			if m.exists(path.Join(p.dir, "run.sh")) {
				r.attrs = append(r.attrs, [2]string{"run_sh", strconv.Quote("run.sh")})
			}
			b.add(r)
			m.outputs[path.Join("dist", p.dir, name)] = label(p.dir, name)
			m.translated(p, n, name, r.kind)
			used = append(used, n)
			outs = append(outs, ":"+name)
		case isOpenAPI(cmds):
			name := targetName(n)
			want := path.Join("dist", p.dir, name, "openapi.json")
			for _, w := range cmds {
				for _, a := range w {
					if strings.HasPrefix(a, "dist/") && strings.HasSuffix(a, ".json") && path.Clean(a) != want {
						m.note("%s:%s wrote the spec to %s; pipe writes it to %s: update what reads it", p.Name, n, a, want)
					}
				}
			}
			b.add(&rule{kind: "openapi_schema", name: name, comment: []string{
				fmt.Sprintf("Nx %s: the OpenAPI document, from importing the app: %s", n, want),
			}, attrs: [][2]string{{"srcs", "SRCS"}, {"app", strconv.Quote(app)}}})
			m.outputs[want] = label(p.dir, name)
			m.outputs[path.Dir(want)] = label(p.dir, name)
			m.translated(p, n, name, "openapi_schema")
			used = append(used, n)
			outs = append(outs, ":"+name)
		case isServe(cmds) && !serveDone && (n == "serve" || !p.hasServe()):
			name := targetName(n)
			port := "8000"
			for _, w := range cmds {
				if v, ok := flagValue(w, "--port"); ok {
					if _, err := strconv.Atoi(v); err == nil {
						port = v
					}
				}
			}
			b.add(&rule{kind: "fastapi_serve", name: name, comment: []string{
				fmt.Sprintf("Nx %s: pipe run %s (uvicorn with --reload).", n, label(p.dir, name)),
			}, attrs: [][2]string{{"srcs", "SRCS"}, {"app", strconv.Quote(app)}, {"port", port}}})
			m.translated(p, n, name, "fastapi_serve")
			used = append(used, n)
			serveDone = true
		}
	}
	def := path.Base("/" + p.dir)
	if len(outs) > 0 && !b.names[def] {
		b.add(&rule{kind: "filegroup", name: def, comment: []string{
			fmt.Sprintf("pipe build //%s builds the bundle and the spec.", p.dir),
		}, attrs: [][2]string{{"srcs", starList(outs)}}})
		m.defaults[p.dir] = label(p.dir, def)
	}
	return used
}

// hasServe reports a target named serve, which wins over serve-local.
func (p *nxProject) hasServe() bool { _, ok := p.Targets["serve"]; return ok }

func isBundle(cmds [][]string) bool {
	for _, w := range cmds {
		if len(w) >= 3 && w[0] == "uv" && w[1] == "pip" && w[2] == "install" {
			if _, ok := flagValue(w, "--target"); ok {
				return true
			}
		}
	}
	return false
}

func isOpenAPI(cmds [][]string) bool {
	for _, w := range cmds {
		for _, a := range w {
			if strings.HasSuffix(a, "generate_open_api.py") {
				return true
			}
		}
	}
	return false
}

func isServe(cmds [][]string) bool {
	for _, w := range cmds {
		for i, a := range w {
			if a == "fastapi" && i+1 < len(w) && (w[i+1] == "dev" || w[i+1] == "run") {
				return true
			}
		}
	}
	return false
}

// metadataTarget reads a generate:<api>-metadata target: the open-api
// codegen executor, or the older nx g open-api#ts-metadata command.
func metadataTarget(t *nxTarget) (spec, out string, ok bool) {
	if strings.HasSuffix(t.Executor, ":open-api-codegen") {
		if t.option("generator") != "ts-metadata" {
			return "", "", false
		}
		return t.option("openApiSpecPath"), t.option("outputPath"), t.option("openApiSpecPath") != "" && t.option("outputPath") != ""
	}
	cmds, okw := t.words()
	if !okw {
		return "", "", false
	}
	for _, w := range cmds {
		for _, a := range w {
			if strings.HasSuffix(a, "open-api#ts-metadata") {
				s, ok1 := flagValue(w, "--openApiSpecPath")
				o, ok2 := flagValue(w, "--outputPath")
				return s, o, ok1 && ok2
			}
		}
	}
	return "", "", false
}

// planTypeScript translates a TypeScript project: its metadata targets,
// and a filegroup of its sources for the apps that import them.
func (m *migration) planTypeScript(p *nxProject) []string {
	names := make([]string, 0, len(p.Targets))
	for n := range p.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	var used, generated []string
	for _, n := range names {
		t := p.Targets[n]
		if t == nil {
			continue
		}
		spec, out, ok := metadataTarget(t)
		if !ok {
			continue
		}
		spec, out = path.Clean(spec), path.Clean(out)
		specLabel, found := m.outputs[spec]
		if !found {
			m.skip(p, n, fmt.Sprintf("its spec %s is not made by a target pipe translated: point api_metadata's spec at the target that makes it", spec))
			used = append(used, n)
			continue
		}
		rel, inside := strings.CutPrefix(out, p.dir+"/")
		if p.dir == "" {
			rel, inside = out, !strings.HasPrefix(out, "../")
		}
		if !inside {
			m.skip(p, n, fmt.Sprintf("it writes into %s, outside the project: api_metadata writes into its own package", out))
			used = append(used, n)
			continue
		}
		name := targetName(n)
		m.build(p).add(&rule{kind: "api_metadata", name: name, comment: []string{
			fmt.Sprintf("Nx %s: the API's operations, from its OpenAPI document, as %s/metadata.gen.ts.", n, out),
		}, attrs: [][2]string{{"spec", strconv.Quote(specLabel)}, {"out", strconv.Quote(rel + "/metadata.gen.ts")}}})
		m.metadata[p.dir] = append(m.metadata[p.dir], label(p.dir, name))
		generated = append(generated, rel)
		m.translated(p, n, name, "api_metadata")
		used = append(used, n)
	}
	if m.hasTypeScript(p) {
		def := path.Base("/" + p.dir)
		b := m.build(p)
		if !b.names[def] {
			exclude := ""
			if len(generated) > 0 {
				var ex []string
				for _, g := range generated {
					ex = append(ex, g+"/**")
				}
				exclude = ", exclude = " + starInline(ex)
			}
			comment := []string{"The project's TypeScript sources, for the CDK apps that import them."}
			if len(generated) > 0 {
				comment = append(comment, "Generated files are the api_metadata targets' outputs.")
			}
			b.add(&rule{kind: "filegroup", name: def, comment: comment, attrs: [][2]string{{"srcs", "glob([\"src/**/*.ts\"]" + exclude + ")"}}})
			m.defaults[p.dir] = label(p.dir, def)
		}
		if len(p.Targets) == 0 {
			m.note("%s (%s) has no targets: its BUILD.star is a filegroup of its TypeScript sources, for the apps that import them", p.dir, p.Name)
		}
	}
	return used
}

// hasTypeScript reports TypeScript sources under the project's src/.
func (m *migration) hasTypeScript(p *nxProject) bool {
	found := false
	filepath.WalkDir(filepath.Join(m.root, filepath.FromSlash(p.dir), "src"), func(q string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(q, ".ts") {
			found = true
		}
		return nil
	})
	return found
}

// synthTarget finds a ts#infra app's synth: `cdk synth` run in a
// directory with cdk.json.
func (m *migration) synthTarget(p *nxProject) (string, bool) {
	names := make([]string, 0, len(p.Targets))
	for n := range p.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := p.Targets[n]
		if t == nil {
			continue
		}
		cmds, ok := t.words()
		if !ok {
			continue
		}
		for _, w := range cmds {
			w = stripRunner(w)
			if len(w) >= 2 && w[0] == "cdk" && w[1] == "synth" {
				// cdk reads cdk.json in its working directory, the
				// project's for the generated targets.
				cwd := t.option("cwd")
				if (cwd == "" || path.Clean(cwd) == path.Clean("./"+p.dir)) && m.exists(path.Join(p.dir, "cdk.json")) {
					return n, true
				}
			}
		}
	}
	return "", false
}

// stripRunner drops npx, pnpm exec, yarn and the like before a command.
func stripRunner(w []string) []string {
	for len(w) > 0 {
		switch w[0] {
		case "npx", "pnpx", "bunx", "yarn", "exec":
			w = w[1:]
		case "pnpm", "npm":
			if len(w) > 1 && (w[1] == "exec" || w[1] == "run") {
				w = w[2:]
			} else {
				w = w[1:]
			}
		default:
			return w
		}
	}
	return w
}

// planCDKApp translates a synth target into cdk_stack.
func (m *migration) planCDKApp(p *nxProject, target string) {
	var cdk struct {
		App string `json:"app"`
	}
	if err := json.Unmarshal(m.read(path.Join(p.dir, "cdk.json")), &cdk); err != nil || cdk.App == "" {
		m.skip(p, target, "cdk.json has no \"app\" pipe can read: write the cdk_stack by hand")
		return
	}
	var entry string
	if cmds, err := splitCommand(cdk.App); err == nil {
		for _, w := range cmds {
			for _, a := range w {
				if hasExt(a, ".ts", ".mts", ".cts", ".js", ".mjs", ".cjs", ".tsx") {
					entry = a
				}
			}
		}
	}
	if entry == "" || path.IsAbs(entry) || strings.HasPrefix(path.Clean(entry), "../") {
		m.skip(p, target, fmt.Sprintf("cdk.json's app %q names no entry point inside the project: write the cdk_stack by hand", cdk.App))
		return
	}
	entry = path.Clean(entry)
	name := path.Base("/" + p.dir)
	deps := m.appDeps(p)
	r := &rule{kind: "cdk_stack", name: name, comment: []string{
		fmt.Sprintf("Nx %s: esbuild bundles %s and node synthesizes it into dist/%s/%s/cdk.out", target, entry, p.dir, name),
		"(Nx: dist/" + p.dir + "/cdk.out); pipe deploy deploys the stacks that changed.",
	}, attrs: [][2]string{{"app", strconv.Quote(entry)}, {"srcs", "glob([\"" + path.Dir(entry) + "/**/*.ts\"])"}}}
	if path.Dir(entry) == "." {
		r.attrs[1][1] = "glob([\"*.ts\"])"
	}
	if len(deps) > 0 {
		r.attrs = append(r.attrs, [2]string{"deps", starList(deps)})
	}
	m.build(p).add(r)
	m.translated(p, target, name, "cdk_stack")
	m.note("%s's cloud assembly is at dist/%s/%s/cdk.out (Nx wrote dist/%s/cdk.out): update what reads it (checkov, cdk deploy --app)", p.Name, p.dir, name, p.dir)
}

func hasExt(s string, exts ...string) bool {
	for _, e := range exts {
		if strings.HasSuffix(s, e) {
			return true
		}
	}
	return false
}

var (
	importRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?m)(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"\n]+)['"]`)
	})
	distRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`dist/[A-Za-z0-9_.@/-]+`) })
)

// appDeps finds what the app at p reads beyond its own sources: the
// TypeScript projects it imports (through tsconfig paths aliases or
// relative paths), transitively, with their api_metadata outputs, and
// the dist/ outputs of translated targets those sources name (the
// generated constructs find their bundle by a path relative to their
// source file).
func (m *migration) appDeps(app *nxProject) []string {
	seen := map[string]bool{app.dir: true}
	queue := []*nxProject{app}
	deps := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, f := range m.sources(p) {
			text := m.read(f)
			for _, mm := range importRE().FindAllSubmatch(text, -1) {
				target := m.resolveImport(path.Dir(f), string(mm[1]))
				if target == "" {
					continue
				}
				q := m.owner(target)
				if q == nil || seen[q.dir] {
					continue
				}
				seen[q.dir] = true
				queue = append(queue, q)
				if l, ok := m.defaults[q.dir]; ok {
					deps[l] = true
				}
				for _, l := range m.metadata[q.dir] {
					deps[l] = true
				}
			}
			for _, d := range distRE().FindAll(text, -1) {
				if l := m.distLabel(strings.TrimRight(string(d), "/.")); l != "" {
					deps[l] = true
				}
			}
		}
	}
	var out []string
	for l := range deps {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// distLabel is the translated target that writes dist path d or a
// directory holding it.
func (m *migration) distLabel(d string) string {
	for p := d; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if l, ok := m.outputs[p]; ok {
			return l
		}
	}
	return ""
}

// sources lists a project's TypeScript sources (workspace paths), without
// those of projects nested in it.
func (m *migration) sources(p *nxProject) []string {
	var out []string
	base := filepath.Join(m.root, filepath.FromSlash(p.dir))
	filepath.WalkDir(base, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if q != base && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") || m.exists(relTo(m.root, filepath.Join(q, "project.json")))) {
				return fs.SkipDir
			}
			return nil
		}
		if hasExt(q, ".ts", ".tsx", ".mts", ".cts") && !strings.HasSuffix(q, ".d.ts") {
			out = append(out, relTo(m.root, q))
		}
		return nil
	})
	return out
}

func relTo(root, p string) string {
	r, _ := filepath.Rel(root, p)
	return filepath.ToSlash(r)
}

// resolveImport turns an import specifier in a file of dir into the
// workspace path it names, "" for packages from node_modules.
func (m *migration) resolveImport(dir, spec string) string {
	if strings.HasPrefix(spec, "./") || strings.HasPrefix(spec, "../") {
		p := path.Join(dir, spec)
		if strings.HasPrefix(p, "../") {
			return ""
		}
		return p
	}
	m.pathsOnce.Do(m.loadPaths)
	if t, ok := m.paths[spec]; ok {
		return t
	}
	for alias, t := range m.paths {
		if prefix, ok := strings.CutSuffix(alias, "*"); ok && strings.HasPrefix(spec, prefix) {
			return strings.Replace(t, "*", spec[len(prefix):], 1)
		}
	}
	return ""
}

// loadPaths reads the compilerOptions.paths of tsconfig.base.json (or
// tsconfig.json) at the root: how Nx workspaces name their libraries.
func (m *migration) loadPaths() {
	m.paths = map[string]string{}
	for _, f := range []string{"tsconfig.base.json", "tsconfig.json"} {
		var cfg struct {
			CompilerOptions struct {
				BaseURL string              `json:"baseUrl"`
				Paths   map[string][]string `json:"paths"`
			} `json:"compilerOptions"`
		}
		if json.Unmarshal(stripComments(m.read(f)), &cfg) != nil {
			continue
		}
		for alias, targets := range cfg.CompilerOptions.Paths {
			if len(targets) > 0 {
				m.paths[alias] = path.Clean(path.Join(cfg.CompilerOptions.BaseURL, targets[0]))
			}
		}
		if len(m.paths) > 0 {
			return
		}
	}
}

// stripComments drops // and /* */ comments outside strings (tsconfig
// files may have them).
func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			end := min(j+1, len(b))
			out.Write(b[i:end])
			i = end - 1
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '/':
			for i < len(b) && b[i] != '\n' {
				i++
			}
			out.WriteByte('\n')
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
			i += 2
			for i+1 < len(b) && (b[i] != '*' || b[i+1] != '/') {
				i++
			}
			i++
		default:
			out.WriteByte(b[i])
		}
	}
	return out.Bytes()
}

// owner is the project whose directory holds workspace path p: the
// deepest one.
func (m *migration) owner(p string) *nxProject {
	var best *nxProject
	for _, q := range m.projects {
		if q.dir == "" || p == q.dir || strings.HasPrefix(p, q.dir+"/") {
			if best == nil || len(q.dir) > len(best.dir) {
				best = q
			}
		}
	}
	return best
}

// whyNot says why a target was not translated and what to do instead.
func (m *migration) whyNot(p *nxProject, name string) string {
	t := p.Targets[name]
	exec := ""
	if t != nil {
		exec = t.Executor
	}
	app := path.Base("/" + p.dir)
	switch {
	case t == nil || exec == "" && len(t.commands()) == 0 || exec == "nx:noop":
		return "an Nx aggregate of other targets: pipe build //" + p.dir + " builds the project's targets"
	case name == "test" || strings.HasSuffix(exec, ":test") || strings.Contains(exec, "jest") || strings.Contains(exec, "vitest"):
		return "pipe has no test rule yet: run the tests with their runner (uv run pytest, vitest) as before"
	case name == "lint" || name == "format" || strings.Contains(exec, "ruff") || strings.Contains(exec, "eslint") || strings.Contains(exec, "prettier"):
		return "linters and formatters stay outside the build: run them directly"
	case strings.HasPrefix(exec, "@nxlv/python:") && exec != "@nxlv/python:run-commands" && exec != "@nxlv/python:build":
		return "uv manages the Python environment: run uv (lock, sync, add, remove) directly"
	case exec == "@nxlv/python:build":
		return "builds a wheel; pipe builds the Lambda bundle instead (uv build makes the wheel)"
	case name == "compile":
		return "type checking: set typecheck = True on the cdk_stack that uses these sources, or run tsc directly"
	case name == "serve-local" || name == "dev":
		return "the same server as serve: pipe run " + label(p.dir, "serve")
	case name == "deploy" || name == "deploy-ci":
		return "pipe deploy //" + p.dir + " synthesizes and deploys the stacks that changed"
	case name == "destroy" || name == "destroy-ci":
		return "pipe has no destroy yet: cdk destroy --app dist/" + p.dir + "/" + app + "/cdk.out"
	case name == "bootstrap":
		return "use the CDK CLI directly: cdk bootstrap"
	case name == "cdk":
		return "use the CDK CLI directly"
	case name == "checkov":
		return "reads the cloud assembly, now at dist/" + p.dir + "/" + app + "/cdk.out: run checkov on it, or wrap it in a genrule"
	case strings.HasSuffix(exec, ":open-api-codegen"):
		return fmt.Sprintf("generator %q: pipe's api_metadata makes only ts-metadata (metadata.gen.ts)", t.option("generator"))
	case exec == "nx:run-commands" || exec == "@nxlv/python:run-commands" || exec == "":
		cmds := t.commands()
		shown := strings.Join(cmds, " && ")
		if len(shown) > 80 {
			shown = shown[:77] + "..."
		}
		return fmt.Sprintf("a command pipe does not recognise (%s): a genrule can run it, with its inputs in srcs and its outputs in outs", shown)
	}
	return fmt.Sprintf("executor %s is not one pipe translates: write a genrule, or run it with Nx", exec)
}

// write renders the BUILD.star files, WORKSPACE.star and .gitignore, and
// writes them unless this is a dry run.
func (m *migration) write(opts NxOptions) error {
	var dirs []string
	for d := range m.builds {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	var planned []File
	if !m.exists(engine.WorkspaceFile) {
		planned = append(planned, File{Path: engine.WorkspaceFile, Status: Created, Content: []byte(workspaceFile(path.Base(filepath.ToSlash(m.root))))})
	} else {
		planned = append(planned, File{Path: engine.WorkspaceFile, Status: Kept, Content: m.read(engine.WorkspaceFile)})
	}
	for _, d := range dirs {
		b := m.builds[d]
		p := path.Join(d, engine.BuildFile)
		content := b.render()
		f := File{Path: p, Content: content, Project: b.project.Name, Status: Created}
		if cur, err := os.ReadFile(filepath.Join(m.root, filepath.FromSlash(p))); err == nil {
			switch {
			case bytes.Equal(cur, content):
				f.Status = Unchanged
			case opts.Force:
				f.Status = Overwritten
			default:
				f.Status = Kept
			}
		}
		planned = append(planned, f)
	}
	gi := m.read(".gitignore")
	if merged, added := scaffold.AppendIgnores(gi, []string{"/dist/", "/.pipe/"}); len(added) > 0 {
		st := Updated
		if gi == nil {
			st = Created
		}
		planned = append(planned, File{Path: ".gitignore", Status: st, Content: merged})
	}
	m.res.Files = planned
	if opts.DryRun {
		return nil
	}
	for _, f := range planned {
		if f.Status == Kept || f.Status == Unchanged {
			continue
		}
		if err := files.WriteAtomic(filepath.Join(m.root, filepath.FromSlash(f.Path)), f.Content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func workspaceFile(name string) string {
	return fmt.Sprintf(`# The root of a pipe workspace, migrated from Nx by pipe migrate nx (see
# pipe's docs/migrate-nx.md). Every directory below with a BUILD.star is a
# package; outputs go to dist/ as Nx's did.
workspace(
    name = %q,
)
`, name)
}

// render writes the BUILD.star.
func (b *buildFile) render() []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "# Migrated from %s (Nx project %s) by pipe migrate nx.\n", path.Join(b.project.dir, "project.json"), b.project.Name)
	for _, v := range b.vars {
		fmt.Fprintf(&w, "\n%s\n", v)
	}
	for _, r := range b.rules {
		w.WriteString("\n")
		for _, c := range r.comment {
			fmt.Fprintf(&w, "# %s\n", c)
		}
		fmt.Fprintf(&w, "%s(\n    name = %s,\n", r.kind, strconv.Quote(r.name))
		for _, a := range r.attrs {
			fmt.Fprintf(&w, "    %s = %s,\n", a[0], a[1])
		}
		w.WriteString(")\n")
	}
	return w.Bytes()
}

// starList renders a list of strings, one per line when there are
// several.
func starList(items []string) string {
	if len(items) <= 1 {
		return starInline(items)
	}
	var b strings.Builder
	b.WriteString("[\n")
	for _, it := range items {
		fmt.Fprintf(&b, "        %s,\n", strconv.Quote(it))
	}
	b.WriteString("    ]")
	return b.String()
}

func starInline(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = strconv.Quote(it)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
