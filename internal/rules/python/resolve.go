package python

// Resolve turns a uv.lock into the list of distributions one bundle needs:
// the runtime closure of a project for one Lambda platform.

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Resolved is one distribution a bundle needs.
type Resolved struct {
	Name, Version string
	Source        Source
	// Wheel is the chosen wheel; nil for workspace members (editable,
	// directory and virtual sources), which are copied as source.
	Wheel  *Wheel
	Member bool
}

// maxConflictPasses bounds the fixpoint over uv's conflict markers; a real
// lock settles in two passes.
const maxConflictPasses = 4

// Resolve walks the runtime dependency closure of the project package root
// with the given extras, for platform p, and picks one wheel for every
// package that is not a local project. Dev groups are never followed.
//
// Markers are evaluated for p (Platform.MarkerEnv), with `extra` set to
// the extra whose optional-dependencies are being followed. When a package
// is locked at several versions (a fork), the dependency edge names the
// version (and source) it means and its marker says when; an edge without
// them is matched by the packages' resolution-markers.
//
// uv encodes conflicting extras as extra names (extra-7-project-cpu); the
// walk treats every extra it activates as active in that encoded form and
// repeats until the set of active extras settles.
//
// The result, sorted by name, includes root itself as a member.
func (l *Lock) Resolve(root string, extras []string, p Platform) ([]Resolved, error) {
	return l.ResolveGroups(root, extras, nil, p)
}

// GroupSpec names the dependency groups ([dependency-groups], uv's
// dev-dependencies in the lock) of the root project to add to its runtime
// closure. Optional groups the project does not declare add nothing;
// required ones are an error.
type GroupSpec struct {
	Names    []string
	Optional bool
}

// ResolveGroups is Resolve with the root project's dependency groups
// followed too, as uv sync does for the dev group: the host environment
// tests run on.
func (l *Lock) ResolveGroups(root string, extras []string, groups *GroupSpec, p Platform) ([]Resolved, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", l.File, root, err)
	}
	if err := l.checkRequiresPython(p); err != nil {
		return nil, err
	}
	r := &lockResolver{lock: l, idx: l.index(), env: p.MarkerEnv(), markers: map[string]markerNode{}}
	rootPkg, err := r.root(root)
	if err != nil {
		return nil, err
	}
	var want []string
	for _, e := range extras {
		if optionalKey(rootPkg, e) == "" {
			avail := make(map[string]bool)
			for k := range rootPkg.Optional {
				avail[k] = true
			}
			have := "it has none"
			if len(avail) > 0 {
				have = "it has " + strings.Join(sortedExtraNames(avail), ", ")
			}
			return nil, fmt.Errorf("%s: package %s has no extra %q (%s); declare it under [project.optional-dependencies] and run `uv lock`", l.File, rootPkg.Name, e, have)
		}
		want = append(want, NormalizeName(e))
	}

	var wantGroups []string
	if groups != nil {
		for _, g := range groups.Names {
			key := groupKey(rootPkg, g)
			if key == "" {
				if groups.Optional {
					continue
				}
				have := "it has none"
				if len(rootPkg.Dev) > 0 {
					var names []string
					for k := range rootPkg.Dev {
						names = append(names, k)
					}
					sort.Strings(names)
					have = "it has " + strings.Join(names, ", ")
				}
				return nil, fmt.Errorf("%s: package %s has no dependency group %q (%s); declare it under [dependency-groups] in its pyproject.toml and run `uv lock`", l.File, rootPkg.Name, g, have)
			}
			wantGroups = append(wantGroups, key)
		}
	}

	active := map[string]bool{}
	for _, e := range want {
		active[conflictExtra(rootPkg.Name, e)] = true
	}
	var chosen map[string]*LockPackage
	for pass := 0; ; pass++ {
		var activated map[string]bool
		r.active = active
		chosen, activated, err = r.walk(rootPkg, want, wantGroups, active)
		if err != nil {
			return nil, err
		}
		if pass+1 == maxConflictPasses || sameExtraSet(activated, active) {
			break
		}
		active = activated
	}

	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	sort.Strings(names)
	ts := p.tagSet()
	var out []Resolved
	var errs []error
	for _, n := range names {
		pkg := chosen[n]
		res := Resolved{Name: pkg.Name, Version: pkg.Version, Source: pkg.Source}
		switch {
		case l.isMember(pkg):
			res.Member = true
		case pkg.Source.Kind == "git":
			errs = append(errs, fmt.Errorf("%s: %s %s comes from git (%s), and pipe bundles only wheels; "+
				"publish a wheel to your index and depend on it by version, or make it a workspace member", l.File, pkg.Name, pkg.Version, pkg.Source.Value))
			continue
		default:
			w, err := selectWheel(pkg.Name, pkg.Version, pkg.Wheels, pkg.Sdist, ts)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", l.File, err))
				continue
			}
			res.Wheel = w
		}
		out = append(out, res)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// conflictExtra is uv's encoding of an extra in conflict markers.
func conflictExtra(pkg, extra string) string {
	n := NormalizeName(pkg)
	return fmt.Sprintf("extra-%d-%s-%s", len(n), n, NormalizeName(extra))
}

func sameExtraSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// optionalKey finds extra among pkg's optional-dependencies, whatever its
// spelling; "" if absent.
func optionalKey(pkg *LockPackage, extra string) string {
	want := NormalizeName(extra)
	for k := range pkg.Optional {
		if NormalizeName(k) == want {
			return k
		}
	}
	return ""
}

// checkRequiresPython refuses a platform the lock was not resolved for:
// its wheels and forks would be for other interpreters. For "3.12" any
// patch release counts, tried as 3.12.0 and a late 3.12.x.
func (l *Lock) checkRequiresPython(p Platform) error {
	if l.RequiresPython == "" {
		return nil
	}
	set, err := parseSpecifierSet(l.RequiresPython)
	if err != nil {
		return fmt.Errorf("%s: requires-python: %w", l.File, err)
	}
	tries := []string{p.fullPythonVersion()}
	if strings.Count(p.PythonVersion, ".") < 2 {
		tries = append(tries, p.minorPythonVersion()+".999")
	}
	for _, v := range tries {
		if set.contains(v) {
			return nil
		}
	}
	return fmt.Errorf("%s: the lock is for requires-python %s, which excludes python%s; "+
		"set python_version to one the project supports, or change requires-python in pyproject.toml and run `uv lock`",
		l.File, l.RequiresPython, p.minorPythonVersion())
}

type lockResolver struct {
	lock    *Lock
	idx     map[string][]*LockPackage
	env     MarkerEnv
	markers map[string]markerNode
	// active is the set of encoded extras of the current pass, for
	// resolution markers that mention them.
	active map[string]bool
}

func (r *lockResolver) root(name string) (*LockPackage, error) {
	cands := r.idx[NormalizeName(name)]
	if len(cands) == 0 {
		return nil, fmt.Errorf("%s: no package %q; the lock is older than the project: run `uv lock`", r.lock.File, name)
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	return r.byResolutionMarkers(cands, nil, fmt.Sprintf("project %s", name))
}

type walkItem struct {
	pkg   *LockPackage
	extra string // "" for the base dependencies
	group string // a dependency group of the root, instead of extra
}

// groupKey finds group among pkg's dependency groups, whatever its
// spelling; "" if absent.
func groupKey(pkg *LockPackage, group string) string {
	want := NormalizeName(group)
	for k := range pkg.Dev {
		if NormalizeName(k) == want {
			return k
		}
	}
	return ""
}

// walk follows edges from root and returns the chosen package per
// normalised name, and the encoded extras it activated.
func (r *lockResolver) walk(root *LockPackage, extras, groups []string, active map[string]bool) (map[string]*LockPackage, map[string]bool, error) {
	chosen := map[string]*LockPackage{}
	activated := map[string]bool{}
	seen := map[walkItem]bool{}
	queue := []walkItem{{pkg: root}}
	for _, e := range extras {
		queue = append(queue, walkItem{pkg: root, extra: e})
	}
	for _, g := range groups {
		queue = append(queue, walkItem{pkg: root, group: g})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if seen[it] {
			continue
		}
		seen[it] = true
		name := NormalizeName(it.pkg.Name)
		if prev, ok := chosen[name]; ok && prev != it.pkg {
			return nil, nil, fmt.Errorf("%s: %s is locked at %s and at %s, and both apply to python%s on %s; run `uv lock`",
				r.lock.File, it.pkg.Name, prev.Version, it.pkg.Version, r.env["python_version"], r.env["platform_machine"])
		}
		chosen[name] = it.pkg
		deps := it.pkg.Dependencies
		edgeExtras := active
		if it.group != "" {
			deps = it.pkg.Dev[it.group]
		} else if it.extra != "" {
			deps = it.pkg.Optional[optionalKey(it.pkg, it.extra)]
			activated[conflictExtra(it.pkg.Name, it.extra)] = true
			edgeExtras = make(map[string]bool, len(active)+1)
			for k := range active {
				edgeExtras[k] = true
			}
			edgeExtras[it.extra] = true
		}
		for _, d := range deps {
			ok, err := r.eval(d.Marker, edgeExtras)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s %s: dependency %s: %w", r.lock.File, it.pkg.Name, it.pkg.Version, d.Name, err)
			}
			if !ok {
				continue
			}
			target, err := r.target(it.pkg, d)
			if err != nil {
				return nil, nil, err
			}
			queue = append(queue, walkItem{pkg: target})
			for _, x := range d.Extras {
				// uv drops extras a package does not define; so do we.
				if optionalKey(target, x) != "" {
					queue = append(queue, walkItem{pkg: target, extra: NormalizeName(x)})
				}
			}
		}
	}
	return chosen, activated, nil
}

func (r *lockResolver) eval(marker string, extras map[string]bool) (bool, error) {
	m, ok := r.markers[marker]
	if !ok {
		var err error
		if m, err = parseMarker(marker); err != nil {
			return false, err
		}
		r.markers[marker] = m
	}
	return m.eval(r.env, extras)
}

