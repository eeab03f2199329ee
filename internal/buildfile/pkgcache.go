package buildfile

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/kvfile"
)

// PackageCache keeps evaluated packages in .pipe/packages so a build whose
// BUILD files did not change skips Starlark entirely.
//
// An entry records the stat of everything the package's value depends on:
// its BUILD.star, every .star file it loaded (transitively), every directory
// its globs listed and every .gitignore they consulted (present or absent).
// Adding, removing or renaming a file changes its directory's mtime, so a
// glob result cannot change without a recorded stat changing. Like file
// digests, an entry is trusted only when none of those paths changed within
// racyWindow of the evaluation, since timestamps are only as fine as the
// kernel's clock tick.
type PackageCache struct {
	ev          *Evaluator
	path        string
	fingerprint string

	// The file is opened on first use: a build answered by its snapshot
	// never needs it. Entries are read one package at a time (kvfile), so a
	// build that loads ten packages of 10,000 decodes ten.
	once sync.Once
	kv   *kvfile.File
	mu   sync.Mutex
	got  map[string]*pkgEntry // decoded or evaluated by this process
}

// The cached types are encoded as CBOR arrays (toarray): field names are
// not repeated in every entry.
type pkgEntry struct {
	_        struct{} `cbor:",toarray"`
	Pkg      cachedPackage
	Deps     []pathStat
	Recorded int64
}

type pathStat struct {
	_       struct{} `cbor:",toarray"`
	Path    string
	Missing bool
	Stat    engine.FileStat
}

type cachedPackage struct {
	_       struct{} `cbor:",toarray"`
	Path    string
	File    string
	Targets []cachedTarget // declaration order
	Loads   []string
	Globbed []string
}

type cachedTarget struct {
	_     struct{} `cbor:",toarray"`
	Name  string
	Rule  string
	Attrs []cachedAttr
	Pos   engine.Pos
	Tags  []string
}

// cachedAttr holds one attribute value in the field of its type, because
// CBOR cannot carry the engine's interface-typed values as they are.
type cachedAttr struct {
	_    struct{} `cbor:",toarray"`
	Name string
	Kind uint8
	S    string
	SL   []string
	L    engine.Label
	LL   []engine.Label
	B    bool
	I    int64
	D    map[string]string
}

const (
	kString uint8 = iota
	kStrings
	kLabel
	kLabels
	kBool
	kInt
	kDict
)

// NewPackageCache opens the cache at path for ev. version identifies pipe's
// build: a new pipe discards every entry.
func NewPackageCache(ev *Evaluator, path, version string) *PackageCache {
	return &PackageCache{ev: ev, path: path, fingerprint: fingerprint(ev.registry, version), got: map[string]*pkgEntry{}}
}

// load opens the cache file, once. The fingerprint is the file's tag: a
// file written by another pipe, or for other rules, reads as empty.
func (pc *PackageCache) load() {
	pc.once.Do(func() {
		pc.kv = kvfile.Open(pc.path, "pipe-packages-3 "+pc.fingerprint)
	})
}

// entry returns pkg's entry, decoding it from the file the first time.
// An entry that does not decode is no entry: the package is evaluated.
func (pc *PackageCache) entry(pkg string) *pkgEntry {
	pc.load()
	pc.mu.Lock()
	e, ok := pc.got[pkg]
	pc.mu.Unlock()
	if ok {
		return e
	}
	if b, found := pc.kv.Get(pkg); found {
		var d pkgEntry
		if cbor.Unmarshal(b, &d) == nil {
			e = &d
		}
	}
	pc.mu.Lock()
	pc.got[pkg] = e
	pc.mu.Unlock()
	return e
}

// Stats reports how many entries this cache read from and wrote to its
// file.
func (pc *PackageCache) Stats() kvfile.Stats {
	pc.load()
	return pc.kv.Stats()
}

// PackageInputs lists the workspace paths the value of pkg, as last loaded,
// depends on (see PackageCache); false when pkg has no entry.
func (pc *PackageCache) PackageInputs(pkg string) ([]string, bool) {
	e := pc.entry(pkg)
	if e == nil {
		return nil, false
	}
	out := make([]string, len(e.Deps))
	for i, d := range e.Deps {
		out[i] = d.Path
	}
	return out, true
}

