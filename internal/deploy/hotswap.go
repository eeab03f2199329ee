package deploy

// Hotswap: applying a stack's template changes with calls to Lambda
// instead of a CloudFormation change set, when the changes are of the kinds
// Lambda can take directly (a function's code, environment and
// description; a layer's content that the functions using it follow; the
// versions and aliases the template moves along). Plan decides, with read
// calls only, whether a stack's changes all are; Apply makes the calls
// (hotswap_apply.go). The deployed stack then differs from its template,
// which a record (hotswap_record.go) remembers until the next deployment
// puts things right.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
)

// HotswapMode says whether a deployment may update resources directly
// (PlanOptions.Hotswap). Hotswapping always needs asking for.
type HotswapMode string

const (
	HotswapOff HotswapMode = ""
	// HotswapFallBack hotswaps the stacks whose changes all can be, and
	// deploys the others with change sets (pipe deploy --hotswap).
	HotswapFallBack HotswapMode = "fall back"
	// HotswapOnly hotswaps the stacks whose changes all can be and
	// refuses the others (--hotswap-fallback=never).
	HotswapOnly HotswapMode = "only"
)

// NoHotswapTag is the stack tag that, with the value "false", forbids
// hotswapping the stack (Tags.of(stack).add('pipe:hotswap', 'false') in
// the CDK app). The tag counts on the local stack and on the deployed one.
const NoHotswapTag = "pipe:hotswap"

// Reasons Plan gives that a hotswap can handle; any other reason (new
// stack, tags, parameters, --force…) needs CloudFormation.
const (
	reasonTemplate   = "template differs"
	reasonHotswapped = "hotswapped since its last deployment"
)

// HotswapPlan says how a stack's changes would be applied with calls to
// Lambda, or why they cannot be.
type HotswapPlan struct {
	Mode HotswapMode
	// Refused says why the stack must never be hotswapped (a protected,
	// production stack); Apply fails it without a call.
	Refused error
	// Blockers are the differences only CloudFormation can deploy; with
	// any, the stack is deployed with a change set (HotswapFallBack) or
	// refused (HotswapOnly).
	Blockers []HotswapBlocker
	// Layers are published first, then Functions are updated; each
	// function publishes its Versions last, which move their aliases.
	Layers    []*LayerUpdate
	Functions []*FunctionUpdate
	// Aliases are aliases an earlier hotswap moved, set back to the
	// version the template names.
	Aliases []*AliasReset

	// settles: after the updates the functions match the deployed
	// template again (the template is the deployed one and only an earlier
	// hotswap made them differ), so the record can go.
	settles bool
}

// Hotswappable reports a stack whose changes can all be hotswapped.
func (h *HotswapPlan) Hotswappable() bool {
	return h != nil && h.Refused == nil && len(h.Blockers) == 0
}

// HotswapBlocker is one difference a hotswap cannot apply.
type HotswapBlocker struct {
	// Section is the template section ("Resources", "Outputs"…), "" for
	// a difference of the stack itself (Reason alone: "new stack", "tags
	// differ").
	Section string
	// LogicalID and Type name the entry; Property is the path that
	// differs ("Properties.ManagedPolicyArns[1]"), "" for the whole entry.
	LogicalID, Type, Property string
	Reason                    string
}

func (b HotswapBlocker) String() string {
	if b.Section == "" && b.LogicalID == "" {
		return b.Reason
	}
	var s strings.Builder
	switch b.Section {
	case "Resources":
		s.WriteString(b.LogicalID)
		if b.Type != "" {
			s.WriteString(" (" + b.Type + ")")
		}
	case "":
		s.WriteString("template " + b.LogicalID)
	default:
		s.WriteString(strings.TrimSuffix(strings.ToLower(b.Section), "s") + " " + b.LogicalID)
	}
	if b.Property != "" {
		s.WriteString(" " + b.Property)
	}
	s.WriteString(": " + b.Reason)
	return s.String()
}

