package rules

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/cdk"
	"github.com/pipebuild/pipe/internal/rules/python"
)

// Deployment is what a build gives pipe deploy and pipe diff, read from
// the targets' providers. It lives here, above the rule families, because
// it joins two of them (cdk_stack's assemblies, python_bundle's zips) and
// the deploy package, which knows no rule.
type Deployment struct {
	// Targets are the cdk_stack targets among the roots, in label order.
	Targets []engine.Label
	// Stacks are the stacks to deploy, in deployment order: for each
	// target, those its stacks attribute selects (all by default) and the
	// stacks they depend on.
	Stacks []*deploy.Stack
	// Zips are the python_bundle directories of the build and their zips,
	// so publishing a staged copy of one reuses the zip.
	Zips []deploy.PrebuiltZip
}

// DeploymentOf reads the cloud assemblies of the cdk_stack targets among
// roots (AssemblyInfo) and the bundles of every target of the build
// (BundleInfo). root is the workspace root the providers' paths are
// relative to. No cdk_stack among roots is not an error: Targets is empty.
func DeploymentOf(root string, plan *engine.Plan, roots []engine.Label) (*Deployment, error) {
	return DeploymentFrom(root, plan, roots, nil)
}

// DeploymentFrom is DeploymentOf reading the assemblies of the targets in
// assemblies from the directories given there (absolute) instead of their
// outputs: pipe deploy --hotswap deploys an assembly it kept (SynthBases).
func DeploymentFrom(root string, plan *engine.Plan, roots []engine.Label, assemblies map[engine.Label]string) (*Deployment, error) {
	d := &Deployment{}
	abs := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	roots = append([]engine.Label(nil), roots...)
	sort.Slice(roots, func(i, j int) bool { return roots[i].Less(roots[j]) })
	var infos []cdk.AssemblyInfo
	var dirs []string
	for _, l := range roots {
		if info, ok := engine.TargetInfo(plan.Actions, l, cdk.AssemblyKey); ok {
			d.Targets = append(d.Targets, l)
			infos = append(infos, info)
			if dir, ok := assemblies[l]; ok {
				dirs = append(dirs, dir)
			} else {
				dirs = append(dirs, abs(info.Dir))
			}
		}
	}
	if len(d.Targets) == 0 {
		return d, nil
	}
	// The assemblies are read together: two targets deploying the same
	// stack are an error, and the order covers every stack.
	all, err := deploy.LoadAssemblies(dirs)
	if err != nil {
		return nil, err
	}
	keep := map[*deploy.Stack]bool{}
	for i, info := range infos {
		own := stacksUnder(all, dirs[i])
		sel, err := deploy.Select(own, info.Stacks)
		if err != nil {
			return nil, fmt.Errorf("%s: stacks %w", d.Targets[i], err)
		}
		for _, s := range sel {
			keep[s] = true
		}
		// A target's refusal covers every stack of its assembly, the
		// dependencies it pulls in included.
		if info.NoHotswap != "" {
			for _, s := range own {
				s.NoHotswap = info.NoHotswap
			}
		}
	}
	for _, s := range all {
		if keep[s] {
			d.Stacks = append(d.Stacks, s)
		}
	}

	labels := make([]engine.Label, 0, len(plan.Targets.Targets))
	for l := range plan.Targets.Targets {
		labels = append(labels, l)
	}
	sort.Slice(labels, func(i, j int) bool { return labels[i].Less(labels[j]) })
	for _, l := range labels {
		if b, ok := engine.TargetInfo(plan.Actions, l, python.BundleKey); ok {
			d.Zips = append(d.Zips, deploy.PrebuiltZip{Dir: abs(b.Dir), Zip: abs(b.Zip)})
		}
	}
	return d, nil
}

// stacksUnder returns the stacks of the assembly in dir, nested
// assemblies (stages) included.
func stacksUnder(stacks []*deploy.Stack, dir string) []*deploy.Stack {
	var out []*deploy.Stack
	for _, s := range stacks {
		if s.AssemblyDir == dir || strings.HasPrefix(s.AssemblyDir, dir+string(filepath.Separator)) {
			out = append(out, s)
		}
	}
	return out
}
