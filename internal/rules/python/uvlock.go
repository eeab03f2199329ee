package python

// The uv.lock reader. uv writes one lock per workspace (version = 1; the
// revision field tracks additive changes, all read here). The format is
// uv's, not a standard, so the reader is lenient about keys it does not
// need and strict about the ones a bundle depends on: names, versions,
// sources, wheels and their hashes.

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2"
)

// Lock is a parsed uv.lock.
type Lock struct {
	File           string // for error messages
	Version        int
	Revision       int
	RequiresPython string
	// ResolutionMarkers are the forks of the whole resolution, when uv
	// split it (for example by python_full_version).
	ResolutionMarkers []string
	Members           []string // [manifest] members
	Packages          []*LockPackage

	byName map[string][]*LockPackage // normalised name → packages
}

// LockPackage is one [[package]] entry: a distribution at one version.
type LockPackage struct {
	Name, Version string
	Source        Source
	// ResolutionMarkers says in which forks this version applies; set
	// when the package is locked at several versions.
	ResolutionMarkers []string
	Dependencies      []LockDep
	Optional          map[string][]LockDep // optional-dependencies (extras)
	Dev               map[string][]LockDep // dev-dependencies (groups), never bundled
	Wheels            []Wheel
	Sdist             *Sdist
	// RequiresDist is [package.metadata] requires-dist: the requirements
	// uv locked against, recorded for workspace members.
	RequiresDist []LockRequirement
	Line         int // of the [[package]] header, 0 if unknown
}

// Source is where a package comes from. Kind is one of registry, url,
// path, directory, editable, virtual, git; Value is its URL or path (paths
// are relative to the lock's directory).
type Source struct {
	Kind, Value string
	// Subdirectory is set for url and git sources that build from a
	// subdirectory of the archive or repository.
	Subdirectory string
}

func (s Source) String() string { return s.Kind + "+" + s.Value }

// member reports whether the source is a local project tree that pipe
// copies as source rather than installs from a wheel.
func (s Source) member() bool {
	switch s.Kind {
	case "editable", "directory", "virtual":
		return true
	}
	return false
}

// LockDep is an edge of the locked graph. Version and Source are set only
// when the name alone is ambiguous (the package is locked more than once).
type LockDep struct {
	Name, Version, Marker string
	Extras                []string
	Source                *Source
}

// LockRequirement is one entry of [package.metadata] requires-dist.
type LockRequirement struct {
	Name, Specifier, Marker string
	Extras                  []string
}

// Wheel is a locked built distribution.
type Wheel struct {
	URL      string
	Filename string // always set: from the lock, or the last segment of URL or Path
	SHA256   string // lower-case hex, from hash = "sha256:…"; "" if the lock has none
	Hash     string // the lock's hash as written ("sha256:…"), "" if none
	Size     int64
	// Path is set instead of URL for wheels in a local directory index
	// or a path source; relative to the lock's directory.
	Path string
}

// Sdist is a locked source distribution. pipe never builds one; it is
// kept to tell the user why a package cannot be bundled.
type Sdist struct {
	URL, SHA256 string
	Hash        string
	Size        int64
	Path        string
}

// lockWire mirrors the TOML as uv writes it.
type lockWire struct {
	Version           *int     `toml:"version"`
	Revision          int      `toml:"revision"`
	RequiresPython    string   `toml:"requires-python"`
	ResolutionMarkers []string `toml:"resolution-markers"`
	Manifest          struct {
		Members []string `toml:"members"`
	} `toml:"manifest"`
	Package []packageWire `toml:"package"`
}

type sourceWire struct {
	Registry     string `toml:"registry"`
	URL          string `toml:"url"`
	Path         string `toml:"path"`
	Directory    string `toml:"directory"`
	Editable     string `toml:"editable"`
	Virtual      string `toml:"virtual"`
	Git          string `toml:"git"`
	Subdirectory string `toml:"subdirectory"`
}

type depWire struct {
	Name    string      `toml:"name"`
	Version string      `toml:"version"`
	Source  *sourceWire `toml:"source"`
	Marker  string      `toml:"marker"`
	Extra   []string    `toml:"extra"`
}

