package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/scaffold"
)

func newCmd(ctx context.Context, g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "new KIND NAME",
		Short: "generate a project into the workspace: pipe new fastapi NAME",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return engine.Usagef("pipe new: no generator %q; the one there is: fastapi (pipe new fastapi NAME)", args[0])
			}
			return cmd.Help()
		},
	}
	c.AddCommand(newFastAPICmd(ctx, g))
	return c
}

func newFastAPICmd(_ context.Context, g *globalFlags) *cobra.Command {
	var opts scaffold.FastAPIOptions
	c := &cobra.Command{
		Use:   "fastapi NAME",
		Short: "generate a FastAPI service, the CDK construct of its API and the infra app that deploys it",
		Long: `Generates a FastAPI service in PARENT-DIR/NAME (BUILD.star with fastapi_project,
pyproject.toml, the app, its tests, run.sh), its API's construct in
` + scaffold.ConstructsDir + ` and a stack for it in the CDK app of ` + scaffold.InfraDir + `.

Running it again regenerates what you have not edited and keeps what you
have: a file is only written when it is absent or still exactly what pipe
wrote.

pipe does not resolve Python dependencies: run uv lock afterwards (it needs
PyPI or your mirror) so uv.lock has the service's, which its bundle is made
from.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return engine.Usagef("pipe new fastapi takes one argument, the service's name (like my-api); got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.dir != "" {
				if fi, err := os.Stat(g.dir); err != nil || !fi.IsDir() {
					// Nx's generator calls the service's location
					// --directory; here that is the global flag.
					return engine.Usagef("-C/--directory %s: not a directory (it runs pipe in DIR, as for every command; to create the service in DIR/NAME, use --parent-dir DIR)", g.dir)
				}
			}
			s, err := openWorkspace(g, cmd.ErrOrStderr())
			if err != nil {
				return noWorkspaceHint(err, "pipe new fastapi")
			}
			opts.Name = args[0]
			if opts.IaC == "" {
				// workspace(iac = ...) is the default every service inherits.
				opts.IaC, _ = s.ws.Settings.Extra["iac"].(string)
			}
			res, err := scaffold.FastAPI(s.ws.Root, opts)
			if res != nil {
				printFastAPIResult(cmd.OutOrStdout(), s.ws, res)
			}
			return err
		},
	}
	f := c.Flags()
	// -C/--directory is the global flag here too (run in DIR), so the
	// service's location has a name of its own.
	f.StringVar(&opts.Directory, "parent-dir", "packages", "create the service in `DIR`/NAME (relative to the workspace root)")
	f.StringVar(&opts.Module, "module-name", "", "the service's Python module (default: NAME with - replaced by _)")
	f.StringVar(&opts.ComputeType, "compute-type", "rest", "API Gateway REST API (rest, streams responses), HTTP API (http), or a Lambda function URL (function-url, streams responses; auth iam or none)")
	f.StringVar(&opts.Auth, "auth", "iam", "who may call the API: iam (signed requests), cognito (user pool tokens) or none")
	f.StringVar(&opts.IntegrationPattern, "integration-pattern", "", "one Lambda function per operation (isolated) or one router function for all (shared); default isolated, shared for function-url")
	f.StringVar(&opts.IaC, "iac", "", "the infrastructure code: cdk (constructs and a CDK app) or terraform (modules in "+scaffold.TerraformDir+" and a root module in "+scaffold.InfraDir+"); default: workspace(iac = ...), else cdk")
	return c
}

func printFastAPIResult(w io.Writer, ws *engine.Workspace, res *scaffold.Result) {
	o := res.Options
	api := map[string]string{"rest": "REST API", "http": "HTTP API", "function-url": "Lambda function URL"}[o.ComputeType]
	auth := map[string]string{"iam": "IAM auth", "cognito": "Cognito auth", "none": "no auth"}[o.Auth]
	functions := map[string]string{"isolated": "a Lambda function per operation", "shared": "one router Lambda function"}[o.IntegrationPattern]
	if o.ComputeType == scaffold.FunctionURL {
		functions = "one Lambda function, streaming responses"
	}
	fmt.Fprintf(w, "FastAPI service //%s (module %s): %s, %s, %s\n\n", res.Service, o.Module, api, auth, functions)
	width := 0
	for _, f := range res.Files {
		width = max(width, len(f.Status))
	}
	for _, f := range res.Files {
		fmt.Fprintf(w, "  %-*s  %s\n", width, f.Status, f.Path)
	}
	if kept := res.Kept(); len(kept) > 0 {
		fmt.Fprintf(w, "\nKept as you edited them (pipe writes a file only while it is exactly what pipe wrote):\n")
		for _, f := range kept {
			if f.ByHand == "" {
				fmt.Fprintf(w, "  %s\n", f.Path)
				continue
			}
			fmt.Fprintf(w, "  %s: add by hand\n", f.Path)
			for _, l := range strings.Split(f.ByHand, "\n") {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
	if nm := ws.Settings.NodeModules; nm != "" && path.Clean(nm) != "node_modules" {
		fmt.Fprintf(w, "\nWORKSPACE.star sets node_modules = %q: install package.json's packages there.\n", nm)
	}
	if o.IaC == scaffold.IaCTerraform {
		printTerraformSteps(w, res)
		return
	}
	steps := [][2]string{
		{"uv lock", "pin the service's dependencies in uv.lock (pipe cannot: it needs PyPI or your mirror)"},
		{"npm install", "aws-cdk-lib, constructs and TypeScript for " + scaffold.InfraDir},
		{"pipe build //...", "OpenAPI spec, metadata.gen.ts, Lambda bundle, type check and CDK synth"},
		{"pipe run //" + res.Service + ":serve", fmt.Sprintf("the app on http://localhost:%d, reloading on edits", res.Port)},
		{"pipe test //" + res.Service + "/...", "the app's tests and ruff, on the locked environment"},
		{"pipe deploy", "deploy the stacks that changed"},
	}
	width = 0
	for _, s := range steps {
		width = max(width, len(s[0]))
	}
	fmt.Fprintf(w, "\nNext:\n")
	for _, s := range steps {
		fmt.Fprintf(w, "  %-*s  # %s\n", width, s[0], s[1])
	}
}