// S3Location is where Lambda reads code or layer content.
type S3Location struct {
	Bucket, Key, ObjectVersion string
}

// FunctionUpdate is how one function is updated.
type FunctionUpdate struct {
	LogicalID string
	// FunctionName is the deployed function's name (its physical ID).
	FunctionName string
	// Code is the new code; nil when the code stays.
	Code *S3Location
	// Env changes the environment; nil when it stays.
	Env *EnvUpdate
	// Description is the new description; nil when it stays.
	Description *string
	// Layers is the new list of layers; nil when it stays.
	Layers []LayerRef
	// Versions are published after the update.
	Versions []*VersionUpdate
}

// EnvUpdate changes a function's environment: Set are variables with new
// values, Remove the ones gone. The other variables keep the values the
// function has: their template expressions did not change, and
// CloudFormation evaluated them.
type EnvUpdate struct {
	Set    map[string]string
	Remove []string
}

// LayerRef is one of a function's layers: an ARN, or a layer this hotswap
// publishes (Layer), whose new version's ARN goes in its place.
type LayerRef struct {
	ARN   string
	Layer *LayerUpdate
}

// VersionUpdate is a function version the template adds: published after
// the function's update, it moves Aliases to itself.
type VersionUpdate struct {
	LogicalID   string
	Description string
	Aliases     []*AliasUpdate

	// published is the version number Lambda gave, once published.
	published string
}

// AliasUpdate is an alias moved to a version this hotswap publishes.
type AliasUpdate struct {
	LogicalID, Name string
}

// AliasReset moves an alias an earlier hotswap moved back to the version
// the template names.
type AliasReset struct {
	LogicalID, Name, FunctionName, Version string
}

// LayerUpdate is a layer version published with new content; the
// functions naming it follow.
type LayerUpdate struct {
	LogicalID string
	// LayerName is the layer's name.
	LayerName                                   string
	Content                                     S3Location
	Description, LicenseInfo                    string
	CompatibleRuntimes, CompatibleArchitectures []string
}

// Changed names what the update changes, for progress lines.
func (u *FunctionUpdate) Changed() []string {
	var out []string
	if u.Code != nil {
		out = append(out, "code")
	}
	if u.Env != nil {
		var names []string
		for k := range u.Env.Set {
			names = append(names, k)
		}
		names = append(names, u.Env.Remove...)
		sort.Strings(names)
		out = append(out, "environment ("+strings.Join(names, ", ")+")")
	}
	if u.Description != nil {
		out = append(out, "description")
	}
	if u.Layers != nil {
		out = append(out, "layers")
	}
	return out
}

// tpl is a decoded template.
type tpl map[string]any

func decodeTpl(b []byte) (tpl, error) {
	t := tpl{}
	if len(b) == 0 {
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&t); err != nil {
		return nil, err
	}
	return t, nil
}

func (t tpl) resources() map[string]any {
	m, _ := t["Resources"].(map[string]any)
	return m
}

func (t tpl) resource(id string) map[string]any {
	m, _ := t.resources()[id].(map[string]any)
	return m
}

func (t tpl) props(id string) map[string]any {
	m, _ := t.resource(id)["Properties"].(map[string]any)
	return m
}

func (t tpl) typeOf(id string) string {
	s, _ := t.resource(id)["Type"].(string)
	return s
}

// draft is the first, structural pass of a hotswap plan: which resources
// change and how, before their physical IDs are known.
type draft struct {
	blockers  []HotswapBlocker
	functions map[string]*fnDraft
	layers    map[string]bool
	versions  map[string]*VersionUpdate // added versions by logical ID
	aliases   map[string]string         // moved alias → version logical ID
	resets    map[string]bool           // aliases to set back
}

type fnDraft struct {
	code, env, desc, layers bool
	// envKeys are variables to set from the template whether or not
	// their expressions changed (an earlier hotswap set them).
	envKeys  map[string]bool
	versions []string
}

