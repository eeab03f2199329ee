package buildfile

import (
	"fmt"
	"os"
	"path/filepath"

	star "go.starlark.net/starlark"

	"github.com/pipebuild/pipe/internal/engine"
)

// workspaceAttrs are the parameters of workspace(). Each maps to a field of
// engine.Settings; extra names registered by rules land in Settings.Extra.
var workspaceAttrs = []engine.Attr{
	{Name: "name", Type: engine.AttrString},
	{Name: "python", Type: engine.AttrString},
	{Name: "node_modules", Type: engine.AttrString},
	{Name: "python_index", Type: engine.AttrString},
	{Name: "python_interpreters", Type: engine.AttrStringDict},
	{Name: "python_downloads", Type: engine.AttrString},
	{Name: "action_env", Type: engine.AttrStringList},
	{Name: "action_path", Type: engine.AttrString},
	{Name: "remote_cache", Type: engine.AttrString},
	{Name: "remote_instance_name", Type: engine.AttrString},
	{Name: "remote_headers", Type: engine.AttrStringList},
	{Name: "remote_tls_ca", Type: engine.AttrString},
	{Name: "cache_max_age", Type: engine.AttrString},
	// terraform_root and terraform_module: the terraform or tofu binary.
	{Name: "terraform", Type: engine.AttrString},
	// pipe new: the infrastructure code new services get ("cdk" or "terraform").
	{Name: "iac", Type: engine.AttrString, Values: []string{"cdk", "terraform"}},
}

// EvalWorkspace evaluates WORKSPACE.star at the workspace root.
func (ev *Evaluator) EvalWorkspace() (engine.Settings, error) {
	s := engine.Settings{Path: engine.DefaultActionPath, NodeModules: "node_modules", Extra: map[string]any{}}
	file := engine.WorkspaceFile
	src, err := os.ReadFile(filepath.Join(ev.root, file))
	if err != nil {
		return s, fmt.Errorf("read %s: %w", file, err)
	}
	called := false
	var callPos engine.Pos
	workspaceFn := star.NewBuiltin("workspace", func(thread *star.Thread, fn *star.Builtin, args star.Tuple, kwargs []star.Tuple) (star.Value, error) {
		call := callerPos(thread, 1)
		if called {
			return nil, engine.Errorf(ev.callStart(call), "workspace() is called twice; the first call is at %s", callPos)
		}
		called, callPos = true, ev.callStart(call)
		if len(args) > 0 {
			return nil, engine.Errorf(callPos, "workspace: takes keyword arguments only")
		}
		for _, kv := range kwargs {
			name := string(kv[0].(star.String))
			var attr engine.Attr
			found := false
			for _, a := range workspaceAttrs {
				if a.Name == name {
					attr, found = a, true
				}
			}
			if !found {
				var names []string
				for _, a := range workspaceAttrs {
					names = append(names, a.Name)
				}
				hint := ""
				if d := engine.DidYouMean(name, names); d != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", d)
				}
				return nil, engine.Errorf(ev.argPos(call, name), "workspace: unknown attribute %q%s", name, hint)
			}
			v, err := convertAttr(attr, kv[1], "")
			if err != nil {
				return nil, engine.Errorf(ev.argPos(call, name), "workspace: attribute %s: %v", name, err)
			}
			switch name {
			case "name":
				s.Name = v.(string)
			case "python":
				s.Python = v.(string)
			case "node_modules":
				s.NodeModules = v.(string)
			case "python_index":
				s.PythonIndex = v.(string)
			case "python_interpreters":
				s.PythonInterpreters = v.(map[string]string)
			case "python_downloads":
				s.PythonDownloads = v.(string)
			case "action_env":
				s.ActionEnv = v.([]string)
			case "action_path":
				s.Path = v.(string)
			default:
				s.Extra[name] = v
			}
		}
		return star.None, nil
	})
	predeclared := star.StringDict{"workspace": workspaceFn}
	thread := ev.newThread(file, &loadChain{stack: []string{file}})
	if _, err := ev.exec(thread, file, src, predeclared); err != nil {
		return s, err
	}
	if s.Name == "" {
		s.Name = filepath.Base(ev.root)
	}
	return s, nil
}
