package rules

// Hotswapping without a synth. A Python edit changes a python_bundle's
// directory and zip, which are inputs of the cdk_stack's synth (the app
// stages them as Lambda code assets), so every edit would run node and
// aws-cdk-lib again for seconds before pipe deploy --hotswap can update
// the code. When the bundles are the only inputs of the synth that
// changed since an assembly pipe kept, that assembly is the synth's
// output for every input but the bundles: pipe deploys it with each
// changed bundle in place of the staged copy of its old content, under a
// content hash of its own in the template, and the hotswap updates the
// functions' code. Anything else that changed (the app, its context, a
// tool, an input that is not a staged asset) runs the synth.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/rules/cdk"
	"github.com/pipebuild/pipe/internal/rules/python"
)

// SynthMnemonic is the mnemonic of cdk_stack's synth action.
const SynthMnemonic = "CdkSynth"

// SynthBases keeps, for each cdk_stack's synth, the last assembly a
// hotswap deployment synthesized: one directory per synth action under
// Dir (pipe uses the workspace's .pipe/hotswap/synth), with the key
// parts the synth ran with and which staged assets copy which input
// directory.
type SynthBases struct {
	Dir string
}

// synthBase is base.json of a kept assembly.
type synthBase struct {
	Parts *engine.KeyParts `json:"parts"`
	// Assets maps a staged asset directory of the assembly ("asset.HASH",
	// relative to the assembly) to the input directory it is a copy of
	// (workspace-relative).
	Assets map[string]string `json:"assets"`
}

// Reuse is an assembly kept for a synth that pipe deploys instead of
// running the synth.
type Reuse struct {
	// Dir is the kept assembly (absolute).
	Dir string
	// Changed maps the staged asset directories whose inputs changed
	// ("asset.HASH") to their input directories (workspace-relative).
	Changed map[string]string
	// hashes are the new content hashes of the changed assets.
	hashes map[string]string
	// assets are all staged asset directories that copy an input
	// directory, and those directories, changed or not.
	assets map[string]string
}

func (b *SynthBases) dir(a *engine.Action) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", a.Owner, a.Mnemonic)
	for _, o := range a.Outputs {
		fmt.Fprintf(h, "\x00%s", o.Path)
	}
	return filepath.Join(b.Dir, hex.EncodeToString(h.Sum(nil))[:24])
}

// Reusable says whether the assembly kept for synth action a can stand
// for its output with the inputs of parts, or why not. zips maps the
// zips of python_bundle directories to their directories
// (workspace-relative): a changed zip counts as its directory.
func (b *SynthBases) Reusable(a *engine.Action, parts *engine.KeyParts, zips map[string]string) (*Reuse, string) {
	dir := b.dir(a)
	data, err := os.ReadFile(filepath.Join(dir, "base.json"))
	if err != nil {
		return nil, "no assembly kept from an earlier pipe deploy --hotswap"
	}
	var base synthBase
	if err := json.Unmarshal(data, &base); err != nil || base.Parts == nil {
		return nil, "the kept assembly's record is unreadable"
	}
	old, cur := *base.Parts, *parts
	old.Inputs, cur.Inputs = nil, nil
	if why := engine.DiffKeys(&old, &cur); !sameParts(&old, &cur) {
		return nil, why
	}
	if len(base.Parts.Inputs) != len(parts.Inputs) {
		return nil, "its inputs are not the same files"
	}
	byDir := map[string]string{}
	for staged, d := range base.Assets {
		byDir[d] = staged
	}
	r := &Reuse{Dir: filepath.Join(dir, "cdk.out"), Changed: map[string]string{}, hashes: map[string]string{}, assets: base.Assets}
	for i, in := range parts.Inputs {
		o := base.Parts.Inputs[i]
		if o.Path != in.Path {
			return nil, "its inputs are not the same files"
		}
		if o == in {
			continue
		}
		d := assetDirOf(in.Path, byDir, zips)
		if d == "" {
			return nil, fmt.Sprintf("input %s changed, and it is not a directory the assembly stages as an asset", in.Path)
		}
		r.Changed[byDir[d]] = d
	}
	for staged, d := range r.Changed {
		h := sha256.New()
		for _, in := range parts.Inputs {
			if in.Path == d || strings.HasPrefix(in.Path, d+"/") {
				fmt.Fprintf(h, "%s %s %t\n", in.Path, in.Digest, in.Executable)
			}
		}
		r.hashes[staged] = hex.EncodeToString(h.Sum(nil))
	}
	return r, ""
}

// sameParts compares two keys' parts without their inputs.
func sameParts(a, b *engine.KeyParts) bool {
	return a.Key() == b.Key()
}

