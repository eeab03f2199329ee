package scaffold

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// The infrastructure code a generated service gets: CDK constructs and an
// app (the default), or Terraform modules and a root module.
const (
	IaCCDK       = "cdk"
	IaCTerraform = "terraform"
)

// IaCProviders are the values of --iac and workspace(iac = ...), the
// default first.
var IaCProviders = []string{IaCCDK, IaCTerraform}

// terraformComputeTypes are the compute types the Terraform modules cover:
// API Gateway's two kinds. A function URL is CDK only for now.
var terraformComputeTypes = []string{"rest", "http"}

// TerraformDir holds the Terraform modules, as the Nx generator lays them
// out: src/core (the APIs' building blocks, the runtime configuration) and
// src/app/apis/<service>.
const TerraformDir = "packages/common/terraform"

// Snake is the service's name as a Terraform identifier (module and
// output names).
func (s service) Snake() string { return strings.ReplaceAll(s.Name, "-", "_") }

// Snake is the entry's name as a Terraform identifier.
func (e stackEntry) Snake() string { return strings.ReplaceAll(e.Name, "-", "_") }

// TerraformDir lets the shared files' templates name the modules' package.
func (registryData) TerraformDir() string { return TerraformDir }

// tfRootService is what the root module's per-service file sees: paths
// are relative to the root module, where terraform resolves them.
type tfRootService struct {
	service
	BundleZip, OpenAPISpec string
}

// moduleBuild is what a module's BUILD.star template sees.
type moduleBuild struct {
	Doc, Name string
	Deps      []string
}

var runtimeEntryRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^    # //([^\s]+)\n    module\.[a-z0-9_]+\.runtime_config_entry,$`)
})

// tfInfraBuild is the root module's BUILD.star, which lists every
// service's module, bundle and spec.
var tfInfraBuild = registry{
	tmpl:  "terraform/infra/BUILD.star.tmpl",
	parse: infraBuild.parse,
	byHand: func(e stackEntry) string {
		return fmt.Sprintf("in terraform_root's deps:\n    \"//%s/src/app/apis/%s\",\n    \"//%s:bundle\",\n    \"//%s:openapi\",",
			TerraformDir, e.Name, e.Dir, e.Dir)
	},
}

// tfRuntimeConfig is the root module's runtime-config.tf, which lists
// every service's entry.
var tfRuntimeConfig = registry{
	tmpl: "terraform/infra/runtime-config.tf.tmpl",
	parse: func(b []byte) []stackEntry {
		var out []stackEntry
		for _, m := range runtimeEntryRE().FindAllSubmatch(b, -1) {
			dir := string(m[1])
			out = append(out, entryOf(path.Base(dir), dir))
		}
		return out
	},
	byHand: func(e stackEntry) string {
		return fmt.Sprintf("in module \"runtime_config\"'s entries:\n    # //%s\n    module.%s.runtime_config_entry,", e.Dir, e.Snake())
	},
}

