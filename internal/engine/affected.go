package engine

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Kinds of FileChange, as git reports them.
const (
	ChangeAdded    = "added"
	ChangeModified = "modified"
	ChangeDeleted  = "deleted"
	ChangeRenamed  = "renamed"
)

// FileChange is one file that differs between the base revision and the
// tree being analysed.
type FileChange struct {
	Path    string // workspace-relative, slash-separated
	OldPath string // for a rename: the path before
	Kind    string // ChangeAdded, ChangeModified, ChangeDeleted or ChangeRenamed
}

// AffectedOptions tune AffectedTargets.
type AffectedOptions struct {
	// BaseFile returns the base revision's content of a changed file, or
	// an error wrapping fs.ErrNotExist for a file the base did not have.
	// Rules read some files while they analyse, not in an action: uv.lock
	// becomes the PyDeps action's identity, and no action lists it as an
	// input. With BaseFile, the targets whose analysis read a changed path
	// (ActionGraph.AnalysisInputs), and the targets that depend on them,
	// are analysed again with the base revision's content of the changed
	// files, and a target whose actions' static key parts differ from the
	// head's is affected: a uv.lock edit affects the bundles whose resolved
	// wheel set changed, not every Python target.
	//
	// A target whose analysis fails with the base's files is affected. A
	// failure to read the base revision counts every target. Nil: a file
	// named in an attribute affects the targets naming it.
	BaseFile func(path string) ([]byte, error)
}

// AffectedTarget is a target a change affects, and why.
type AffectedTarget struct {
	Label   Label
	Reasons []string
}

// Affected is AffectedTargets for a list of changed workspace-relative
// paths, for callers without git's view of the change: a path missing from
// the workspace counts as deleted, any other as modified. Pass both paths
// of a rename.
func Affected(ctx context.Context, tg *TargetGraph, ag *ActionGraph, changed []string, opts AffectedOptions) ([]Label, error) {
	var changes []FileChange
	for _, p := range changed {
		kind := ChangeModified
		if _, err := os.Lstat(tg.WS.Abs(p)); err != nil {
			kind = ChangeDeleted
		}
		changes = append(changes, FileChange{Path: p, Kind: kind})
	}
	targets, err := AffectedTargets(ctx, tg, ag, changes, opts)
	if err != nil {
		return nil, err
	}
	var out []Label
	for _, a := range targets {
		out = append(out, a.Label)
	}
	return out, nil
}

