package cdk

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
		real, err := filepath.EvalSymlinks(t.NodeModules)
		if err == nil {
			out = append(out, real)
			out = append(out, linkedPackages(real)...)
		}
	}
	return out
}

// linkedPackages are the real paths of the packages node_modules (real)
// links to outside itself: a package linked from a store or a checkout
// elsewhere. Where such a target lies under /tmp or in the hidden
// workspace, node would find a dangling link unless it is shown too; node
// resolves a package by its real path, which is where it is shown. Links
// into node_modules itself (pnpm's into .pnpm) are shown with it already.
// A link that passes through another link in a hidden place is not
// followed that way: node finds it dangling.
func linkedPackages(real string) []string {
	var out []string
	var scan func(dir string, scoped bool)
	scan = func(dir string, scoped bool) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				if target, err := filepath.EvalSymlinks(p); err == nil && !within(target, real) {
					out = append(out, target)
				}
			case e.IsDir() && !scoped && strings.HasPrefix(e.Name(), "@"):
				scan(p, true)
			}
		}
	}
	scan(real, false)
	return out
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
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