type artifactWire struct {
	URL      string `toml:"url"`
	Path     string `toml:"path"`
	Filename string `toml:"filename"`
	Hash     string `toml:"hash"`
	Size     int64  `toml:"size"`
}

type packageWire struct {
	Name              string               `toml:"name"`
	Version           string               `toml:"version"`
	Source            *sourceWire          `toml:"source"`
	ResolutionMarkers []string             `toml:"resolution-markers"`
	Dependencies      []depWire            `toml:"dependencies"`
	Optional          map[string][]depWire `toml:"optional-dependencies"`
	Dev               map[string][]depWire `toml:"dev-dependencies"`
	Sdist             *artifactWire        `toml:"sdist"`
	Wheels            []artifactWire       `toml:"wheels"`
	Metadata          struct {
		RequiresDist []struct {
			Name      string   `toml:"name"`
			Specifier string   `toml:"specifier"`
			Marker    string   `toml:"marker"`
			Extras    []string `toml:"extras"`
		} `toml:"requires-dist"`
	} `toml:"metadata"`
}

// lockRegenerate is the advice for a lock that does not read: uv wrote it,
// so uv can write it again.
const lockRegenerate = "run `uv lock` to regenerate it"

// packageNameRE is PEP 508's distribution name.
var packageNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(?i:[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9])$`) })

var sha256HexRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{64}$`) })

// packageHeaderRE finds [[package]] headers so errors can name a line; the
// TOML decoder does not keep positions for decoded values.
var packageHeaderRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)^[ \t]*\[\[[ \t]*package[ \t]*\]\][ \t]*(?:#.*)?\r?$`)
})

// ParseLock parses the uv.lock in data; file names it in errors.
func ParseLock(data []byte, file string) (lock *Lock, err error) {
	// The decoder is third-party code fed user files; a panic in it must
	// not take the build down with it.
	defer func() {
		if r := recover(); r != nil {
			lock, err = nil, fmt.Errorf("%s: TOML decoder failed (%v); %s", file, r, lockRegenerate)
		}
	}()
	var w lockWire
	if err := toml.Unmarshal(data, &w); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: %s; %s", file, row, col, describeTOMLError(de), lockRegenerate)
		}
		return nil, fmt.Errorf("%s: not a uv.lock: %w; %s", file, err, lockRegenerate)
	}
	if w.Version == nil {
		return nil, fmt.Errorf("%s: no `version` key, so not a uv.lock; %s", file, lockRegenerate)
	}
	if *w.Version != 1 {
		return nil, fmt.Errorf("%s: lock format version %d; pipe reads version 1 (uv 0.3 and later); %s with a current uv", file, *w.Version, lockRegenerate)
	}
	l := &Lock{
		File:              file,
		Version:           *w.Version,
		Revision:          w.Revision,
		RequiresPython:    w.RequiresPython,
		ResolutionMarkers: w.ResolutionMarkers,
		Members:           w.Manifest.Members,
		byName:            map[string][]*LockPackage{},
	}
	if l.RequiresPython != "" {
		if _, err := parseSpecifierSet(l.RequiresPython); err != nil {
			return nil, fmt.Errorf("%s: requires-python: %w; %s", file, err, lockRegenerate)
		}
	}
	// The i-th header is the i-th package when uv wrote the file; if the
	// counts differ (hand-written inline tables), lines are left out.
	headers := packageHeaderRE().FindAllIndex(data, -1)
	lineOf := func(i int) int {
		if len(headers) != len(w.Package) {
			return 0
		}
		return 1 + bytes.Count(data[:headers[i][0]], []byte("\n"))
	}
	for i := range w.Package {
		line := lineOf(i)
		where := fmt.Sprintf("%s: package #%d", file, i+1)
		if line > 0 {
			where = fmt.Sprintf("%s:%d", file, line)
		}
		pkg, err := convertPackage(&w.Package[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w; %s", where, err, lockRegenerate)
		}
		pkg.Line = line
		l.Packages = append(l.Packages, pkg)
		n := NormalizeName(pkg.Name)
		l.byName[n] = append(l.byName[n], pkg)
	}
	return l, nil
}

