package scaffold

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
)

// InitResult is what Init did and what it found in the directory.
type InitResult struct {
	Root  string // absolute
	Name  string // the workspace's name
	Files []FileResult
	// Found describes the tools' files already in the directory, one
	// finding each, with what to do about it.
	Found []string
	// Parent is the workspace Root was inside before, if any: the new
	// WORKSPACE.star makes Root a workspace of its own.
	Parent string
	// Nx reports an nx.json: pipe migrate nx is the next step.
	Nx bool
}

// initIgnores are the .gitignore lines a workspace needs: pipe's outputs
// and its per-workspace state. Anchored, so a package's own dist/ stays
// visible.
var initIgnores = []string{"/dist/", "/.pipe/"}

// Init makes dir (created if missing) the root of a pipe workspace: a
// WORKSPACE.star named after the directory, and .gitignore entries for
// dist/ and .pipe/. It never overwrites: an existing WORKSPACE.star is
// kept and .gitignore is only appended to, so running it twice is safe.
func Init(dir string) (*InitResult, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(root); err == nil && !fi.IsDir() {
		return nil, usagef("pipe init %s: not a directory", dir)
	}
	res := &InitResult{Root: root, Name: filepath.Base(root)}
	if parent, err := engine.FindWorkspace(filepath.Dir(root)); err == nil {
		if _, err := os.Stat(filepath.Join(root, engine.WorkspaceFile)); err != nil {
			res.Parent = parent
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}

	wsFile := FileResult{Path: engine.WorkspaceFile, Status: Kept}
	if _, err := os.Stat(filepath.Join(root, engine.WorkspaceFile)); errors.Is(err, fs.ErrNotExist) {
		if err := writeFile(root, engine.WorkspaceFile, []byte(workspaceFile(res.Name)), 0o644); err != nil {
			return nil, err
		}
		wsFile.Status = Created
	} else if err != nil {
		return nil, err
	} else {
		wsFile.Status = Unchanged
	}
	res.Files = append(res.Files, wsFile)

	cur, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	gi := FileResult{Path: ".gitignore", Status: Unchanged}
	if merged, missing := AppendIgnores(cur, initIgnores); len(missing) > 0 {
		gi.Status = Updated
		if cur == nil {
			gi.Status = Created
		}
		if err := writeFile(root, ".gitignore", merged, 0o644); err != nil {
			return nil, err
		}
	}
	res.Files = append(res.Files, gi)
	res.Found = survey(root)
	_, err = os.Stat(filepath.Join(root, "nx.json"))
	res.Nx = err == nil
	return res, nil
}

// workspaceFile is the WORKSPACE.star Init writes.
func workspaceFile(name string) string {
	return fmt.Sprintf(`# The root of a pipe workspace: every directory below it that holds a
# BUILD.star is a package, //path/to/dir. pipe keeps its outputs in dist/
# and its state in .pipe/.
workspace(
    name = %q,
)
`, name)
}

// AppendIgnores adds the lines of want that cur lacks (comparing without
// leading and trailing slashes, as both spellings ignore the root's
// directory here) and returns the new content and what was added.
func AppendIgnores(cur []byte, want []string) ([]byte, []string) {
	have := map[string]bool{}
	for _, l := range strings.Split(string(cur), "\n") {
		have[strings.Trim(strings.TrimSpace(l), "/")] = true
	}
	var missing []string
	for _, l := range want {
		if !have[strings.Trim(l, "/")] {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return cur, nil
	}
	out := append([]byte(nil), cur...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, strings.Join(missing, "\n")+"\n"...), missing
}

// survey describes what other tools keep in root, for the user to know
// what pipe will and will not pick up.
func survey(root string) []string {
	var found []string
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			return nil
		}
		return b
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(root, name))
		return err == nil
	}
	if exists("nx.json") {
		found = append(found, "an Nx workspace (nx.json): pipe migrate nx writes a BUILD.star for each of its projects (see pipe migrate nx --help)")
	}
	if b := read("pyproject.toml"); b != nil {
		w, err := readUVWorkspace(b)
		switch {
		case err != nil:
			found = append(found, fmt.Sprintf("pyproject.toml, which pipe could not read (%v)", err))
		case w.Tool.UV.Workspace != nil:
			msg := "a uv workspace (pyproject.toml)"
			if m := w.Tool.UV.Workspace.Members; len(m) > 0 {
				msg += " with members " + strings.Join(m, ", ")
			}
			if exists("uv.lock") {
				msg += "; python_bundle takes each service's wheels from its uv.lock"
			} else {
				msg += "; run uv lock: python_bundle takes each service's wheels from uv.lock"
			}
			found = append(found, msg)
		default:
			msg := "a Python project (pyproject.toml)"
			if exists("uv.lock") {
				msg += " locked with uv (uv.lock)"
			}
			found = append(found, msg)
		}
	}
	if b := read("package.json"); b != nil {
		var pj struct {
			Type       string          `json:"type"`
			Workspaces json.RawMessage `json:"workspaces"`
		}
		if err := json.Unmarshal(b, &pj); err != nil {
			found = append(found, fmt.Sprintf("package.json, which pipe could not read (%v)", err))
		} else {
			msg := "an npm package (package.json)"
			if ws := npmWorkspaces(pj.Workspaces); len(ws) > 0 {
				msg = "an npm workspace (package.json) with workspaces " + strings.Join(ws, ", ")
			}
			if pj.Type == "module" {
				msg += "; its \"type\": \"module\" makes cdk_stack bundle CDK apps below it as ES modules"
			}
			if exists("node_modules/aws-cdk-lib/package.json") {
				msg += "; cdk_stack finds aws-cdk-lib in node_modules"
			} else {
				msg += "; run npm install so cdk_stack finds aws-cdk-lib in node_modules"
			}
			found = append(found, msg)
		}
	}
	if n := countBuildFiles(root); n > 0 {
		found = append(found, fmt.Sprintf("%d BUILD.star file%s: the packages of this workspace", n, map[bool]string{true: "s"}[n > 1]))
	}
	return found
}

// npmWorkspaces reads package.json's "workspaces": a list of globs, or an
// object whose "packages" is one (yarn's form).
func npmWorkspaces(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var obj struct {
		Packages []string `json:"packages"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Packages
	}
	return nil
}

// countBuildFiles counts the BUILD.star files of the workspace at root.
func countBuildFiles(root string) int {
	pkgs, err := engine.FindPackages(root, "")
	if err != nil {
		return 0
	}
	return len(pkgs)
}