func newDraft() *draft {
	return &draft{functions: map[string]*fnDraft{}, layers: map[string]bool{}, versions: map[string]*VersionUpdate{}, aliases: map[string]string{}, resets: map[string]bool{}}
}

func (d *draft) fn(id string) *fnDraft {
	f := d.functions[id]
	if f == nil {
		f = &fnDraft{envKeys: map[string]bool{}}
		d.functions[id] = f
	}
	return f
}

func (d *draft) block(b HotswapBlocker) { d.blockers = append(d.blockers, b) }

func kindText(k ChangeKind) string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	}
	return "changed"
}

// draftHotswap classifies a stack's differences: reasons are Plan's,
// changes the template differences between old (deployed) and cur (local).
func draftHotswap(old, cur tpl, changes []TemplateChange, reasons []string) *draft {
	d := newDraft()
	for _, r := range reasons {
		if r != reasonTemplate && r != reasonHotswapped {
			d.block(HotswapBlocker{Reason: r})
		}
	}
	for _, c := range changes {
		if c.Section != "Resources" {
			d.block(HotswapBlocker{Section: c.Section, LogicalID: c.Name, Reason: kindText(c.Kind)})
			continue
		}
		b := HotswapBlocker{Section: c.Section, LogicalID: c.Name, Type: c.Type}
		switch {
		case c.Kind == Added && c.Type == "AWS::Lambda::Version":
			d.versions[c.Name] = &VersionUpdate{LogicalID: c.Name}
			continue
		case c.Kind == Removed && c.Type == "AWS::Lambda::Version":
			// The old version stays, as CloudFormation keeps a retained
			// one; the next deployment removes it if the template says so.
			continue
		case c.Kind != Modified:
			b.Reason = kindText(c.Kind) + " (only CloudFormation creates and deletes resources)"
			d.block(b)
			continue
		case c.OldType != "":
			b.Reason = "type changed from " + c.OldType
			d.block(b)
			continue
		}
		for _, v := range c.Values {
			if v.Path == "Metadata" || strings.HasPrefix(v.Path, "Metadata.") {
				continue // CloudFormation does nothing with a resource's metadata
			}
			if !d.property(c.Name, c.Type, v.Path) {
				b.Property, b.Reason = v.Path, kindText(v.Kind)
				d.block(b)
			}
		}
	}
	d.follow(cur)
	return d
}

// property notes a changed property a hotswap can apply, or reports that
// it cannot.
func (d *draft) property(id, typ, path string) bool {
	under := func(p string) bool {
		return path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")
	}
	switch typ {
	case "AWS::Lambda::Function":
		switch {
		case path == "Properties.Code.S3Bucket", path == "Properties.Code.S3Key", path == "Properties.Code.S3ObjectVersion":
			d.fn(id).code = true
		case under("Properties.Environment"):
			d.fn(id).env = true
		case path == "Properties.Description":
			d.fn(id).desc = true
		default:
			return false
		}
		return true
	case "AWS::Lambda::LayerVersion":
		// A layer version is immutable: CloudFormation replaces it, a
		// hotswap publishes a new version.
		if under("Properties.Content") || path == "Properties.Description" {
			d.layers[id] = true
			return true
		}
	case "AWS::Lambda::Alias":
		if path == "Properties.FunctionVersion" {
			d.aliases[id] = ""
			return true
		}
	}
	return false
}