// tomlTypeRE matches the decoder's type-mismatch message, which names Go
// types; users know the TOML key and what uv writes there.
var tomlTypeRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`cannot decode TOML (\w+) into struct field \S+ of type (\S+)`)
})

func describeTOMLError(de *toml.DecodeError) string {
	m := tomlTypeRE().FindStringSubmatch(de.Error())
	if m == nil {
		return "not valid TOML: " + strings.TrimPrefix(de.Error(), "toml: ")
	}
	want := "a table"
	switch {
	case m[2] == "string":
		want = "a string"
	case strings.HasPrefix(m[2], "int") || strings.HasPrefix(m[2], "*int"):
		want = "an integer"
	case strings.HasPrefix(m[2], "[]") || strings.HasPrefix(m[2], "map[string][]"):
		want = "an array"
	}
	key := strings.Join(de.Key(), ".")
	if key == "" {
		key = "a key"
	}
	return fmt.Sprintf("%s holds a TOML %s where uv writes %s", key, m[1], want)
}

func convertPackage(pw *packageWire) (*LockPackage, error) {
	if pw.Name == "" {
		return nil, fmt.Errorf("a package has no name")
	}
	if !packageNameRE().MatchString(pw.Name) {
		return nil, fmt.Errorf("package name %q is not a valid distribution name", pw.Name)
	}
	if pw.Source == nil {
		return nil, fmt.Errorf("package %s has no source", pw.Name)
	}
	src, err := convertSource(pw.Source)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", pw.Name, err)
	}
	// uv leaves out the version of a workspace member whose version is
	// dynamic; anything fetched must have one.
	if pw.Version == "" && !src.member() {
		return nil, fmt.Errorf("package %s (%s) has no version", pw.Name, src)
	}
	pkg := &LockPackage{
		Name:              pw.Name,
		Version:           pw.Version,
		Source:            src,
		ResolutionMarkers: pw.ResolutionMarkers,
	}
	if pkg.Dependencies, err = convertDeps(pw.Dependencies); err != nil {
		return nil, fmt.Errorf("package %s: dependencies: %w", pw.Name, err)
	}
	if pkg.Optional, err = convertDepGroups(pw.Optional); err != nil {
		return nil, fmt.Errorf("package %s: optional-dependencies: %w", pw.Name, err)
	}
	if pkg.Dev, err = convertDepGroups(pw.Dev); err != nil {
		return nil, fmt.Errorf("package %s: dev-dependencies: %w", pw.Name, err)
	}
	for _, aw := range pw.Wheels {
		wh, err := convertWheel(&aw, src)
		if err != nil {
			return nil, fmt.Errorf("package %s %s: wheel: %w", pw.Name, pw.Version, err)
		}
		pkg.Wheels = append(pkg.Wheels, wh)
	}
	if pw.Sdist != nil {
		sha, err := convertHash(pw.Sdist.Hash)
		if err != nil {
			return nil, fmt.Errorf("package %s %s: sdist: %w", pw.Name, pw.Version, err)
		}
		pkg.Sdist = &Sdist{URL: pw.Sdist.URL, SHA256: sha, Hash: pw.Sdist.Hash, Size: pw.Sdist.Size, Path: pw.Sdist.Path}
	}
	for _, r := range pw.Metadata.RequiresDist {
		if r.Name == "" {
			continue
		}
		pkg.RequiresDist = append(pkg.RequiresDist, LockRequirement{Name: r.Name, Specifier: r.Specifier, Marker: r.Marker, Extras: r.Extras})
	}
	return pkg, nil
}

