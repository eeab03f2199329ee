package cdk

import (
	"path/filepath"
)

// reads are what node reads outside the action's scratch directory in
// the namespace sandbox: its installation and node_modules (the
// scratch directory's node_modules links to it). Where they lie in the
// workspace (a project's own node_modules) or under /tmp, the sandbox
// hides them unless named here; elsewhere they are visible read-only
// anyway.
//
// A synth gets no network unless the target has
// tags = ["requires-network"]: pipe makes no context lookups (the app's
// missing lookups fail the synth, see checkAssembly), so an app that
// reaches the network at synth is reading something its declared inputs
// do not hold.
func (t *toolchain) reads() []string {
	var out []string
	if t.Node != "" {
		out = append(out, nodeInstall(t.Node))
		if real, err := filepath.EvalSymlinks(t.Node); err == nil {
			out = append(out, nodeInstall(real))
		}
	}
	if t.NodeModules != "" {
		out = append(out, t.NodeModules)
		if real, err := filepath.EvalSymlinks(t.NodeModules); err == nil {
			out = append(out, real)
		}
	}
	return out
}

// nodeInstall is the installation node belongs to: the parent of its bin
// directory, else the directory it lies in.
func nodeInstall(node string) string {
	dir := filepath.Dir(node)
	if filepath.Base(dir) == "bin" {
		return filepath.Dir(dir)
	}
	return dir
}
