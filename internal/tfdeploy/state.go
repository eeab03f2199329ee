package tfdeploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// backendConfig is the backend block of a root module, as far as pipe
// needs it to find the state.
type backendConfig struct {
	// remote is any backend but local: the state is read with
	// terraform state pull.
	remote bool
	// path is the local state file, relative to the module.
	path string
}

// readBackend finds the backend block among the module's .tf files.
func readBackend(dir string) (backendConfig, error) {
	cfg := backendConfig{path: "terraform.tfstate"}
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return cfg, err
	}
	sort.Strings(names)
	p := hclparse.NewParser()
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "terraform"}}}
	tfSchema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "backend", LabelNames: []string{"type"}}}}
	for _, n := range names {
		f, diags := p.ParseHCLFile(n)
		if diags.HasErrors() {
			return cfg, fmt.Errorf("%s", diags.Error())
		}
		content, _, _ := f.Body.PartialContent(schema)
		for _, tb := range content.Blocks {
			inner, _, _ := tb.Body.PartialContent(tfSchema)
			for _, b := range inner.Blocks {
				if b.Labels[0] != "local" {
					cfg.remote = true
					continue
				}
				attrs, _ := b.Body.JustAttributes()
				if a, ok := attrs["path"]; ok {
					v, d := a.Expr.Value(nil)
					if d.HasErrors() || v.IsNull() || !v.Type().Equals(cty.String) {
						return cfg, fmt.Errorf("%s: backend \"local\" path must be a literal string", a.Range)
					}
					cfg.path = v.AsString()
				}
			}
		}
	}
	return cfg, nil
}

// readState identifies the root's current state. A local state file is
// read directly (no terraform process); a remote one is pulled, after
// ensureInit.
func (r *Root) readState(ctx context.Context, b backendConfig, ensureInit func() error) (stateID, error) {
	var id stateID
	var raw []byte
	if b.remote {
		if err := ensureInit(); err != nil {
			return id, err
		}
		out, err := r.cli().Output(ctx, r.Dir, "state", "pull")
		if err != nil {
			return id, err
		}
		raw = out
	} else {
		p := b.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(r.Dir, p)
		}
		out, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return id, nil
		}
		if err != nil {
			return id, err
		}
		raw = out
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return id, nil
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return id, fmt.Errorf("the state is not terraform's JSON state: %w", err)
	}
	return id, nil
}