// assetDirOf returns the asset input directory p is, is in, or is the zip
// of; "" when none.
func assetDirOf(p string, byDir map[string]string, zips map[string]string) string {
	if d, ok := zips[p]; ok {
		p = d
	}
	for d := range byDir {
		if p == d || strings.HasPrefix(p, d+"/") {
			return d
		}
	}
	return ""
}

// Keep records the assembly synth action a just made (its result r in
// the workspace root, the key parts it ran with), replacing the one kept
// before. Staged asset directories that are copies of an input directory
// are not kept: a reuse reads the input directory instead.
func (b *SynthBases) Keep(root string, a *engine.Action, parts *engine.KeyParts, r *cache.ActionResult) error {
	if len(a.Outputs) != 1 || !a.Outputs[0].Dir {
		return fmt.Errorf("%s %s: want one output directory", a.Owner, a.Mnemonic)
	}
	final := b.dir(a)
	if data, err := os.ReadFile(filepath.Join(final, "base.json")); err == nil {
		var kept synthBase
		if json.Unmarshal(data, &kept) == nil && kept.Parts != nil && kept.Parts.Key() == parts.Key() {
			return nil // kept already (a cache hit of the same synth)
		}
	}
	out := a.Outputs[0].Path
	staged := stagedAssets(out, r)
	inputs := inputTrees(a, parts)
	dirInputs := map[string]cache.Digest{}
	for _, f := range a.Inputs {
		if f.Generator != nil && f.Dir {
			for _, in := range parts.Inputs {
				if in.Path == f.Path {
					dirInputs[f.Path] = in.Digest
				}
			}
		}
	}
	base := synthBase{Parts: parts, Assets: map[string]string{}}
	for name, tree := range staged {
		var match []string
		for d, t := range inputs {
			if t == tree {
				match = append(match, d)
			}
		}
		// A directory output of another action (a python_bundle's
		// directory) is known by its tree digest.
		for d, digest := range dirInputs {
			if engine.TreeDigest(r, out+"/"+name) == digest {
				match = append(match, d)
			}
		}
		// Two inputs with the same content: which one the app staged
		// cannot be told, so neither counts as this asset's source.
		if len(match) == 1 {
			base.Assets[name] = match[0]
		}
	}
	tmp := final + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	for _, o := range r.Outputs {
		rel, ok := strings.CutPrefix(o.Path, out+"/")
		if !ok {
			continue
		}
		if first, _, _ := strings.Cut(rel, "/"); base.Assets[first] != "" {
			continue
		}
		if err := copyFile(filepath.Join(root, filepath.FromSlash(o.Path)), filepath.Join(tmp, "cdk.out", filepath.FromSlash(rel))); err != nil {
			return fmt.Errorf("keep the assembly of %s for hotswaps: %w", a.Owner, err)
		}
	}
	for p, target := range r.Symlinks {
		rel, ok := strings.CutPrefix(p, out+"/")
		if !ok {
			continue
		}
		if first, _, _ := strings.Cut(rel, "/"); base.Assets[first] != "" {
			continue
		}
		dst := filepath.Join(tmp, "cdk.out", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(base, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := files.WriteAtomic(filepath.Join(tmp, "base.json"), data, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// Forget drops the assembly kept for a: its synth ran with other inputs
// and was not kept.
func (b *SynthBases) Forget(a *engine.Action) error {
	return os.RemoveAll(b.dir(a))
}

func copyFile(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, fi.Mode().Perm())
}

// tree is a directory's files: relative path → digest and exec bit.
type tree string

func treeOf(entries map[string]string) tree {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + " " + entries[k] + "\n")
	}
	return tree(b.String())
}

// stagedAssets are the trees of the staged asset directories
// ("asset.HASH") at the top of the assembly out; one with a symbolic link
// is left out (no input directory matches it).
func stagedAssets(out string, r *cache.ActionResult) map[string]tree {
	entries := map[string]map[string]string{}
	for _, o := range r.Outputs {
		rel, ok := strings.CutPrefix(o.Path, out+"/")
		if !ok {
			continue
		}
		first, rest, ok := strings.Cut(rel, "/")
		if !ok || !strings.HasPrefix(first, "asset.") {
			continue
		}
		if entries[first] == nil {
			entries[first] = map[string]string{}
		}
		entries[first][rest] = fmt.Sprintf("%s %t", o.Digest, o.Executable)
	}
	for p := range r.Symlinks {
		if rel, ok := strings.CutPrefix(p, out+"/"); ok {
			first, _, _ := strings.Cut(rel, "/")
			delete(entries, first)
		}
	}
	trees := map[string]tree{}
	for name, e := range entries {
		trees[name] = treeOf(e)
	}
	return trees
}

// inputTrees are the trees of the directories among a's inputs that
// generated files are in: every ancestor directory of the generated
// files, when no directory output lies under it (its files are not known
// one by one).
func inputTrees(a *engine.Action, parts *engine.KeyParts) map[string]tree {
	generated := map[string]*engine.File{}
	for _, f := range a.Inputs {
		if f.Generator != nil {
			generated[f.Path] = f
		}
	}
	entries := map[string]map[string]string{}
	opaque := map[string]bool{}
	for _, in := range parts.Inputs {
		f := generated[in.Path]
		if f == nil {
			continue
		}
		for d := path.Dir(in.Path); d != "." && d != "/"; d = path.Dir(d) {
			if f.Dir {
				opaque[d] = true
				continue
			}
			if entries[d] == nil {
				entries[d] = map[string]string{}
			}
			entries[d][strings.TrimPrefix(in.Path, d+"/")] = fmt.Sprintf("%s %t", in.Digest, in.Executable)
		}
	}
	trees := map[string]tree{}
	for d, e := range entries {
		if !opaque[d] {
			trees[d] = treeOf(e)
		}
	}
	return trees
}

// Apply puts the changed input directories in place of their staged
// copies in the stacks of the kept assembly: each asset's source becomes
// the input directory, and its hash (in the object key and anywhere the
// template names it) a hash of the directory's new content. It fails when
// an asset's key or the template do not name the asset's hash, which a
// default stack synthesizer always does.
func (r *Reuse) Apply(root string, stacks []*deploy.Stack) error {
	for _, s := range stacks {
		for _, a := range s.Assets {
			if filepath.Dir(a.Source) != r.Dir {
				continue
			}
			staged := filepath.Base(a.Source)
			if d, ok := r.assets[staged]; ok {
				// Not kept: the input directory has the same content.
				a.Source = filepath.Join(root, filepath.FromSlash(d))
			}
			d, ok := r.Changed[staged]
			if !ok {
				continue
			}
			old := strings.TrimPrefix(staged, "asset.")
			if old == "" || !strings.Contains(a.Key, old) || !strings.Contains(string(s.Template), old) {
				return fmt.Errorf("stack %s: asset %s: its object key %q does not name its hash", s.Name(), a.DisplayName, a.Key)
			}
			if strings.Contains(string(s.Template), `"AWS::Lambda::Version"`) {
				// The synth names a function's versions by a hash of its
				// code: new code publishes a new version, and the aliases
				// follow. Only the synth knows the name.
				return fmt.Errorf("stack %s publishes Lambda versions, which the synth names after the code", s.Name())
			}
			h := r.hashes[staged]
			a.Key = strings.ReplaceAll(a.Key, old, h)
			a.ID = strings.ReplaceAll(a.ID, old, h)
			a.Source = filepath.Join(root, filepath.FromSlash(d))
			s.Template = []byte(strings.ReplaceAll(string(s.Template), old, h))
		}
	}
	// A staged asset left out of the kept assembly must have been
	// replaced above: nothing may read the missing directory.
	for _, s := range stacks {
		for _, a := range s.Assets {
			if filepath.Dir(a.Source) != r.Dir {
				continue // an input directory now
			}
			if _, err := os.Stat(a.Source); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("stack %s: asset %s: %s is not kept", s.Name(), a.DisplayName, a.Source)
			}
		}
	}
	return nil
}

// BundleZips maps the zip of every python_bundle of the plan to its
// directory (workspace-relative).
func BundleZips(plan *engine.Plan) map[string]string {
	m := map[string]string{}
	for l := range plan.Targets.Targets {
		if b, ok := engine.TargetInfo(plan.Actions, l, python.BundleKey); ok {
			m[b.Zip] = b.Dir
		}
	}
	return m
}

// SynthActions are the synth actions of the cdk_stack targets among
// roots, the ones pipe deploy reads assemblies from.
func SynthActions(plan *engine.Plan, roots []engine.Label) []*engine.Action {
	deployed := map[engine.Label]bool{}
	for _, l := range roots {
		if _, ok := engine.TargetInfo(plan.Actions, l, cdk.AssemblyKey); ok {
			deployed[l] = true
		}
	}
	var out []*engine.Action
	for _, a := range plan.Needed {
		if a.Mnemonic == SynthMnemonic && deployed[a.Owner] {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *engine.Action) int { return strings.Compare(a.Owner.String(), b.Owner.String()) })
	return out
}