// planTerraform lists the Terraform files of a service: the core module
// of its compute type, the runtime-config module, the service's module
// and its file in the root module, and the shared files listing every
// service.
func planTerraform(root string, svc service) ([]planned, error) {
	// The root module and a CDK app would share packages/infra (and its
	// BUILD.star): one workspace deploys its services one way.
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(InfraDir), "cdk.json")); err == nil {
		return nil, usagef("%s holds a CDK app (cdk.json), which the Terraform root module would share the package with: generate this service with --iac cdk, or move the CDK app out of %s first", InfraDir, InfraDir)
	}
	var out []planned
	// Every combination of options renders what an earlier run may have
	// left, so a file nobody edited is regenerated.
	renderAll := func(f func(v service) ([]byte, error)) ([]byte, [][]byte, error) {
		want, err := f(svc)
		if err != nil {
			return nil, nil, err
		}
		var prev [][]byte
		for _, c := range terraformComputeTypes {
			for _, a := range AuthTypes {
				for _, p := range IntegrationPatterns {
					v := svc
					v.Compute, v.Auth, v.Shared = c, a, p == "shared"
					b, err := f(v)
					if err != nil {
						return nil, nil, err
					}
					prev = append(prev, b)
				}
			}
		}
		return want, prev, nil
	}
	add := func(rel string, f func(v service) ([]byte, error)) error {
		want, prev, err := renderAll(f)
		if err != nil {
			return err
		}
		out = append(out, planned{path: rel, mode: 0o644, want: want, previous: prev})
		return nil
	}
	static := func(tmpl string) func(service) ([]byte, error) {
		return func(v service) ([]byte, error) { return render(tmpl, v) }
	}
	moduleBuildFile := func(doc, name string, deps ...string) func(service) ([]byte, error) {
		return func(service) ([]byte, error) {
			return render("terraform/module-BUILD.star.tmpl", moduleBuild{Doc: doc, Name: name, Deps: deps})
		}
	}

	src := path.Join(TerraformDir, "src")
	core := path.Join(src, "core/api", svc.Compute+"-api")
	api := path.Join(src, "app/apis", svc.Name)
	kind := map[string]string{"rest": "REST", "http": "HTTP"}[svc.Compute]
	for _, f := range []struct {
		rel    string
		render func(service) ([]byte, error)
	}{
		{path.Join(core, svc.Compute+"-api.tf"), static("terraform/core/api/" + svc.Compute + "-api/" + svc.Compute + "-api.tf.tmpl")},
		{path.Join(core, "BUILD.star"), moduleBuildFile("The "+kind+" API module the services' modules use.", svc.Compute+"-api")},
		{path.Join(src, "core/runtime-config/runtime-config.tf"), static("terraform/core/runtime-config/runtime-config.tf.tmpl")},
		{path.Join(src, "core/runtime-config/BUILD.star"), moduleBuildFile("The runtime configuration module.", "runtime-config")},
		{path.Join(api, svc.Name+".tf"), func(v service) ([]byte, error) {
			head, err := render("terraform/app/apis/head.tf.tmpl", v)
			if err != nil {
				return nil, err
			}
			tail, err := render("terraform/app/apis/"+v.Compute+"-api.tf.tmpl", v)
			return append(head, tail...), err
		}},
		{path.Join(api, "BUILD.star"), func(v service) ([]byte, error) {
			return moduleBuildFile("The "+v.Name+" API's module.", v.Name, "//"+path.Join(src, "core/api", v.Compute+"-api"))(v)
		}},
		{path.Join(InfraDir, "main.tf"), static("terraform/infra/main.tf.tmpl")},
		{path.Join(InfraDir, ".gitignore"), static("terraform/infra/gitignore.tmpl")},
		{path.Join(InfraDir, svc.Name+".tf"), func(v service) ([]byte, error) {
			rel := func(p string) string { return relPath(InfraDir, p) }
			return render("terraform/infra/service.tf.tmpl", tfRootService{
				service:     v,
				BundleZip:   rel(path.Join("dist", v.Dir, "bundle", "bundle.zip")),
				OpenAPISpec: rel(path.Join("dist", v.Dir, "openapi", "openapi.json")),
			})
		}},
	} {
		if err := add(f.rel, f.render); err != nil {
			return nil, err
		}
	}
	entry := stackEntry{Name: svc.Name, Pascal: svc.Pascal, Dir: svc.Dir}
	out = append(out, registryFile(path.Join(InfraDir, "runtime-config.tf"), tfRuntimeConfig, entry))
	out = append(out, registryFile(path.Join(InfraDir, "BUILD.star"), tfInfraBuild, entry))
	return out, nil
}

// relPath is the slash path from directory from to to, both relative to
// the same root.
func relPath(from, to string) string {
	up := strings.Repeat("../", len(strings.Split(path.Clean(from), "/")))
	return up + to
}