// follow checks what the changed layers, new versions and moved aliases
// pull along: every reference to a republished layer must be a function's
// Layers entry (the function follows), a new version must be of a function
// the hotswap updates, and a moved alias must move to such a version.
func (d *draft) follow(cur tpl) {
	for layer := range d.layers {
		for _, ref := range referencesTo(cur, layer) {
			if ref.section == "Resources" && cur.typeOf(ref.id) == "AWS::Lambda::Function" && strings.HasPrefix(ref.path, "Properties.Layers[") {
				d.fn(ref.id).layers = true
				continue
			}
			d.block(HotswapBlocker{Section: ref.section, LogicalID: ref.id, Type: cur.typeOf(ref.id), Property: ref.path,
				Reason: "refers to layer " + layer + ", which a hotswap publishes as a new version; only CloudFormation can update this reference"})
		}
	}
	fnOf := func(id string) string {
		r, _ := cur.props(id)["FunctionName"].(map[string]any)
		ref, _ := r["Ref"].(string)
		if len(r) != 1 || cur.typeOf(ref) != "AWS::Lambda::Function" {
			return ""
		}
		return ref
	}
	for id, v := range d.versions {
		b := HotswapBlocker{Section: "Resources", LogicalID: id, Type: "AWS::Lambda::Version"}
		for k := range cur.props(id) {
			if k != "FunctionName" && k != "Description" && k != "CodeSha256" {
				b.Property, b.Reason = "Properties."+k, "added with a new version, which only CloudFormation configures"
				d.block(b)
			}
		}
		f := fnOf(id)
		if f == "" || d.functions[f] == nil {
			b.Property, b.Reason = "", "added, for a function this hotswap does not update"
			if f != "" {
				b.Reason = "added, for function " + f + ", which this hotswap does not update"
			}
			d.block(b)
			continue
		}
		d.functions[f].versions = append(d.functions[f].versions, v.LogicalID)
	}
	for alias := range d.aliases {
		b := HotswapBlocker{Section: "Resources", LogicalID: alias, Type: "AWS::Lambda::Alias", Property: "Properties.FunctionVersion"}
		ver := getAttOf(cur.props(alias)["FunctionVersion"], "Version")
		if d.versions[ver] == nil || fnOf(ver) != fnOf(alias) || fnOf(alias) == "" {
			b.Reason = "moves to a version this hotswap does not publish"
			d.block(b)
			continue
		}
		d.aliases[alias] = ver
	}
}

// getAttOf returns R of {"Fn::GetAtt": [R, attr]}, or "".
func getAttOf(v any, attr string) string {
	m, _ := v.(map[string]any)
	a, _ := m["Fn::GetAtt"].([]any)
	if len(m) != 1 || len(a) != 2 || a[1] != attr {
		return ""
	}
	s, _ := a[0].(string)
	return s
}

// reference is where a template refers to a logical ID.
type reference struct {
	section, id, path string
}

