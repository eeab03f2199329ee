package engine

import (
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
	// Reanalyze returns the action graph of the same target graph analysed
	// with the base revision's content of the changed files: AnalyzeWith on
	// a Workspace whose Overlay holds that content (nil for a file the base
	// did not have). Rules read some files while they analyse, not in an
	// action: uv.lock becomes the PyDeps action's identity, and no action
	// lists it as an input. Comparing the two analyses finds exactly the
	// targets such a change reaches: a uv.lock edit affects the bundles
	// whose resolved wheel set changed, not every Python target.
	//
	// An AnalysisFailures error with a graph counts the failed targets as
	// affected and compares the rest. Any other error counts every target.
	// Nil: a file named in an attribute affects the targets naming it.
	Reanalyze func() (*ActionGraph, error)
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
func Affected(tg *TargetGraph, ag *ActionGraph, changed []string, opts AffectedOptions) []Label {
	var changes []FileChange
	for _, p := range changed {
		kind := ChangeModified
		if _, err := os.Lstat(tg.WS.Abs(p)); err != nil {
			kind = ChangeDeleted
		}
		changes = append(changes, FileChange{Path: p, Kind: kind})
	}
	var out []Label
	for _, a := range AffectedTargets(tg, ag, changes, opts) {
		out = append(out, a.Label)
	}
	return out
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
//   - with opts.Reanalyze, a target whose actions differ from the base
//     analysis;
//   - every target that depends, directly or not, on an affected one.
//
// A renamed file counts under both its paths.
func AffectedTargets(tg *TargetGraph, ag *ActionGraph, changes []FileChange, opts AffectedOptions) []AffectedTarget {
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
		return nil
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
			if _, ok := what[r.File]; ok && (content[r.File] || opts.Reanalyze == nil) {
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

	if opts.Reanalyze != nil {
		a.compareBase(ag, opts.Reanalyze)
	}
	a.addRdeps()

	out := make([]AffectedTarget, 0, len(a.reasons))
	for l, rs := range a.reasons {
		out = append(out, AffectedTarget{Label: l, Reasons: rs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label.Less(out[j].Label) })
	return out
}

type affected struct {
	tg      *TargetGraph
	reasons map[Label][]string
	seen    map[Label]map[string]bool
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

// compareBase counts the targets whose actions differ between the head
// analysis and the base one. Owners and mnemonics match the two up; every
// field that reaches an action key is compared, not only Identity, since a
// rule may put what it read anywhere in the action.
func (a *affected) compareBase(head *ActionGraph, reanalyze func() (*ActionGraph, error)) {
	base, err := reanalyze()
	var failures AnalysisFailures
	switch {
	case err == nil && base != nil:
	case base != nil && asAnalysisFailures(err, &failures):
		for l, ferr := range failures {
			a.add(l, "its analysis fails with the base revision's files: "+firstLine(ferr.Error()))
		}
	default:
		reason := "analysis with the base revision's files failed, so every target counts"
		if err != nil {
			reason += ": " + firstLine(err.Error())
		}
		for l := range a.tg.Targets {
			a.add(l, reason)
		}
		return
	}
	hp, bp := actionPrints(head), actionPrints(base)
	for l := range a.tg.Targets {
		if failures[l] != nil {
			continue
		}
		for _, m := range differingMnemonics(hp[l], bp[l]) {
			a.add(l, "its "+m+" action differs from the one analysed with the base revision's files (a changed file is read at analysis)")
		}
	}
}

func asAnalysisFailures(err error, out *AnalysisFailures) bool {
	f, ok := err.(AnalysisFailures)
	if ok {
		*out = f
	}
	return ok
}

// actionPrints describes each target's actions: mnemonic → one string per
// action holding everything that reaches its key, sorted.
func actionPrints(ag *ActionGraph) map[Label]map[string][]string {
	out := map[Label]map[string][]string{}
	for _, act := range ag.Actions {
		var b strings.Builder
		field := func(s string) { fmt.Fprintf(&b, "%d:%s", len(s), s) }
		field(act.Identity)
		for _, s := range act.Argv {
			field(s)
		}
		b.WriteString("|")
		keys := make([]string, 0, len(act.Env))
		for k := range act.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field(k)
			field(act.Env[k])
		}
		b.WriteString("|")
		for _, s := range act.Tools {
			field(s)
		}
		b.WriteString("|")
		for _, f := range act.Inputs {
			field(f.Path)
		}
		b.WriteString("|")
		for _, f := range act.Outputs {
			field(f.Path)
		}
		fmt.Fprintf(&b, "|%t", act.Sandbox)
		m := out[act.Owner]
		if m == nil {
			m = map[string][]string{}
			out[act.Owner] = m
		}
		m[act.Mnemonic] = append(m[act.Mnemonic], b.String())
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

// addRdeps adds every target that depends, directly or not, on an affected
// one. Each affected target names the affected targets it depends on
// directly, so a reader can follow the chain back to a changed file.
func (a *affected) addRdeps() {
	rev := map[Label][]Label{}
	for _, l := range a.tg.Order {
		for _, d := range a.tg.DirectDeps(l) {
			rev[d] = append(rev[d], l)
		}
	}
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

// AnalysisFailures is the error of AnalyzeLenient: the targets whose
// analysis failed, each with its error.
type AnalysisFailures map[Label]error

func (f AnalysisFailures) Error() string {
	labels := make([]Label, 0, len(f))
	for l := range f {
		labels = append(labels, l)
	}
	sortLabels(labels)
	msgs := make([]string, len(labels))
	for i, l := range labels {
		msgs[i] = f[l].Error()
	}
	return strings.Join(msgs, "\n")
}

// AnalyzeLenient analyses tg like Analyze but goes on past a target whose
// analysis fails: the graph holds every other target's actions, and the
// error is an AnalysisFailures. A base analysis needs this: a change that
// adds a service fails analysis at the base (its pyproject.toml did not
// exist yet), and that must not hide what the change did to the others.
// The graph is not linked; it is for comparing actions, not running them.
func AnalyzeLenient(tg *TargetGraph) (*ActionGraph, error) {
	ag := &ActionGraph{
		results: map[Label]targetResult{},
		sources: map[string]*File{},
		byPath:  map[string]*Action{},
	}
	failures := AnalysisFailures{}
	for _, l := range tg.Order {
		t := tg.Targets[l]
		ctx := &AnalysisContext{Target: t, tg: tg, ag: ag}
		if t.Rule.Analyze != nil {
			n := len(ag.Actions)
			if err := analyzeSafely(t.Rule.Analyze, ctx); err != nil {
				// Drop the half-declared actions of the failed target.
				ag.Actions = ag.Actions[:n]
				failures[l] = err
				continue
			}
		}
		ag.results[l] = targetResult{files: ctx.provided, info: ctx.info, runnable: ctx.runnable}
	}
	if len(failures) > 0 {
		return ag, failures
	}
	return ag, nil
}

// analyzeSafely turns a panic into an error: a rule that reads a failed
// dependency's missing results may not expect to be analysed at all.
func analyzeSafely(f func(*AnalysisContext) error, ctx *AnalysisContext) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: analysis panicked: %v", ctx.Target.Label, r)
		}
	}()
	return f(ctx)
}

// AnalyzeWith analyses tg's targets leniently (AnalyzeLenient) in another
// view of the workspace, such as one whose Overlay holds the base
// revision's files. ws must be a fresh Workspace: rules memoize what they
// read per workspace.
func AnalyzeWith(tg *TargetGraph, ws *Workspace) (*ActionGraph, error) {
	c := *tg
	c.WS = ws
	return AnalyzeLenient(&c)
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
