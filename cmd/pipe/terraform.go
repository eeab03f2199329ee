package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/rules/terraform"
	"github.com/pipebuild/pipe/internal/scaffold"
	"github.com/pipebuild/pipe/internal/tfcli"
	"github.com/pipebuild/pipe/internal/tfdeploy"
)

// terraformRoots reads the terraform_root targets among roots (their
// RootInfo and the fingerprint the build wrote) as roots to deploy.
func terraformRoots(ws *engine.Workspace, plan *engine.Plan, roots []engine.Label) ([]*tfdeploy.Root, error) {
	roots = append([]engine.Label(nil), roots...)
	sort.Slice(roots, func(i, j int) bool { return roots[i].Less(roots[j]) })
	var out []*tfdeploy.Root
	var cacheDir string
	for _, l := range roots {
		info, ok := engine.TargetInfo(plan.Actions, l, terraform.RootKey)
		if !ok {
			continue
		}
		if info.Binary == "" {
			return nil, fmt.Errorf("%s: %s", l, info.BinaryErr)
		}
		in, err := terraform.ReadInputs(ws.Abs(info.Inputs))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		if cacheDir == "" {
			if cacheDir, err = cache.DefaultDir(); err != nil {
				return nil, err
			}
		}
		name := l.Name
		if l.Pkg != "" {
			name = l.Pkg + "/" + l.Name
		}
		env := terraformEnv()
		out = append(out, &tfdeploy.Root{
			Name:        l.String(),
			Dir:         ws.Abs(info.Dir),
			ShowDir:     orDot(info.Dir),
			StateDir:    filepath.Join(ws.StateDir(), "terraform", filepath.FromSlash(name)),
			CLI:         tfcli.CLI{Path: info.Binary, CacheDir: cacheDir, PathEnv: info.PathEnv, Env: env},
			Vars:        info.Vars,
			Backend:     info.Backend,
			Fingerprint: deployFingerprint(in.Fingerprint, env),
		})
	}
	return out, nil
}

func orDot(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// terraformEnv is what of the user's environment reaches terraform at
// deploy: cloud credentials and endpoints (as the CDK path's SDK reads
// them) and TF_VAR_ values. Nothing else, so a TF_CLI_ARGS in a shell does
// not change a deploy.
func terraformEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "TF_VAR_") || strings.HasPrefix(k, "TF_TOKEN_") || k == "TF_LOG" || k == "TF_LOG_PATH" {
			env[k] = v
		}
	}
	return env
}

// deployFingerprint adds to the build's fingerprint what of the deploy's
// environment changes a plan: TF_VAR_ values, and the AWS settings that
// choose the account, region and endpoints. Credentials are left out:
// they rotate without changing what a plan does, and would defeat the
// skip.
func deployFingerprint(build string, env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		switch k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "TF_LOG", "TF_LOG_PATH":
			continue
		}
		if strings.HasPrefix(k, "TF_TOKEN_") {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return build
	}
	sort.Strings(keys)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", build)
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(env[k]), env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// planTerraform plans every root, printing each plan.
func planTerraform(ctx context.Context, roots []*tfdeploy.Root, opt tfdeploy.Options, w io.Writer) ([]*tfdeploy.Plan, error) {
	var plans []*tfdeploy.Plan
	for _, r := range roots {
		p, err := tfdeploy.PlanRoot(ctx, r, opt)
		if err != nil {
			return plans, err
		}
		renderTerraformPlan(w, p)
		plans = append(plans, p)
	}
	return plans, nil
}

// renderTerraformPlan prints a plan's summary: the counts, one line per
// resource change and each broadening change.
func renderTerraformPlan(w io.Writer, p *tfdeploy.Plan) {
	name := p.Root.Name
	switch {
	case p.Skip:
		fmt.Fprintf(w, "%s: no changes since the last apply (skipped)\n", name)
		return
	case p.Destroy && p.Empty():
		fmt.Fprintf(w, "%s: nothing to destroy\n", name)
		return
	case p.Empty():
		fmt.Fprintf(w, "%s: no changes\n", name)
		return
	}
	add, change, destroy := p.Counts()
	cached := ""
	if p.Cached {
		cached = " (saved plan)"
	}
	fmt.Fprintf(w, "%s: plan: %d to add, %d to change, %d to destroy%s\n", name, add, change, destroy, cached)
	for _, c := range p.Changes {
		fmt.Fprintf(w, "  %-3s %s\n", changeMark(c.Action), c.Address)
	}
	for _, o := range p.Outputs {
		fmt.Fprintf(w, "  %-3s output.%s\n", changeMark(o.Action), o.Name)
	}
	for _, b := range p.Broadening {
		fmt.Fprintf(w, "  [!] broadens access: %s\n", b)
	}
}

func changeMark(a tfdeploy.Action) string {
	switch a {
	case tfdeploy.Create:
		return "+"
	case tfdeploy.Update:
		return "~"
	case tfdeploy.Replace:
		return "-/+"
	case tfdeploy.Delete:
		return "-"
	case tfdeploy.Read:
		return "<="
	}
	return string(a)
}