// referencesTo lists every Ref, Fn::GetAtt and Fn::Sub reference to target
// in the template, outside target itself.
func referencesTo(t tpl, target string) []reference {
	var out []reference
	var walk func(section, id, path string, v any)
	walk = func(section, id, path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 1 {
				if r, ok := v["Ref"].(string); ok && r == target {
					out = append(out, reference{section, id, path})
					return
				}
				if refersInGetAtt(v, target) {
					out = append(out, reference{section, id, path})
					return
				}
				if s, ok := subString(v); ok && (strings.Contains(s, "${"+target+"}") || strings.Contains(s, "${"+target+".")) {
					out = append(out, reference{section, id, path})
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(section, id, p, v[k])
			}
		case []any:
			for i, x := range v {
				walk(section, id, fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	for _, sec := range []string{"Resources", "Outputs", "Conditions"} {
		m, _ := t[sec].(map[string]any)
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if sec == "Resources" && id == target {
				continue
			}
			walk(sec, id, "", m[id])
		}
	}
	return out
}

func refersInGetAtt(v map[string]any, target string) bool {
	switch a := v["Fn::GetAtt"].(type) {
	case []any:
		return len(a) == 2 && a[0] == target
	case string:
		return strings.HasPrefix(a, target+".")
	}
	return false
}

func subString(v map[string]any) (string, bool) {
	switch a := v["Fn::Sub"].(type) {
	case string:
		return a, true
	case []any:
		if len(a) > 0 {
			s, ok := a[0].(string)
			return s, ok
		}
	}
	return "", false
}

// addRecord adds to the draft what earlier hotswaps set, so that it is set
// from the template again: the deployed stack differs from its template
// there even where the templates agree. (What already has the template's
// value is dropped after evaluation, by dropApplied.)
func (d *draft) addRecord(rec *HotswapRecord, cur tpl) {
	for id, rf := range rec.Functions {
		if cur.typeOf(id) != "AWS::Lambda::Function" {
			continue // gone from the template: CloudFormation deletes it
		}
		f := d.fn(id)
		f.code = f.code || rf.Code != nil
		f.desc = f.desc || rf.Description != nil
		f.layers = f.layers || rf.Layers != nil
		for k := range rf.Environment {
			f.envKeys[k] = true
		}
	}
	for a := range rec.Aliases {
		if _, moved := d.aliases[a]; !moved && cur.typeOf(a) == "AWS::Lambda::Alias" {
			d.resets[a] = true
		}
	}
}

// dropApplied leaves out of the plan what the function already has: the
// values an earlier hotswap set (rec) that equal the template's. A
// function left with nothing to change publishes no version either: the
// earlier hotswap published it.
func (h *HotswapPlan) dropApplied(rec *HotswapRecord) {
	if rec == nil {
		return
	}
	var fns []*FunctionUpdate
	for _, u := range h.Functions {
		rf := rec.Functions[u.LogicalID]
		if rf != nil {
			if u.Code != nil && rf.Code != nil && *u.Code == *rf.Code {
				u.Code = nil
			}
			if u.Description != nil && rf.Description != nil && *u.Description == *rf.Description {
				u.Description = nil
			}
			if u.Layers != nil && rf.Layers != nil && len(u.Layers) == len(*rf.Layers) {
				same := true
				for i, l := range u.Layers {
					same = same && l.Layer == nil && l.ARN == (*rf.Layers)[i]
				}
				if same {
					u.Layers = nil
				}
			}
			if u.Env != nil {
				for k, v := range u.Env.Set {
					if r, ok := rf.Environment[k]; ok && r != nil && *r == v {
						delete(u.Env.Set, k)
					}
				}
				u.Env.Remove = slices.DeleteFunc(u.Env.Remove, func(k string) bool {
					r, ok := rf.Environment[k]
					return ok && r == nil
				})
				if len(u.Env.Set) == 0 && len(u.Env.Remove) == 0 {
					u.Env = nil
				}
			}
		}
		if len(u.Changed()) > 0 {
			fns = append(fns, u)
		}
	}
	h.Functions = fns
	h.Aliases = slices.DeleteFunc(h.Aliases, func(a *AliasReset) bool {
		v, ok := rec.Aliases[a.LogicalID]
		return ok && v == a.Version
	})
}

// resolve is the second pass: with the stack's physical IDs, evaluate the
// new values. What cannot be evaluated blocks the hotswap.
func (d *draft) resolve(old, cur tpl, ev *evaluator) *HotswapPlan {
	h := &HotswapPlan{Blockers: d.blockers}
	block := func(id, prop string, err error) {
		h.Blockers = append(h.Blockers, HotswapBlocker{Section: "Resources", LogicalID: id, Type: cur.typeOf(id), Property: prop, Reason: "cannot be evaluated without CloudFormation: " + err.Error()})
	}
	physical := func(id string) (string, bool) {
		p, ok := ev.physical[id]
		if !ok || p == "" {
			h.Blockers = append(h.Blockers, HotswapBlocker{Section: "Resources", LogicalID: id, Type: cur.typeOf(id), Reason: "not found among the deployed stack's resources"})
		}
		return p, ok && p != ""
	}
	layers := map[string]*LayerUpdate{}
	for _, id := range sortedKeys(d.layers) {
		arn, ok := physical(id)
		if !ok {
			continue
		}
		// A layer version's ARN is arn:PARTITION:lambda:REGION:ACCOUNT:layer:NAME:VERSION.
		// The name alone names the layer in the stack's own account.
		parts := strings.Split(arn, ":")
		if len(parts) != 8 || parts[5] != "layer" {
			block(id, "", fmt.Errorf("its physical ID %q is not a layer version ARN", arn))
			continue
		}
		lu := &LayerUpdate{LogicalID: id, LayerName: parts[6]}
		p := cur.props(id)
		content, _ := p["Content"].(map[string]any)
		loc, prop, err := s3Location(ev, content)
		if err != nil {
			block(id, "Properties.Content."+prop, err)
			continue
		}
		lu.Content = *loc
		var errs []error
		str := func(k string) string {
			if p[k] == nil {
				return ""
			}
			s, err := ev.str(p[k])
			if err != nil && err != errNoValue {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
			return s
		}
		lst := func(k string) []string {
			if p[k] == nil {
				return nil
			}
			l, err := ev.list(p[k])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
			return l
		}
		lu.Description, lu.LicenseInfo = str("Description"), str("LicenseInfo")
		lu.CompatibleRuntimes, lu.CompatibleArchitectures = lst("CompatibleRuntimes"), lst("CompatibleArchitectures")
		if err := errors.Join(errs...); err != nil {
			block(id, "Properties", err)
			continue
		}
		layers[id] = lu
		h.Layers = append(h.Layers, lu)
	}
	for _, id := range sortedKeys(d.functions) {
		f := d.functions[id]
		name, ok := physical(id)
		if !ok {
			continue
		}
		u := &FunctionUpdate{LogicalID: id, FunctionName: name}
		p := cur.props(id)
		if f.code {
			code, _ := p["Code"].(map[string]any)
			loc, prop, err := s3Location(ev, code)
			if err != nil {
				block(id, "Properties.Code."+prop, err)
				continue
			}
			u.Code = loc
		}
		if f.env || len(f.envKeys) > 0 {
			env, prop, err := envUpdate(ev, old.props(id), p, f.env, f.envKeys)
			if err != nil {
				block(id, prop, err)
				continue
			}
			u.Env = env
		}
		if f.desc {
			desc := ""
			if p["Description"] != nil {
				s, err := ev.str(p["Description"])
				if err != nil && err != errNoValue {
					block(id, "Properties.Description", err)
					continue
				}
				desc = s
			}
			u.Description = &desc
		}
		if f.layers {
			refs, err := layerRefs(ev, p["Layers"], layers)
			if err != nil {
				block(id, "Properties.Layers", err)
				continue
			}
			u.Layers = refs
		}
		for _, vid := range f.versions {
			v := d.versions[vid]
			if desc := cur.props(vid)["Description"]; desc != nil {
				s, err := ev.str(desc)
				if err != nil && err != errNoValue {
					block(vid, "Properties.Description", err)
					continue
				}
				v.Description = s
			}
			for _, alias := range sortedKeys(d.aliases) {
				if d.aliases[alias] != vid {
					continue
				}
				an, err := ev.str(cur.props(alias)["Name"])
				if err != nil {
					block(alias, "Properties.Name", err)
					continue
				}
				v.Aliases = append(v.Aliases, &AliasUpdate{LogicalID: alias, Name: an})
			}
			u.Versions = append(u.Versions, v)
		}
		h.Functions = append(h.Functions, u)
	}
	for _, alias := range sortedKeys(d.resets) {
		p := cur.props(alias)
		var r AliasReset
		var err error
		r.LogicalID = alias
		if r.Name, err = ev.str(p["Name"]); err == nil {
			if r.FunctionName, err = ev.str(p["FunctionName"]); err == nil {
				r.Version, err = ev.str(p["FunctionVersion"])
			}
		}
		if err != nil {
			block(alias, "Properties", err)
			continue
		}
		h.Aliases = append(h.Aliases, &r)
	}
	return h
}

// s3Location evaluates a Code or Content property's S3 location; prop
// names the part that failed.
func s3Location(ev *evaluator, m map[string]any) (*S3Location, string, error) {
	if m["S3Bucket"] == nil || m["S3Key"] == nil {
		for k := range m {
			if k != "S3Bucket" && k != "S3Key" && k != "S3ObjectVersion" {
				return nil, k, fmt.Errorf("only code in S3 can be hotswapped")
			}
		}
		return nil, "S3Key", fmt.Errorf("no S3 location")
	}
	var loc S3Location
	var err error
	if loc.Bucket, err = ev.str(m["S3Bucket"]); err != nil {
		return nil, "S3Bucket", err
	}
	if loc.Key, err = ev.str(m["S3Key"]); err != nil {
		return nil, "S3Key", err
	}
	if m["S3ObjectVersion"] != nil {
		if loc.ObjectVersion, err = ev.str(m["S3ObjectVersion"]); err != nil {
			return nil, "S3ObjectVersion", err
		}
	}
	return &loc, "", nil
}

// envUpdate finds the variables a function's environment changes: those
// whose expressions differ between the deployed and the local template
// (when changed) and those an earlier hotswap set (force).
func envUpdate(ev *evaluator, oldProps, newProps map[string]any, changed bool, force map[string]bool) (*EnvUpdate, string, error) {
	vars := func(p map[string]any) (map[string]any, error) {
		env, ok := p["Environment"].(map[string]any)
		if p["Environment"] != nil && !ok {
			return nil, fmt.Errorf("Environment is an expression")
		}
		v, ok := env["Variables"].(map[string]any)
		if env["Variables"] != nil && !ok {
			return nil, fmt.Errorf("Environment.Variables is an expression")
		}
		return v, nil
	}
	ov, err := vars(oldProps)
	if err != nil {
		return nil, "Properties.Environment", err
	}
	nv, err := vars(newProps)
	if err != nil {
		return nil, "Properties.Environment", err
	}
	u := &EnvUpdate{Set: map[string]string{}}
	remove := map[string]bool{}
	for _, k := range sortedKeys(nv) {
		o, had := ov[k]
		if !force[k] && (!changed || (had && canon(o) == canon(nv[k]))) {
			continue
		}
		s, err := ev.str(nv[k])
		if err == errNoValue {
			remove[k] = true
			continue
		}
		if err != nil {
			return nil, "Properties.Environment.Variables." + k, err
		}
		u.Set[k] = s
	}
	// A variable gone from the template goes from the function: when the
	// environment changed, or when an earlier hotswap had set it.
	for k := range ov {
		if _, ok := nv[k]; !ok && changed {
			remove[k] = true
		}
	}
	for k := range force {
		if _, ok := nv[k]; !ok {
			remove[k] = true
		}
	}
	u.Remove = sortedKeys(remove)
	return u, "", nil
}

// layerRefs evaluates a function's Layers, the republished layers left for
// Apply to fill in.
func layerRefs(ev *evaluator, v any, republished map[string]*LayerUpdate) ([]LayerRef, error) {
	if v == nil {
		return []LayerRef{}, nil
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("Layers is an expression")
	}
	out := make([]LayerRef, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok && len(m) == 1 {
			if r, ok := m["Ref"].(string); ok && republished[r] != nil {
				out = append(out, LayerRef{Layer: republished[r]})
				continue
			}
		}
		s, err := ev.str(it)
		if err == errNoValue {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, LayerRef{ARN: s})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stackResources reads the deployed stack's resources: physical IDs and
// types by logical ID (ListStackResources, a read).
func stackResources(ctx context.Context, rc *regionClients, stack string) (physical, types map[string]string, err error) {
	physical, types = map[string]string{}, map[string]string{}
	var token *string
	for {
		out, err := rc.cfn.ListStackResources(ctx, &cloudformation.ListStackResourcesInput{StackName: aws.String(stack), NextToken: token})
		if err != nil {
			return nil, nil, fmt.Errorf("stack %s: list resources: %w", stack, brief(err))
		}
		for _, r := range out.StackResourceSummaries {
			id := aws.ToString(r.LogicalResourceId)
			physical[id] = aws.ToString(r.PhysicalResourceId)
			types[id] = aws.ToString(r.ResourceType)
		}
		if out.NextToken == nil {
			return physical, types, nil
		}
		token = out.NextToken
	}
}

// newEvaluator is an evaluator for a stack deployed to account and region,
// with the stack's parameter values.
func newEvaluator(s *Stack, cur *deployed, account, region string, physical, types map[string]string) *evaluator {
	ev := &evaluator{account: account, region: region, partition: partitionOf(region), stackName: s.StackName, stackID: cur.id,
		params: map[string]string{}, physical: physical, types: types}
	for k, p := range cur.params {
		if p.ResolvedValue != nil {
			ev.params[k] = aws.ToString(p.ResolvedValue)
		} else {
			ev.params[k] = aws.ToString(p.ParameterValue)
		}
	}
	return ev
}

// protected says why a stack must not be hotswapped, or nil.
func protected(s *Stack, cur *deployed) error {
	if s.NoHotswap != "" {
		return fmt.Errorf("stack %s: hotswap refused: %s; deploy it without --hotswap", s.Name(), s.NoHotswap)
	}
	if strings.EqualFold(s.Tags[NoHotswapTag], "false") || (cur.exists && strings.EqualFold(cur.tags[NoHotswapTag], "false")) {
		return fmt.Errorf("stack %s: hotswap refused: the stack is tagged %s=false; deploy it without --hotswap", s.Name(), NoHotswapTag)
	}
	return nil
}

// planHotswap decides how the plan's changes would be hotswapped (Plan,
// with PlanOptions.Hotswap or a hotswap record). It reads the stack's
// resources only when every difference is of a kind a hotswap applies.
func (pl *planner) planHotswap(ctx context.Context, rc *regionClients, p *StackPlan) {
	s := p.Stack
	h := &HotswapPlan{Mode: pl.opt.Hotswap}
	p.Hotswap = h
	if err := protected(s, p.cur); err != nil {
		h.Refused = err
		return
	}
	if p.State != StateUpdate {
		h.Blockers = append(h.Blockers, HotswapBlocker{Reason: string(p.State)})
		if p.State == StateNew {
			h.Blockers[0].Reason = "new stack"
		}
		return
	}
	if p.TemplateErr != nil {
		h.Blockers = append(h.Blockers, HotswapBlocker{Reason: p.TemplateErr.Error()})
		return
	}
	old, err1 := decodeTpl(p.cur.template)
	cur, err2 := decodeTpl(s.Template)
	if err := errors.Join(err1, err2); err != nil {
		h.Blockers = append(h.Blockers, HotswapBlocker{Reason: "template: " + err.Error()})
		return
	}
	d := draftHotswap(old, cur, p.Template, p.Reasons)
	if p.Hotswapped != nil {
		d.addRecord(p.Hotswapped, cur)
	}
	if len(d.blockers) > 0 {
		h.Blockers = d.blockers
		return
	}
	if p.Blocker != nil {
		return // Apply fails the stack with the plan's Blocker
	}
	physical, types, err := stackResources(ctx, rc, s.StackName)
	if err != nil {
		h.Blockers = append(h.Blockers, HotswapBlocker{Reason: err.Error()})
		return
	}
	ev := newEvaluator(s, p.cur, p.Account, p.Region, physical, types)
	r := d.resolve(old, cur, ev)
	r.dropApplied(p.Hotswapped)
	r.Mode = h.Mode
	r.settles = p.Hotswapped != nil && len(p.Template) == 0
	*h = *r
}