func convertSource(sw *sourceWire) (Source, error) {
	var kinds []Source
	for _, k := range []Source{
		{Kind: "registry", Value: sw.Registry},
		{Kind: "url", Value: sw.URL},
		{Kind: "path", Value: sw.Path},
		{Kind: "directory", Value: sw.Directory},
		{Kind: "editable", Value: sw.Editable},
		{Kind: "virtual", Value: sw.Virtual},
		{Kind: "git", Value: sw.Git},
	} {
		if k.Value != "" {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		return Source{}, fmt.Errorf("source names none of registry, url, path, directory, editable, virtual, git")
	case 1:
	default:
		return Source{}, fmt.Errorf("source names both %s and %s", kinds[0].Kind, kinds[1].Kind)
	}
	s := kinds[0]
	s.Subdirectory = sw.Subdirectory
	return s, nil
}

func convertDeps(in []depWire) ([]LockDep, error) {
	var out []LockDep
	for _, d := range in {
		if d.Name == "" {
			return nil, fmt.Errorf("a dependency has no name")
		}
		dep := LockDep{Name: d.Name, Version: d.Version, Marker: d.Marker, Extras: d.Extra}
		if d.Source != nil {
			s, err := convertSource(d.Source)
			if err != nil {
				return nil, fmt.Errorf("dependency %s: %w", d.Name, err)
			}
			dep.Source = &s
		}
		out = append(out, dep)
	}
	return out, nil
}

func convertDepGroups(in map[string][]depWire) (map[string][]LockDep, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string][]LockDep, len(in))
	for group, deps := range in {
		d, err := convertDeps(deps)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", group, err)
		}
		out[group] = d
	}
	return out, nil
}

func convertWheel(aw *artifactWire, src Source) (Wheel, error) {
	sha, err := convertHash(aw.Hash)
	if err != nil {
		return Wheel{}, err
	}
	w := Wheel{URL: aw.URL, Path: aw.Path, Filename: aw.Filename, SHA256: sha, Hash: aw.Hash, Size: aw.Size}
	if w.Path == "" && w.URL == "" && src.Kind == "path" {
		// A path source that is a wheel lists it by file name only.
		w.Path = src.Value
	}
	if w.Filename == "" {
		loc := w.URL
		if loc == "" {
			loc = w.Path
		}
		if loc == "" {
			return Wheel{}, fmt.Errorf("a wheel has neither url, path nor filename")
		}
		if u, err := url.Parse(loc); err == nil && u.Scheme != "" {
			loc = u.Path
		}
		base := path.Base(strings.ReplaceAll(loc, "\\", "/"))
		// PyPI escapes '+' of local versions in URLs.
		if unescaped, err := url.PathUnescape(base); err == nil {
			base = unescaped
		}
		w.Filename = base
	}
	return w, nil
}

// convertHash returns the hex digest of a "sha256:…" hash; other
// algorithms are kept as written (Hash) with no SHA256.
func convertHash(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	algo, hexDigest, ok := strings.Cut(h, ":")
	if !ok || hexDigest == "" {
		return "", fmt.Errorf("hash %q: want algorithm:hex, as sha256:…", h)
	}
	if algo != "sha256" {
		return "", nil
	}
	hexDigest = strings.ToLower(hexDigest)
	if !sha256HexRE().MatchString(hexDigest) {
		return "", fmt.Errorf("hash %q: a sha256 digest is 64 hex digits", h)
	}
	return hexDigest, nil
}

// Lookup returns the packages locked under name (any spelling), one per
// locked version.
func (l *Lock) Lookup(name string) []*LockPackage {
	return l.index()[NormalizeName(name)]
}

// index is byName, built afresh for a Lock that did not come from
// ParseLock; never stored, so a shared Lock stays safe to read
// concurrently.
func (l *Lock) index() map[string][]*LockPackage {
	if l.byName != nil {
		return l.byName
	}
	m := map[string][]*LockPackage{}
	for _, p := range l.Packages {
		n := NormalizeName(p.Name)
		m[n] = append(m[n], p)
	}
	return m
}

// isMember reports whether pkg is a workspace member or another local
// project tree, which pipe copies as source instead of installing a wheel.
// uv gives every [manifest] member such a source, so the source decides.
func (l *Lock) isMember(pkg *LockPackage) bool {
	return pkg.Source.member()
}
