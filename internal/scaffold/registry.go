package scaffold

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2"
)

// stackEntry is one service as the shared files list it.
type stackEntry struct {
	Name, Pascal string
	Dir          string // the service's package path; "" when the file does not say
}

// registryData is what the shared files' templates see.
type registryData struct {
	ConstructsDir, InfraDir string
	Stacks                  []stackEntry
}

// registry is a file that lists every generated service. Its entries are
// read back with parse; the file was not edited when rendering them gives
// it again byte for byte.
type registry struct {
	tmpl   string
	parse  func(content []byte) []stackEntry
	byHand func(e stackEntry) string
}

var (
	metadataRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?m)^api_metadata\(\n    name = "([^"\n]+)-metadata",\n    spec = "//([^"\n]+):openapi",\n`)
	})
	bundleRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`"//([^"\n:]+):bundle"`) })
	stackRE  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?m)^import \{ \w+Stack \} from '\./stacks/([^'\n]+)-stack';$`)
	})
)

var constructsBuild = registry{
	tmpl: "constructs/BUILD.star.tmpl",
	parse: func(b []byte) []stackEntry {
		var out []stackEntry
		for _, m := range metadataRE().FindAllSubmatch(b, -1) {
			out = append(out, entryOf(string(m[1]), string(m[2])))
		}
		return out
	},
	byHand: func(e stackEntry) string {
		return fmt.Sprintf("api_metadata(\n    name = %q,\n    spec = \"//%s:openapi\",\n    out = \"src/generated/%s/metadata.gen.ts\",\n    runtime = \"//%s:bundle\",\n)",
			e.Name+"-metadata", e.Dir, e.Name, e.Dir)
	},
}

var infraBuild = registry{
	tmpl: "infra/BUILD.star.tmpl",
	parse: func(b []byte) []stackEntry {
		var out []stackEntry
		for _, m := range bundleRE().FindAllSubmatch(b, -1) {
			dir := string(m[1])
			out = append(out, entryOf(path.Base(dir), dir))
		}
		return out
	},
	byHand: func(e stackEntry) string {
		return fmt.Sprintf("in cdk_stack's deps:\n    \"//%s\",\n    \"//%s:%s-metadata\",\n    \"//%s:bundle\",",
			ConstructsDir, ConstructsDir, e.Name, e.Dir)
	},
}

var infraMain = registry{
	tmpl: "infra/src/main.ts.tmpl",
	parse: func(b []byte) []stackEntry {
		var out []stackEntry
		for _, m := range stackRE().FindAllSubmatch(b, -1) {
			out = append(out, entryOf(string(m[1]), ""))
		}
		return out
	},
	byHand: func(e stackEntry) string {
		return fmt.Sprintf("import { %sStack } from './stacks/%s-stack';\nnew %sStack(app, '%sStack', { env });",
			e.Pascal, e.Name, e.Pascal, e.Pascal)
	},
}

func entryOf(name, dir string) stackEntry {
	return stackEntry{Name: name, Pascal: PascalCase(name), Dir: dir}
}

func renderRegistry(r registry, entries []stackEntry) ([]byte, error) {
	return render(r.tmpl, registryDataOf(entries))
}

func registryDataOf(entries []stackEntry) registryData {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b stackEntry) int { return strings.Compare(a.Name, b.Name) })
	return registryData{ConstructsDir: ConstructsDir, InfraDir: InfraDir, Stacks: sorted}
}

// isEarlierRendering says whether cur is what an earlier release wrote
// for entries, not edited since.
func isEarlierRendering(r registry, entries []stackEntry, cur []byte) (bool, error) {
	earlier, err := previousRenderings(r.tmpl, registryDataOf(entries))
	if err != nil {
		return false, err
	}
	return isPrevious(cur, earlier), nil
}