// AffectedTargets returns, sorted by label, the targets of tg that the
// changes affect:
//
//   - a target whose actions read a changed source file, that provides one
//     (a filegroup), that writes a changed path, or that names one in an
//     attribute;
//   - every target of a package whose BUILD.star, or any .star file it
//     loads (transitively), changed;
//   - every target of a package whose globs may see different files: a
//     file deleted or renamed away inside it (no longer in any input, but a
//     glob may have matched it), a BUILD.star or WORKSPACE.star added or
//     removed below it (a sub-package takes its files), a .gitignore
//     changed in or above it;
//   - every target, when WORKSPACE.star changed: its settings reach every
//     action key;
//   - with opts.BaseFile, a target whose analysis read a changed path and
//     whose actions differ when it is analysed with the base revision's
//     files (see AffectedOptions);
//   - every target that depends, directly or not, on an affected one.
//
// A renamed file counts under both its paths. The error is ctx's, when
// the base analysis was interrupted.
func AffectedTargets(ctx context.Context, tg *TargetGraph, ag *ActionGraph, changes []FileChange, opts AffectedOptions) ([]AffectedTarget, error) {
	a := &affected{tg: tg, reasons: map[Label][]string{}, seen: map[Label]map[string]bool{}}
	// what maps each changed path to how it changed, for the reasons.
	what := map[string]string{}
	var gone []string // paths that no longer exist
	for _, c := range changes {
		p := cleanRel(c.Path)
		if p == "" || ignoredPath(p) {
			continue
		}
		switch c.Kind {
		case ChangeRenamed:
			old := cleanRel(c.OldPath)
			if old == "" {
				what[p] = ChangeAdded
				continue
			}
			what[p] = "renamed from " + old
			if !ignoredPath(old) {
				what[old] = "renamed to " + p
				gone = append(gone, old)
			}
		case ChangeDeleted:
			what[p] = c.Kind
			gone = append(gone, p)
		default:
			what[p] = c.Kind
		}
	}
	if len(what) == 0 {
		return nil, nil
	}
	desc := func(p string) string { return p + " (" + what[p] + ")" }
	// Sorted, so each target's reasons come in the same order every run.
	paths := make([]string, 0, len(what))
	for p := range what {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	if _, ok := what[WorkspaceFile]; ok {
		for l := range tg.Targets {
			a.add(l, desc(WorkspaceFile)+": workspace settings reach every action")
		}
	}

	// Files the actions and targets use as content.
	content := map[string]bool{}
	for _, act := range ag.Actions {
		for _, f := range act.Inputs {
			if !f.IsSource() {
				continue
			}
			content[f.Path] = true
			if _, ok := what[f.Path]; ok {
				a.add(act.Owner, "its "+act.Mnemonic+" action reads "+desc(f.Path))
			}
		}
	}
	// A checked-in copy of a generated file (DeclareAt outside dist/) is
	// rewritten by the build, so the target that writes it is affected.
	for _, p := range paths {
		for d := p; d != ""; d = parentDir(d) {
			if act := ag.Producer(d); act != nil && (d == p || isDirOutput(act, d)) {
				a.add(act.Owner, "its "+act.Mnemonic+" action writes "+desc(p))
			}
		}
	}
	for _, l := range tg.Order {
		for _, f := range ag.TargetFiles(l) {
			if !f.IsSource() {
				continue
			}
			content[f.Path] = true
			if _, ok := what[f.Path]; ok {
				a.add(l, "provides "+desc(f.Path))
			}
		}
	}
	// A file only named in an attribute and never used as content is read
	// by analysis, if at all; with a base analysis to compare against, what
	// analysis made of it decides, not its name.
	for _, l := range tg.Order {
		t := tg.Targets[l]
		for _, d := range t.Deps() {
			r := tg.Resolve(l, d.Label)
			if r.File == "" {
				continue
			}
			if _, ok := what[r.File]; ok && (content[r.File] || opts.BaseFile == nil) {
				a.add(l, "names "+desc(r.File)+" in "+d.Attr)
			}
		}
	}

	// Packages whose evaluation read a changed .star file.
	for _, pkg := range tg.Packages {
		if _, ok := what[pkg.File]; ok {
			a.addPackage(pkg, desc(pkg.File))
		}
		for _, f := range pkg.Loads {
			if _, ok := what[f]; ok {
				a.addPackage(pkg, "loads "+desc(f))
			}
		}
	}

	// Packages whose globs may list other files now.
	isGone := map[string]bool{}
	for _, p := range gone {
		isGone[p] = true
	}
	for _, p := range paths {
		dir, base := path.Dir(p), path.Base(p)
		if dir == "." {
			dir = ""
		}
		switch {
		case base == ".gitignore":
			for _, pkg := range tg.Packages {
				if dir == "" || pkg.Path == dir || strings.HasPrefix(pkg.Path, dir+"/") {
					a.addPackage(pkg, desc(p)+": its globs read it")
				}
			}
			if pkg := a.ownerPackage(dir); pkg != nil {
				a.addPackage(pkg, desc(p)+": its globs read it")
			}
		case (base == BuildFile || base == WorkspaceFile) && p != WorkspaceFile:
			if what[p] == ChangeModified || dir == "" {
				continue
			}
			if pkg := a.ownerPackage(parentDir(dir)); pkg != nil {
				a.addPackage(pkg, desc(p)+": the files under "+dir+"/ move between packages")
			}
		case isGone[p]:
			if pkg := a.ownerPackage(dir); pkg != nil {
				a.addPackage(pkg, desc(p)+": a glob of //"+pkg.Path+" may have matched it")
			}
		}
	}

	if opts.BaseFile != nil {
		if err := a.compareBase(ctx, ag, what, opts.BaseFile); err != nil {
			return nil, err
		}
	}
	a.addRdeps()

	out := make([]AffectedTarget, 0, len(a.reasons))
	for l, rs := range a.reasons {
		out = append(out, AffectedTarget{Label: l, Reasons: rs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label.Less(out[j].Label) })
	return out, nil
}

type affected struct {
	tg      *TargetGraph
	reasons map[Label][]string
	seen    map[Label]map[string]bool
	rev     map[Label][]Label // reverseDeps, once computed
}

func (a *affected) add(l Label, reason string) {
	if _, ok := a.tg.Targets[l]; !ok {
		return
	}
	s := a.seen[l]
	if s == nil {
		s = map[string]bool{}
		a.seen[l] = s
	}
	if !s[reason] {
		s[reason] = true
		a.reasons[l] = append(a.reasons[l], reason)
	}
}

func (a *affected) addPackage(pkg *Package, reason string) {
	for _, name := range pkg.Order {
		a.add(Label{pkg.Path, name}, reason)
	}
}

// ownerPackage is the loaded package whose directory tree holds dir: the
// nearest one at or above it, unless a nested workspace comes first.
func (a *affected) ownerPackage(dir string) *Package {
	for d := dir; ; d = parentDir(d) {
		if pkg, ok := a.tg.Packages[d]; ok {
			return pkg
		}
		if d == "" {
			return nil
		}
		if _, err := os.Stat(filepath.Join(a.tg.WS.Root, filepath.FromSlash(d), WorkspaceFile)); err == nil {
			return nil
		}
	}
}

// compareBase analyses again, with the base revision's content of the
// changed files, the targets whose analysis read a changed path, and the
// targets depending on them (whose dependencies' results may differ), and
// counts those whose actions differ from the head's. Owners and mnemonics
// match the two up; the actions' static key parts are compared, not only
// Identity, since a rule may put what it read anywhere in the action.
func (a *affected) compareBase(ctx context.Context, head *ActionGraph, what map[string]string, baseFile func(string) ([]byte, error)) error {
	changed := make(map[string]bool, len(what))
	for p := range what {
		changed[p] = true
	}
	start := labelSet{}
	for l, ins := range head.inputs {
		for _, in := range ins {
			if (in.Kind == InputFile || in.Kind == InputStat) && changed[in.Name] {
				start[l] = true
				break
			}
		}
	}
	if len(start) == 0 {
		return nil
	}
	rev := a.reverseDeps()
	redo := closure(start, -1, func(l Label) []Label { return rev[l] })
	view := newFileView(a.tg.WS.Root)
	view.base, view.changed = baseFile, changed
	base, err := reanalyze(ctx, a.tg, head, redo, view)
	if err != nil {
		return err
	}
	if view.baseErr != nil {
		reason := "analysis with the base revision's files failed, so every target counts: " + firstLine(view.baseErr.Error())
		for l := range a.tg.Targets {
			a.add(l, reason)
		}
		return nil
	}
	hp, bp := keyPrints(head.Actions, redo), keyPrints(base.graph.Actions, redo)
	for l := range redo {
		if ferr := base.failed[l]; ferr != nil {
			a.add(l, "its analysis fails with the base revision's files: "+firstLine(ferr.Error()))
			continue
		}
		if base.skipped[l] {
			continue
		}
		for _, m := range differingMnemonics(hp[l], bp[l]) {
			a.add(l, "its "+m+" action differs from the one analysed with the base revision's files (a changed file is read at analysis)")
		}
	}
	return nil
}

// baseAnalysis is the outcome of reanalyze.
type baseAnalysis struct {
	graph *ActionGraph
	// failed are the targets whose analysis failed, with the error.
	failed map[Label]error
	// skipped depend on a failed target and were not analysed: they are
	// affected through it.
	skipped labelSet
}

// reanalyze analyses the targets in redo again, in target order, reading
// files through view, with head's results standing in for every other
// target. It goes on past a target whose analysis fails. The graph is not
// linked; it is for comparing actions, not running them.
func reanalyze(ctx context.Context, tg *TargetGraph, head *ActionGraph, redo labelSet, view *fileView) (*baseAnalysis, error) {
	b := &baseAnalysis{graph: newActionGraph(view), failed: map[Label]error{}, skipped: labelSet{}}
	for l, r := range head.results {
		b.graph.results[l] = r
	}
	for _, l := range tg.Order {
		if !redo[l] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("analysis with the base revision's files interrupted: %w", err)
		}
		for _, d := range tg.DirectDeps(l) {
			if b.failed[d] != nil || b.skipped[d] {
				b.skipped[l] = true
			}
		}
		if b.skipped[l] {
			continue
		}
		delete(b.graph.results, l)
		if err := b.graph.analyzeSafely(ctx, tg, tg.Targets[l]); err != nil {
			b.failed[l] = err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("analysis with the base revision's files interrupted: %w", err)
	}
	return b, nil
}

// analyzeSafely is analyzeTarget turning a panic into an error: a rule
// analysed with another revision's files may meet content it never
// expected, and that must not take pipe down.
func (ag *ActionGraph) analyzeSafely(ctx context.Context, tg *TargetGraph, t *Target) (err error) {
	n := len(ag.Actions)
	defer func() {
		if r := recover(); r != nil {
			ag.Actions = ag.Actions[:n]
			err = fmt.Errorf("%s: analysis panicked: %v", t.Label, r)
		}
	}()
	return ag.analyzeTarget(ctx, tg, t)
}

// keyPrints describes the actions of the targets in want: owner →
// mnemonic → the digest of each action's static key parts, sorted.
func keyPrints(actions []*Action, want labelSet) map[Label]map[string][]string {
	out := map[Label]map[string][]string{}
	for _, act := range actions {
		if !want[act.Owner] {
			continue
		}
		parts, _ := staticKeyParts(act, "")
		m := out[act.Owner]
		if m == nil {
			m = map[string][]string{}
			out[act.Owner] = m
		}
		m[act.Mnemonic] = append(m[act.Mnemonic], parts.Key().String())
	}
	for _, m := range out {
		for _, prints := range m {
			sort.Strings(prints)
		}
	}
	return out
}

func differingMnemonics(head, base map[string][]string) []string {
	var out []string
	for m, hs := range head {
		if !slices.Equal(hs, base[m]) {
			out = append(out, m)
		}
	}
	for m := range base {
		if _, ok := head[m]; !ok {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// reverseDeps maps each target to the targets that depend on it directly.
func (a *affected) reverseDeps() map[Label][]Label {
	if a.rev != nil {
		return a.rev
	}
	a.rev = map[Label][]Label{}
	for _, l := range a.tg.Order {
		for _, d := range a.tg.DirectDeps(l) {
			a.rev[d] = append(a.rev[d], l)
		}
	}
	return a.rev
}

// addRdeps adds every target that depends, directly or not, on an affected
// one. Each affected target names the affected targets it depends on
// directly, so a reader can follow the chain back to a changed file.
func (a *affected) addRdeps() {
	rev := a.reverseDeps()
	start := labelSet{}
	for l := range a.reasons {
		start[l] = true
	}
	all := closure(start, -1, func(l Label) []Label { return rev[l] })
	labels := make([]Label, 0, len(all))
	for l := range all {
		labels = append(labels, l)
	}
	sortLabels(labels)
	for _, l := range labels {
		for _, d := range a.tg.DirectDeps(l) {
			if all[d] {
				a.add(l, "depends on "+d.String())
			}
		}
	}
}

func isDirOutput(act *Action, p string) bool {
	for _, f := range act.Outputs {
		if f.Path == p && f.Dir {
			return true
		}
	}
	return false
}

func cleanRel(p string) string {
	if p == "" {
		return ""
	}
	p = path.Clean(strings.TrimPrefix(p, "/"))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}

// ignoredPath reports pipe's own state and outputs, which no target reads.
func ignoredPath(p string) bool {
	return p == ".pipe" || strings.HasPrefix(p, ".pipe/") || p == "dist" || strings.HasPrefix(p, "dist/")
}

func parentDir(d string) string {
	if d == "" {
		return ""
	}
	p := path.Dir(d)
	if p == "." {
		return ""
	}
	return p
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