// target finds the package an edge points at: by name, narrowed by the
// version and source the edge carries when the name is ambiguous.
func (r *lockResolver) target(from *LockPackage, d LockDep) (*LockPackage, error) {
	cands := r.idx[NormalizeName(d.Name)]
	if len(cands) == 0 {
		return nil, fmt.Errorf("%s: %s %s depends on %s, which the lock does not contain; run `uv lock`", r.lock.File, from.Name, from.Version, d.Name)
	}
	if len(cands) == 1 && d.Version == "" && d.Source == nil {
		return cands[0], nil
	}
	var match []*LockPackage
	for _, c := range cands {
		if d.Version != "" && !sameVersion(c.Version, d.Version) {
			continue
		}
		if d.Source != nil && (c.Source.Kind != d.Source.Kind || c.Source.Value != d.Source.Value) {
			continue
		}
		match = append(match, c)
	}
	switch len(match) {
	case 0:
		want := d.Version
		if d.Source != nil {
			want += " from " + d.Source.String()
		}
		return nil, fmt.Errorf("%s: %s %s depends on %s %s, which the lock does not contain; run `uv lock`", r.lock.File, from.Name, from.Version, d.Name, want)
	case 1:
		return match[0], nil
	}
	return r.byResolutionMarkers(match, from, d.Name)
}

// byResolutionMarkers picks, among versions of one package, the one whose
// resolution-markers hold for the target.
func (r *lockResolver) byResolutionMarkers(cands []*LockPackage, from *LockPackage, what string) (*LockPackage, error) {
	var match []*LockPackage
	for _, c := range cands {
		if len(c.ResolutionMarkers) == 0 {
			continue
		}
		for _, m := range c.ResolutionMarkers {
			ok, err := r.eval(m, r.active)
			if err != nil {
				return nil, fmt.Errorf("%s: %s %s: resolution marker: %w", r.lock.File, c.Name, c.Version, err)
			}
			if ok {
				match = append(match, c)
				break
			}
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	var versions []string
	for _, c := range cands {
		versions = append(versions, c.Version)
	}
	via := ""
	if from != nil {
		via = fmt.Sprintf(" (required by %s %s)", from.Name, from.Version)
	}
	return nil, fmt.Errorf("%s: %s%s is locked at %s and the lock does not say which applies to python%s on %s; run `uv lock`",
		r.lock.File, what, via, strings.Join(versions, ", "), r.env["python_version"], r.env["platform_machine"])
}

// sameVersion compares versions as PEP 440 does (1.0 == 1.0.0), falling
// back to text for versions that do not parse.
func sameVersion(a, b string) bool {
	if a == b {
		return true
	}
	va, err1 := parsePEPVersion(a)
	vb, err2 := parsePEPVersion(b)
	return err1 == nil && err2 == nil && compareVersions(va, vb) == 0
}

// CheckDeclared reports pyproject dependencies (PEP 508 requirement
// strings) that the lock does not reflect: a name root does not depend on
// in the lock, or a version range no locked version satisfies. Both mean
// pyproject.toml changed after the last `uv lock`.
func (l *Lock) CheckDeclared(root string, requirements []string) error {
	pkgs := l.Lookup(root)
	if len(pkgs) == 0 {
		return fmt.Errorf("%s: no package %q; the lock is older than the project: run `uv lock`", l.File, root)
	}
	// uv records the member's requirements as requires-dist; older locks
	// only have the resolved edges.
	declared := map[string]bool{}
	for _, p := range pkgs {
		for _, r := range p.RequiresDist {
			declared[NormalizeName(r.Name)] = true
		}
	}
	if len(declared) == 0 {
		for _, p := range pkgs {
			for _, d := range p.Dependencies {
				declared[NormalizeName(d.Name)] = true
			}
			for _, deps := range p.Optional {
				for _, d := range deps {
					declared[NormalizeName(d.Name)] = true
				}
			}
		}
	}
	var problems []string
	for _, req := range requirements {
		pr, err := parseRequirement(req)
		if err != nil {
			return fmt.Errorf("%s: pyproject dependency: %w", l.File, err)
		}
		n := NormalizeName(pr.Name)
		if n == NormalizeName(root) {
			continue
		}
		if !declared[n] {
			problems = append(problems, fmt.Sprintf("%s is not in it", pr.Name))
			continue
		}
		if pr.Specifier == "" || pr.URL != "" {
			continue
		}
		set, err := parseSpecifierSet(pr.Specifier)
		if err != nil {
			return fmt.Errorf("%s: pyproject dependency %q: %w", l.File, req, err)
		}
		var versions []string
		ok := false
		for _, c := range l.Lookup(n) {
			if c.Version == "" || set.contains(c.Version) {
				ok = true
			}
			versions = append(versions, c.Version)
		}
		if !ok && len(versions) > 0 {
			problems = append(problems, fmt.Sprintf("%s%s is required but %s is locked", pr.Name, pr.Specifier, strings.Join(versions, ", ")))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s is out of date with %s's pyproject.toml: %s; run `uv lock`", l.File, root, strings.Join(problems, "; "))
	}
	return nil
}

// sortedExtraNames returns the names in a set of extras, sorted.
func sortedExtraNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