// registryFile plans a shared file that must list e.
func registryFile(rel string, r registry, e stackEntry) planned {
	return planned{path: rel, merge: func(cur []byte) ([]byte, Status, string, error) {
		if cur == nil {
			b, err := renderRegistry(r, []stackEntry{e})
			return b, Created, "", err
		}
		entries := r.parse(cur)
		// An earlier release's rendering is brought up to date, listing
		// the same services, whether or not e is new.
		earlier, err := isEarlierRendering(r, entries, cur)
		if err != nil {
			return nil, "", "", err
		}
		for _, have := range entries {
			if have.Name != e.Name {
				continue
			}
			if have.Dir != "" && have.Dir != e.Dir {
				return nil, "", "", usagef("%s already lists a service named %s, at //%s: service names are unique in a workspace "+
					"(its CDK classes and stacks are named after it); choose another name", rel, e.Name, have.Dir)
			}
			if earlier {
				b, err := renderRegistry(r, entries)
				return b, Updated, "", err
			}
			return nil, Unchanged, "", nil
		}
		pristine, err := renderRegistry(r, entries)
		if err != nil {
			return nil, "", "", err
		}
		if !earlier && !bytes.Equal(pristine, cur) {
			return nil, Kept, r.byHand(e), nil
		}
		b, err := renderRegistry(r, append(entries, e))
		return b, Updated, "", err
	}}
}

// mergeGitignore appends the patterns a workspace needs ignored and the
// file lacks; existing lines are never touched.
func mergeGitignore(cur []byte) ([]byte, Status, string, error) {
	want, err := render("root/gitignore.tmpl", nil)
	if err != nil {
		return nil, "", "", err
	}
	if cur == nil {
		return want, Created, "", nil
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(cur), "\n") {
		have[strings.Trim(strings.TrimSpace(l), "/")] = true
	}
	var missing []string
	for _, l := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		if !have[strings.Trim(l, "/")] {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return nil, Unchanged, "", nil
	}
	out := append([]byte(nil), cur...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, strings.Join(missing, "\n")+"\n"...)
	return out, Updated, "", nil
}

// uvWorkspace is the part of a pyproject.toml that says which projects a
// uv workspace holds.
type uvWorkspace struct {
	Tool struct {
		UV struct {
			Workspace *struct {
				Members []string `toml:"members"`
				Exclude []string `toml:"exclude"`
			} `toml:"workspace"`
		} `toml:"uv"`
	} `toml:"tool"`
}

