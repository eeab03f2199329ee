package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pipebuild/pipe/internal/files"
)

// HotswapRecords keeps, per stack, account and region, what hotswaps
// changed behind CloudFormation's back: one JSON file per stack at
// Dir/ACCOUNT/REGION/STACK.json (pipe uses the workspace's
// .pipe/hotswap). CloudFormation cannot tell that a hotswapped function
// runs other code than its template says, and a deployment of a template
// equal to the deployed one changes nothing; the record is how the next
// deployment knows to put the functions right. A nil *HotswapRecords
// records nothing and finds nothing.
type HotswapRecords struct {
	Dir string
}

// HotswapRecord is what hotswaps set on one deployed stack since its last
// deployment: the values the functions have now, where they may differ
// from what CloudFormation deployed.
type HotswapRecord struct {
	Account string `json:"account"`
	Region  string `json:"region"`
	Stack   string `json:"stack"`
	// First and Last are when the first and the latest hotswap ran.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Functions are the hotswapped functions by logical ID.
	Functions map[string]*RecordedFunction `json:"functions"`
	// Aliases are the aliases moved (logical ID → version).
	Aliases map[string]string `json:"aliases,omitempty"`
}

// RecordedFunction is what hotswaps set on one function; nil is what
// CloudFormation deployed.
type RecordedFunction struct {
	Code *S3Location `json:"code,omitempty"`
	// Environment are the variables set, and those removed (nil).
	Environment map[string]*string `json:"environment,omitempty"`
	Description *string            `json:"description,omitempty"`
	// Layers are the layer version ARNs, "" for a version whose
	// publication was not seen to finish.
	Layers *[]string `json:"layers,omitempty"`
}

func (r *HotswapRecords) path(account, region, stack string) string {
	return filepath.Join(r.Dir, account, region, stack+".json")
}

// find returns the stack's records in region, one per account: Plan
// learns the account only for stacks it deploys, and finds a record
// without asking STS for the others.
func (r *HotswapRecords) find(region, stack string) ([]*HotswapRecord, error) {
	if r == nil || r.Dir == "" {
		return nil, nil
	}
	matches, err := filepath.Glob(filepath.Join(r.Dir, "*", region, stack+".json"))
	if err != nil {
		return nil, err
	}
	var out []*HotswapRecord
	for _, m := range matches {
		rec, err := readRecord(m)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func readRecord(file string) (*HotswapRecord, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("hotswap record: %w", err)
	}
	var rec HotswapRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("hotswap record %s: %w (delete it and run pipe deploy --force for that stack)", file, err)
	}
	if rec.Functions == nil {
		rec.Functions = map[string]*RecordedFunction{}
	}
	return &rec, nil
}

// add merges what a hotswap sets into the stack's record. It is called
// before the first call that changes anything (an interrupted hotswap
// leaves drift too), and again once new layer versions are published
// (layers: their ARNs).
func (r *HotswapRecords) add(account, region, stack string, h *HotswapPlan, layers map[*LayerUpdate]string, now time.Time) error {
	if r == nil || r.Dir == "" {
		return nil
	}
	file := r.path(account, region, stack)
	rec := &HotswapRecord{Account: account, Region: region, Stack: stack, First: now, Functions: map[string]*RecordedFunction{}}
	if _, err := os.Stat(file); err == nil {
		if rec, err = readRecord(file); err != nil {
			return err
		}
	}
	rec.Last = now
	for _, u := range h.Functions {
		f := rec.Functions[u.LogicalID]
		if f == nil {
			f = &RecordedFunction{}
			rec.Functions[u.LogicalID] = f
		}
		if u.Code != nil {
			c := *u.Code
			f.Code = &c
		}
		if u.Description != nil {
			d := *u.Description
			f.Description = &d
		}
		if u.Env != nil {
			if f.Environment == nil {
				f.Environment = map[string]*string{}
			}
			for k, v := range u.Env.Set {
				f.Environment[k] = &v
			}
			for _, k := range u.Env.Remove {
				f.Environment[k] = nil
			}
		}
		if u.Layers != nil {
			arns := make([]string, len(u.Layers))
			for i, l := range u.Layers {
				arns[i] = l.ARN
				if l.Layer != nil {
					arns[i] = layers[l.Layer]
				}
			}
			f.Layers = &arns
		}
		for _, v := range u.Versions {
			for _, a := range v.Aliases {
				if rec.Aliases == nil {
					rec.Aliases = map[string]string{}
				}
				// The version is known once published; until then the
				// alias counts as moved somewhere unknown.
				rec.Aliases[a.LogicalID] = v.published
			}
		}
	}
	for _, a := range h.Aliases {
		if rec.Aliases == nil {
			rec.Aliases = map[string]string{}
		}
		rec.Aliases[a.LogicalID] = a.Version
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("record the hotswap of stack %s: %w", stack, err)
	}
	if err := files.WriteAtomic(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record the hotswap of stack %s: %w", stack, err)
	}
	return nil
}

// remove forgets the stack's record: the deployed stack matches its
// template again.
func (r *HotswapRecords) remove(account, region, stack string) error {
	if r == nil || r.Dir == "" {
		return nil
	}
	err := os.Remove(r.path(account, region, stack))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stack %s: forget the hotswap record: %w", stack, err)
	}
	return nil
}
