package scaffold

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// tfModule is what a check of references needs to know of one module
// directory: what it declares, and every reference its expressions make.
type tfModule struct {
	dir       string
	variables map[string]bool // name → has a default
	locals    map[string]bool
	outputs   map[string]bool
	resources map[string]bool // "type.name"
	data      map[string]bool // "type.name"
	modules   map[string]*hclsyntax.Block
	refs      []tfRef
}

type tfRef struct {
	traversal hcl.Traversal
	rng       hcl.Range
}

func loadTFModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	m := &tfModule{dir: dir, variables: map[string]bool{}, locals: map[string]bool{}, outputs: map[string]bool{},
		resources: map[string]bool{}, data: map[string]bool{}, modules: map[string]*hclsyntax.Block{}}
	names, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	if len(names) == 0 {
		t.Fatalf("no .tf file in %s", dir)
	}
	for _, n := range names {
		src, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, n, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Fatalf("%s: %s", n, diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				_, hasDefault := b.Body.Attributes["default"]
				m.variables[b.Labels[0]] = hasDefault
			case "locals":
				for name := range b.Body.Attributes {
					m.locals[name] = true
				}
			case "output":
				m.outputs[b.Labels[0]] = true
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = true
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = true
			case "module":
				m.modules[b.Labels[0]] = b
			}
		}
		m.collectRefs(body, "")
	}
	return m
}

func (m *tfModule) collectRefs(body *hclsyntax.Body, blockType string) {
	for name, a := range body.Attributes {
		if blockType == "variable" && name == "type" {
			continue // a type constraint, not references
		}
		for _, tr := range hclsyntax.Variables(a.Expr) {
			m.refs = append(m.refs, tfRef{tr, tr.SourceRange()})
		}
	}
	for _, b := range body.Blocks {
		m.collectRefs(b.Body, b.Type)
	}
}

// checkRefs reports every reference to something the module does not
// declare, and every module call whose arguments or outputs do not match
// the called module: what terraform validate would find first, checked
// without the providers validate needs.
func checkRefs(t *testing.T, m *tfModule) {
	t.Helper()
	called := map[string]*tfModule{}
	for name, b := range m.modules {
		srcAttr, ok := b.Body.Attributes["source"]
		if !ok {
			t.Errorf("%s: module %q has no source", m.dir, name)
			continue
		}
		v, _ := srcAttr.Expr.Value(nil)
		src := v.AsString()
		if !strings.HasPrefix(src, "../") && !strings.HasPrefix(src, "./") {
			continue
		}
		callee := loadTFModule(t, filepath.Join(m.dir, src))
		called[name] = callee
		given := map[string]bool{}
		for arg, a := range b.Body.Attributes {
			switch arg {
			case "source", "depends_on", "count", "for_each", "providers", "version":
				continue
			}
			given[arg] = true
			if _, ok := callee.variables[arg]; !ok {
				t.Errorf("%s: module %q passes %s, which %s does not declare", a.SrcRange, name, arg, src)
			}
		}
		for v, hasDefault := range callee.variables {
			if !hasDefault && !given[v] {
				t.Errorf("%s: module %q does not pass the required variable %s of %s", b.DefRange(), name, v, src)
			}
		}
	}
	skip := map[string]bool{"each": true, "count": true, "path": true, "self": true, "terraform": true}
	for _, r := range m.refs {
		root := r.traversal.RootName()
		attr := func(i int) string {
			if i >= len(r.traversal) {
				return ""
			}
			if a, ok := r.traversal[i].(hcl.TraverseAttr); ok {
				return a.Name
			}
			return ""
		}
		switch {
		case skip[root]:
		case root == "var":
			if _, ok := m.variables[attr(1)]; !ok {
				t.Errorf("%s: var.%s is not declared", r.rng, attr(1))
			}
		case root == "local":
			if !m.locals[attr(1)] {
				t.Errorf("%s: local.%s is not declared", r.rng, attr(1))
			}
		case root == "data":
			if !m.data[attr(1)+"."+attr(2)] {
				t.Errorf("%s: data.%s.%s is not declared", r.rng, attr(1), attr(2))
			}
		case root == "module":
			callee, ok := called[attr(1)]
			if _, declared := m.modules[attr(1)]; !declared {
				t.Errorf("%s: module.%s is not declared", r.rng, attr(1))
			} else if ok && attr(2) != "" && !callee.outputs[attr(2)] {
				t.Errorf("%s: module.%s has no output %s", r.rng, attr(1), attr(2))
			}
		case strings.Contains(root, "_"):
			if !m.resources[root+"."+attr(1)] {
				t.Errorf("%s: %s.%s is not declared", r.rng, root, attr(1))
			}
		default:
			t.Errorf("%s: reference to %s, which is neither a variable, a local, a module nor a resource", r.rng, root)
		}
	}
}

// Every generated module and the root module refer only to what they
// declare, pass their called modules exactly the variables those
// declare (all required ones included), and read only outputs the called
// modules have: terraform validate's first checks, which here cannot run
// for want of the aws provider.
func TestFastAPITerraformReferences(t *testing.T) {
	for _, c := range terraformComputeTypes {
		for _, a := range AuthTypes {
			for _, p := range IntegrationPatterns {
				t.Run(c+"-"+a+"-"+p, func(t *testing.T) {
					root := t.TempDir()
					if _, err := FastAPI(root, FastAPIOptions{Name: "my-api", ComputeType: c, Auth: a, IntegrationPattern: p, IaC: IaCTerraform}); err != nil {
						t.Fatal(err)
					}
					dirs := map[string]bool{}
					for _, f := range tfFiles(t, root) {
						dirs[filepath.Dir(filepath.Join(root, f))] = true
					}
					var sorted []string
					for d := range dirs {
						sorted = append(sorted, d)
					}
					sort.Strings(sorted)
					for _, d := range sorted {
						checkRefs(t, loadTFModule(t, d))
					}
				})
			}
		}
	}
}