// runTerraformDeploy plans, asks where --require-approval says so,
// applies and prints the outputs of each root, in label order. A root
// that fails stops the roots after it.
func runTerraformDeploy(ctx context.Context, roots []*tfdeploy.Root, f *deployFlags, approval deploy.Approval, stdout, stderr io.Writer) error {
	start := time.Now()
	plans, err := planTerraform(ctx, roots, tfdeploy.Options{Approval: approval, Force: f.force}, stderr)
	if err != nil {
		return terraformFailed(err, stderr)
	}
	if f.dryRun {
		return nil
	}
	var prompt tfdeploy.Prompt
	if term.IsTerminal(int(os.Stdin.Fd())) {
		prompt = terminalPrompt(stderr)
	}
	var lines []string
	outputs := map[string]map[string]string{}
	applied, skipped := 0, 0
	for _, p := range plans {
		t := time.Now()
		res, err := tfdeploy.Apply(ctx, p, prompt)
		if err != nil {
			return terraformFailed(err, stderr)
		}
		if res.Applied {
			applied++
			fmt.Fprintf(stderr, "%s: applied (%.2fs)\n", p.Root.Name, time.Since(t).Seconds())
		} else {
			skipped++
		}
		for _, k := range slices.Sorted(maps.Keys(res.Outputs)) {
			lines = append(lines, fmt.Sprintf("%s.%s = %s", p.Root.Name, k, res.Outputs[k]))
		}
		if len(res.Outputs) > 0 {
			outputs[p.Root.Name] = res.Outputs
		}
	}
	fmt.Fprintf(stderr, "%d terraform root%s: %d applied, %d unchanged (%.2fs)\n", len(plans), plural(len(plans)), applied, skipped, time.Since(start).Seconds())
	if len(lines) > 0 {
		fmt.Fprintln(stdout, "Outputs:")
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
	}
	if f.outputsFile != "" {
		// {root: {output: value}}, the shape of the stacks' file.
		b, _ := json.MarshalIndent(outputs, "", "  ")
		if err := files.WriteAtomic(f.outputsFile, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "pipe: --outputs-file: %v\n", err)
			return &exitError{code: 1}
		}
	}
	return nil
}

// terraformFailed prints a failed plan or apply and returns its exit
// code: 130 when interrupted, else 1.
func terraformFailed(err error, stderr io.Writer) error {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "pipe: interrupted; terraform was stopped (the state holds what it finished)")
		return &exitError{code: 130}
	}
	fmt.Fprintf(stderr, "pipe: %v\n", err)
	return &exitError{code: 1}
}

// runTerraformDiff prints each root's plan; differs says a plan changes
// something.
func runTerraformDiff(ctx context.Context, roots []*tfdeploy.Root, stdout, stderr io.Writer) (differs bool, err error) {
	plans, err := planTerraform(ctx, roots, tfdeploy.Options{Force: true}, stdout)
	if err != nil {
		return false, terraformFailed(err, stderr)
	}
	for _, p := range plans {
		if !p.Empty() {
			differs = true
		}
	}
	return differs, nil
}

// runTerraformDestroy plans the destruction of each root, in reverse
// label order, and applies it; the caller asked for confirmation.
func runTerraformDestroy(ctx context.Context, roots []*tfdeploy.Root, stderr io.Writer) error {
	start := time.Now()
	destroyed := 0
	for i := len(roots) - 1; i >= 0; i-- {
		p, err := tfdeploy.PlanRoot(ctx, roots[i], tfdeploy.Options{Destroy: true, Approval: deploy.ApproveNever})
		if err != nil {
			return terraformFailed(err, stderr)
		}
		renderTerraformPlan(stderr, p)
		res, err := tfdeploy.Apply(ctx, p, nil)
		if err != nil {
			return terraformFailed(err, stderr)
		}
		if res.Applied {
			destroyed++
			fmt.Fprintf(stderr, "%s: destroyed\n", p.Root.Name)
		}
	}
	fmt.Fprintf(stderr, "%d terraform root%s: %d destroyed (%.2fs)\n", len(roots), plural(len(roots)), destroyed, time.Since(start).Seconds())
	return nil
}

// terraformNames lists the roots for a confirmation question.
func terraformNames(roots []*tfdeploy.Root) []string {
	var names []string
	for _, r := range roots {
		names = append(names, "terraform "+r.Name)
	}
	return names
}

// printTerraformSteps is what to do after pipe new fastapi --iac terraform.
func printTerraformSteps(w io.Writer, res *scaffold.Result) {
	steps := [][2]string{
		{"uv lock", "pin the service's dependencies in uv.lock (pipe cannot: it needs PyPI or your mirror)"},
		{"pipe build //...", "OpenAPI spec, Lambda bundle, terraform fmt and validate (validate needs the AWS provider), the root's fingerprint"},
		{"pipe run //" + res.Service + ":serve", "the app on http://localhost:8000, reloading on edits"},
		{"pipe test //" + res.Service + "/...", "the app's tests and ruff, on the locked environment"},
		{"pipe deploy //" + scaffold.InfraDir, "plan and apply the root module (skipped while nothing changed)"},
	}
	width := 0
	for _, s := range steps {
		width = max(width, len(s[0]))
	}
	fmt.Fprintf(w, "\nNext:\n")
	for _, s := range steps {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, s[0], s[1])
	}
}