func readUVWorkspace(b []byte) (*uvWorkspace, error) {
	var w uvWorkspace
	if err := toml.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// inWorkspace reports whether the members (globs, as uv reads them) hold dir.
func (w *uvWorkspace) inWorkspace(dir string) bool {
	ws := w.Tool.UV.Workspace
	if ws == nil {
		return false
	}
	match := func(patterns []string) bool {
		for _, p := range patterns {
			if ok, _ := path.Match(path.Clean(p), dir); ok {
				return true
			}
		}
		return false
	}
	return match(ws.Members) && !match(ws.Exclude)
}

var (
	workspaceTableRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^\[tool\.uv\.workspace\][ \t]*(#.*)?$`) })
	membersRE        = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^members[ \t]*=[ \t]*\[`) })
)

// mergeWorkspaceMembers makes the root pyproject.toml a uv workspace that
// has dir among its members: uv lock only locks members, and python_bundle
// finds a service's dependencies in that lock. A file pipe wrote is
// rendered again; a user's file only gains the member.
func mergeWorkspaceMembers(cur []byte, dir string) ([]byte, Status, string, error) {
	byHand := fmt.Sprintf("add %q to members in [tool.uv.workspace]", dir)
	if cur == nil {
		b, err := render("root/pyproject.toml.tmpl", map[string]any{"Members": []string{dir}})
		return b, Created, "", err
	}
	w, err := readUVWorkspace(cur)
	if err != nil {
		return nil, Kept, byHand + " (pipe could not read the file: " + err.Error() + ")", nil
	}
	if w.inWorkspace(dir) {
		return nil, Unchanged, "", nil
	}
	var members []string
	if w.Tool.UV.Workspace != nil {
		members = w.Tool.UV.Workspace.Members
	}
	pristine, err := render("root/pyproject.toml.tmpl", map[string]any{"Members": members})
	if err != nil {
		return nil, "", "", err
	}
	var out []byte
	if bytes.Equal(pristine, cur) {
		all := append(slices.Clone(members), dir)
		slices.Sort(all)
		out, err = render("root/pyproject.toml.tmpl", map[string]any{"Members": all})
		if err != nil {
			return nil, "", "", err
		}
	} else if out = insertMember(cur, dir, w.Tool.UV.Workspace != nil); out == nil {
		return nil, Kept, byHand, nil
	}
	// Whatever was edited, the result must read back as intended.
	if check, err := readUVWorkspace(out); err != nil || !check.inWorkspace(dir) {
		return nil, Kept, byHand, nil
	}
	return out, Updated, "", nil
}

// insertMember adds dir to the members array of a [tool.uv.workspace]
// table written the usual way, or appends such a table when the file has
// none; nil when the file is laid out some other way.
func insertMember(cur []byte, dir string, hasWorkspace bool) []byte {
	quoted := fmt.Sprintf("%q", dir)
	loc := workspaceTableRE().FindIndex(cur)
	if loc == nil {
		if hasWorkspace {
			return nil // an inline table or dotted keys: leave it to the user
		}
		out := append([]byte(nil), cur...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		return append(out, fmt.Sprintf("\n[tool.uv.workspace]\nmembers = [\n    %s,\n]\n", quoted)...)
	}
	tableStart := loc[1]
	tableEnd := len(cur)
	if next := regexp.MustCompile(`(?m)^\[`).FindIndex(cur[tableStart:]); next != nil {
		tableEnd = tableStart + next[0]
	}
	table := cur[tableStart:tableEnd]
	m := membersRE().FindIndex(table)
	if m == nil {
		// No members yet: the first line of the table gets them.
		at := tableStart
		if nl := bytes.IndexByte(cur[at:], '\n'); nl >= 0 {
			at += nl + 1
		} else {
			return append(append([]byte(nil), cur...), fmt.Sprintf("\nmembers = [%s]\n", quoted)...)
		}
		return replaceRange(cur, at, at, fmt.Sprintf("members = [%s]\n", quoted))
	}
	open := tableStart + m[1] // just after '['
	closing := bytes.IndexByte(cur[open:tableEnd], ']')
	if closing < 0 {
		return nil
	}
	closing += open
	body := cur[open:closing]
	if !bytes.Contains(body, []byte("\n")) {
		// members = ["a", "b"]
		trimmed := bytes.TrimRight(body, " \t")
		sep := ", "
		if len(bytes.TrimSpace(trimmed)) == 0 {
			sep = ""
		} else if bytes.HasSuffix(trimmed, []byte(",")) {
			sep = " "
		}
		return replaceRange(cur, open+len(trimmed), closing, sep+quoted)
	}
	// One member a line: a new line before the one holding ']', indented
	// like the members above it.
	lineStart := bytes.LastIndexByte(cur[:closing], '\n') + 1
	indent := "    "
	if prev := bytes.TrimRight(cur[open:lineStart], "\n"); len(prev) > 0 {
		last := prev[bytes.LastIndexByte(prev, '\n')+1:]
		indent = string(last[:len(last)-len(bytes.TrimLeft(last, " \t"))])
		if !bytes.HasSuffix(bytes.TrimSpace(prev), []byte(",")) && len(bytes.TrimSpace(prev)) > 0 {
			// The last member has no trailing comma: give it one.
			end := open + len(prev)
			return replaceRange(cur, end, end, ",\n"+indent+quoted+",")
		}
	}
	return replaceRange(cur, lineStart, lineStart, indent+quoted+",\n")
}

// replaceRange returns b with b[from:to] replaced by s.
func replaceRange(b []byte, from, to int, s string) []byte {
	out := append([]byte(nil), b[:from]...)
	out = append(out, s...)
	return append(out, b[to:]...)
}

// mergePackageJSON creates the workspace's package.json, or, when one
// exists without the CDK, says what to add to it: pipe does not rewrite a
// user's JSON.
func mergePackageJSON(cur, want []byte) ([]byte, Status, string, error) {
	switch {
	case cur == nil:
		return want, Created, "", nil
	case bytes.Equal(cur, want) || bytes.Contains(cur, []byte(`"aws-cdk-lib"`)):
		return nil, Unchanged, "", nil
	}
	return nil, Kept, "add to dependencies: \"aws-cdk-lib\": \"2.276.0\", \"constructs\": \"10.8.1\"; " +
		"to devDependencies: \"@types/node\": \"20.19.43\", \"aws-cdk\": \"2.1148.1\", \"typescript\": \"5.9.3\"; then npm install", nil
}