// fingerprint names pipe's version and every rule's schema, which decide
// how a BUILD file evaluates.
func fingerprint(reg *engine.Registry, version string) string {
	h := sha256.New()
	fmt.Fprintf(h, "pipe %s\n", version)
	for _, name := range reg.Names() {
		r, _ := reg.Lookup(name)
		fmt.Fprintf(h, "rule %s %s\n", r.Name, r.Version)
		for _, a := range r.Attrs {
			fmt.Fprintf(h, "  %s %d %t %v %q %v\n", a.Name, a.Type, a.Required, a.Default, a.Values, a.Aliases)
		}
	}
	for _, name := range reg.MacroNames() {
		m, _ := reg.LookupMacro(name)
		fmt.Fprintf(h, "macro %s %s\n", m.Name, m.Version)
		for _, a := range m.Attrs {
			fmt.Fprintf(h, "  %s %d %t %v %q %v\n", a.Name, a.Type, a.Required, a.Default, a.Values, a.Aliases)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// LoadPackage returns the cached package when nothing it depends on
// changed, and evaluates it otherwise.
func (pc *PackageCache) LoadPackage(ctx context.Context, pkg string) (*engine.Package, error) {
	e := pc.entry(pkg)
	if e != nil && pc.valid(e) {
		if p, ok := pc.decode(e.Pkg); ok {
			return p, nil
		}
	}
	start := time.Now().UnixNano()
	p, deps, err := pc.ev.loadPackage(ctx, pkg)
	if err != nil {
		if e != nil {
			pc.mu.Lock()
			pc.got[pkg] = nil
			pc.mu.Unlock()
			pc.kv.Delete(pkg)
		}
		return nil, err
	}
	entry := &pkgEntry{Pkg: encodePackage(p), Recorded: start}
	sort.Strings(deps)
	for _, d := range deps {
		entry.Deps = append(entry.Deps, pc.stat(d))
	}
	b, err := cbor.Marshal(entry)
	if err != nil {
		return nil, fmt.Errorf("package cache: encode %s: %w", pkg, err)
	}
	pc.mu.Lock()
	pc.got[pkg] = entry
	pc.mu.Unlock()
	pc.kv.Put(pkg, b)
	return p, nil
}

func (pc *PackageCache) stat(rel string) pathStat {
	ps := pathStat{Path: rel}
	fi, err := os.Stat(filepath.Join(pc.ev.root, filepath.FromSlash(rel)))
	if err != nil {
		ps.Missing = true
		return ps
	}
	ps.Stat = engine.StatOf(fi)
	return ps
}

func (pc *PackageCache) valid(e *pkgEntry) bool {
	for _, d := range e.Deps {
		if pc.stat(d.Path) != d {
			return false
		}
		if !d.Missing && !d.Stat.Settled(e.Recorded) {
			return false
		}
	}
	return true
}

// Save appends the entries evaluated since the cache was opened (see
// kvfile for when it rewrites the file instead). Every entry is checked
// against the stats of its inputs before use, so an entry another build
// saved at the same time can cost an evaluation, never a wrong package.
func (pc *PackageCache) Save() error {
	if pc.kv == nil {
		return nil
	}
	if err := pc.kv.Save(); err != nil {
		return fmt.Errorf("save package cache: %w", err)
	}
	return nil
}

func encodePackage(p *engine.Package) cachedPackage {
	cp := cachedPackage{Path: p.Path, File: p.File, Loads: p.Loads}
	for f := range p.Globbed {
		cp.Globbed = append(cp.Globbed, f)
	}
	sort.Strings(cp.Globbed)
	for _, name := range p.Order {
		t := p.Targets[name]
		ct := cachedTarget{Name: name, Rule: t.Rule.Name, Pos: t.Pos, Tags: t.Tags}
		keys := make([]string, 0, len(t.Attrs))
		for k := range t.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := cachedAttr{Name: k}
			switch v := t.Attrs[k].(type) {
			case string:
				a.Kind, a.S = kString, v
			case []string:
				a.Kind, a.SL = kStrings, v
			case engine.Label:
				a.Kind, a.L = kLabel, v
			case []engine.Label:
				a.Kind, a.LL = kLabels, v
			case bool:
				a.Kind, a.B = kBool, v
			case int64:
				a.Kind, a.I = kInt, v
			case map[string]string:
				a.Kind, a.D = kDict, v
			default:
				panic(fmt.Sprintf("package cache: attribute %s of %s has unexpected type %T", k, t.Label, v))
			}
			ct.Attrs = append(ct.Attrs, a)
		}
		cp.Targets = append(cp.Targets, ct)
	}
	return cp
}

func (pc *PackageCache) decode(cp cachedPackage) (*engine.Package, bool) {
	p := &engine.Package{Path: cp.Path, File: cp.File, Loads: cp.Loads, Targets: make(map[string]*engine.Target, len(cp.Targets))}
	if len(cp.Globbed) > 0 {
		p.Globbed = make(map[string]bool, len(cp.Globbed))
		for _, f := range cp.Globbed {
			p.Globbed[f] = true
		}
	}
	for _, ct := range cp.Targets {
		rule, ok := pc.ev.registry.Lookup(ct.Rule)
		if !ok {
			return nil, false
		}
		t := &engine.Target{Label: engine.Label{Pkg: cp.Path, Name: ct.Name}, Rule: rule, Pos: ct.Pos, Tags: ct.Tags, Attrs: make(map[string]any, len(ct.Attrs))}
		for _, a := range ct.Attrs {
			var v any
			switch a.Kind {
			case kString:
				v = a.S
			case kStrings:
				v = a.SL
			case kLabel:
				v = a.L
			case kLabels:
				v = a.LL
			case kBool:
				v = a.B
			case kInt:
				v = a.I
			case kDict:
				v = a.D
			}
			t.Attrs[a.Name] = v
		}
		p.Targets[ct.Name] = t
		p.Order = append(p.Order, ct.Name)
	}
	return p, true
}
