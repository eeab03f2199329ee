package python

// Wheel compatibility tags (PEP 425, PEP 600) for the Lambda Python runtimes.

import (
	"fmt"
	"strconv"
	"strings"
)

// Platform is the Lambda environment a bundle targets.
type Platform struct {
	// PythonVersion is "3.12", or a full "3.12.8" to evaluate
	// python_full_version markers against a specific patch release.
	PythonVersion string
	// Arch is Lambda's name for the architecture: "x86_64" or "arm64"
	// ("aarch64" is accepted as arm64).
	Arch string
	// Glibc is the newest manylinux glibc accepted, {2, 34} for
	// manylinux_2_34. Zero means DefaultGlibc(PythonVersion).
	Glibc [2]int
	// Host is this machine rather than Lambda (the locked host
	// environment): plain linux_ wheels, which pip installs locally, are
	// accepted after every manylinux one, and messages name the machine.
	Host bool
}

// DefaultGlibc is the glibc of the Lambda runtime for a Python version:
// python3.12 and later run on Amazon Linux 2023 (glibc 2.34), python3.9 to
// 3.11 on Amazon Linux 2 (glibc 2.26). Wheels built for a newer glibc load
// on neither, so they are refused rather than shipped to fail at import.
// A version that does not parse gets 2.34, the current runtimes'.
func DefaultGlibc(pythonVersion string) [2]int {
	major, minor, ok := splitPythonVersion(pythonVersion)
	if ok && major == 3 && minor < 12 {
		return [2]int{2, 26}
	}
	return [2]int{2, 34}
}

// splitPythonVersion reads "3.12" or "3.12.8".
func splitPythonVersion(s string) (major, minor int, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, false
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || p != strconv.Itoa(n) {
			return 0, 0, false
		}
		nums[i] = n
	}
	return nums[0], nums[1], true
}

// Validate reports a Platform pipe cannot build for.
func (p Platform) Validate() error {
	major, _, ok := splitPythonVersion(p.PythonVersion)
	if !ok || major != 3 {
		return fmt.Errorf("python version %q: want a CPython 3 version such as \"3.12\"", p.PythonVersion)
	}
	if p.machine() == "" {
		return fmt.Errorf("architecture %q: want \"x86_64\" or \"arm64\"", p.Arch)
	}
	if g := p.glibc(); g[0] != 2 || g[1] < 5 {
		return fmt.Errorf("glibc %d.%d: manylinux wheels need glibc 2.5 or newer", g[0], g[1])
	}
	return nil
}

// ArchitectureAliases are the other names of Lambda's architectures that
// users type (Go's and Docker's amd64, Linux's aarch64): the architecture
// attributes accept them as the Lambda name. Read-only.
var ArchitectureAliases = map[string]string{"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}

// machine is the architecture as platform_machine and wheel tags spell it.
func (p Platform) machine() string {
	switch p.Arch {
	case "x86_64":
		return "x86_64"
	case "arm64", "aarch64":
		return "aarch64"
	}
	return ""
}

func (p Platform) glibc() [2]int {
	if p.Glibc == [2]int{} {
		return DefaultGlibc(p.PythonVersion)
	}
	return p.Glibc
}

// minorPythonVersion is "3.12" for "3.12" and "3.12.8".
func (p Platform) minorPythonVersion() string {
	major, minor, ok := splitPythonVersion(p.PythonVersion)
	if !ok {
		return p.PythonVersion
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

func (p Platform) fullPythonVersion() string {
	if strings.Count(p.PythonVersion, ".") >= 2 {
		return p.PythonVersion
	}
	return p.minorPythonVersion() + ".0"
}

func (p Platform) String() string {
	g := p.glibc()
	if p.Host {
		return fmt.Sprintf("python%s on this machine (linux %s, glibc %d.%d)", p.minorPythonVersion(), p.Arch, g[0], g[1])
	}
	return fmt.Sprintf("python%s on manylinux %s (glibc %d.%d)", p.minorPythonVersion(), p.Arch, g[0], g[1])
}

// who names the Python the platform is, for messages.
func (p Platform) who() string {
	if p.Host {
		return "this machine's Python"
	}
	return "Lambda's Python"
}

// Tag is one PEP 425 compatibility tag.
type Tag struct{ Python, ABI, Platform string }

func (t Tag) String() string { return t.Python + "-" + t.ABI + "-" + t.Platform }

// minGlibc is the oldest manylinux each architecture was ever built for:
// manylinux1 for x86_64, manylinux2014 for aarch64.
var minGlibc = map[string]int{"x86_64": 5, "aarch64": 17}

// legacyManylinux maps a glibc minor to its pre-PEP 600 alias, which
// applies only where that policy covered the architecture.
var legacyManylinux = map[int]struct {
	name  string
	archs string
}{
	17: {"manylinux2014", "x86_64 aarch64"},
	12: {"manylinux2010", "x86_64"},
	5:  {"manylinux1", "x86_64"},
}

// platformTags are the manylinux platforms p accepts, newest glibc first,
// each legacy alias right after the tag it equals. musllinux and plain
// linux_* are never accepted: Lambda's Python is glibc-based, and linux_*
// wheels promise nothing about the system they need.
func (p Platform) platformTags() []string {
	m := p.machine()
	g := p.glibc()
	if m == "" || g[0] != 2 {
		return nil
	}
	var out []string
	for minor := g[1]; minor >= minGlibc[m]; minor-- {
		out = append(out, fmt.Sprintf("manylinux_2_%d_%s", minor, m))
		if l, ok := legacyManylinux[minor]; ok && strings.Contains(l.archs, m) {
			out = append(out, l.name+"_"+m)
		}
	}
	if p.Host {
		out = append(out, "linux_"+m)
	}
	return out
}

// Tags lists the tags p supports, most preferred first, in the order pip
// (packaging.tags.sys_tags) uses for CPython: the exact ABI on every
// platform, then abi3, then no ABI, then older abi3 builds, then pure
// Python for a platform, then cp3X-none-any, then pyXY/py3-none-any.
func (p Platform) Tags() []Tag {
	major, minor, ok := splitPythonVersion(p.PythonVersion)
	plats := p.platformTags()
	if !ok || plats == nil {
		return nil
	}
	cp := fmt.Sprintf("cp%d%d", major, minor)
	abi3 := major == 3 && minor >= 2
	var tags []Tag
	for _, pl := range plats {
		tags = append(tags, Tag{cp, cp, pl})
	}
	if abi3 {
		for _, pl := range plats {
			tags = append(tags, Tag{cp, "abi3", pl})
		}
	}
	for _, pl := range plats {
		tags = append(tags, Tag{cp, "none", pl})
	}
	if abi3 {
		for m := minor - 1; m >= 2; m-- {
			for _, pl := range plats {
				tags = append(tags, Tag{fmt.Sprintf("cp%d%d", major, m), "abi3", pl})
			}
		}
	}
	// py312, py3, py311, py310, …, py30: the generic interpreter versions.
	pys := []string{fmt.Sprintf("py%d%d", major, minor), fmt.Sprintf("py%d", major)}
	for m := minor - 1; m >= 0; m-- {
		pys = append(pys, fmt.Sprintf("py%d%d", major, m))
	}
	for _, py := range pys {
		for _, pl := range plats {
			tags = append(tags, Tag{py, "none", pl})
		}
	}
	tags = append(tags, Tag{cp, "none", "any"})
	for _, py := range pys {
		tags = append(tags, Tag{py, "none", "any"})
	}
	return tags
}

// tagSet is what wheel selection needs to know about a platform, computed
// once per resolution: the rank of every supported tag, and the platforms
// and interpreter/ABI pairs that appear in them, for explaining misses.
type tagSet struct {
	p      Platform
	rank   map[Tag]int
	plats  map[string]bool
	interp map[[2]string]bool
}

func (p Platform) tagSet() *tagSet {
	tags := p.Tags()
	ts := &tagSet{p: p, rank: make(map[Tag]int, len(tags)), plats: map[string]bool{}, interp: map[[2]string]bool{}}
	for i, t := range tags {
		if _, dup := ts.rank[t]; !dup {
			ts.rank[t] = i
		}
		ts.plats[t.Platform] = true
		ts.interp[[2]string{t.Python, t.ABI}] = true
	}
	return ts
}

// ParseWheelFilename splits a wheel file name
// ({dist}-{version}(-{build})?-{python}-{abi}-{platform}.whl) and expands
// compressed tag sets: py2.py3-none-any is two tags.
func ParseWheelFilename(name string) (dist, version string, tags []Tag, err error) {
	w, err := parseWheelName(name)
	if err != nil {
		return "", "", nil, err
	}
	return w.dist, w.version, w.tags, nil
}

type wheelName struct {
	dist, version, build string
	tags                 []Tag
}

// maxWheelTags bounds the expansion of compressed tag sets; real wheels
// carry a handful, and a crafted name could otherwise ask for billions.
const maxWheelTags = 4096

func parseWheelName(name string) (*wheelName, error) {
	base, ok := strings.CutSuffix(name, ".whl")
	if !ok {
		return nil, fmt.Errorf("wheel file name %q does not end in .whl", name)
	}
	parts := strings.Split(base, "-")
	if len(parts) != 5 && len(parts) != 6 {
		return nil, fmt.Errorf("wheel file name %q: want name-version[-build]-python-abi-platform.whl", name)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("wheel file name %q has an empty component", name)
		}
	}
	w := &wheelName{dist: parts[0], version: parts[1]}
	if len(parts) == 6 {
		w.build = parts[2]
		if w.build[0] < '0' || w.build[0] > '9' {
			return nil, fmt.Errorf("wheel file name %q: build tag %q must start with a digit", name, w.build)
		}
	}
	n := len(parts)
	pys, abis, plats := strings.Split(parts[n-3], "."), strings.Split(parts[n-2], "."), strings.Split(parts[n-1], ".")
	if len(pys)*len(abis)*len(plats) > maxWheelTags {
		return nil, fmt.Errorf("wheel file name %q expands to too many tags", name)
	}
	for _, py := range pys {
		for _, abi := range abis {
			for _, pl := range plats {
				if py == "" || abi == "" || pl == "" {
					return nil, fmt.Errorf("wheel file name %q has an empty tag", name)
				}
				w.tags = append(w.tags, Tag{py, abi, pl})
			}
		}
	}
	return w, nil
}

// compareBuildTags orders build tags as pip does: by leading number, then
// the rest as text; no build tag sorts first.
func compareBuildTags(a, b string) int {
	split := func(s string) (int, string) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, _ := strconv.Atoi(s[:i])
		return n, s[i:]
	}
	an, as := split(a)
	bn, bs := split(b)
	if an != bn {
		if an < bn {
			return -1
		}
		return 1
	}
	return strings.Compare(as, bs)
}

// NoWheelError says that no locked wheel of a package runs on the target.
type NoWheelError struct {
	Package, Version string
	Platform         Platform
	// Wheels are the locked wheels with why each does not fit.
	Wheels []RejectedWheel
	// Sdist is the source archive's URL (or path) when one is locked.
	Sdist string
}

// RejectedWheel is a wheel SelectWheel could not use, and why.
type RejectedWheel struct{ Filename, Reason string }

// maxListedWheels keeps the message readable for packages that publish a
// hundred wheels; the first ones are enough to see the pattern.
const maxListedWheels = 30

func (e *NoWheelError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Package, e.Version)
	switch {
	case len(e.Wheels) == 0 && e.Sdist != "":
		fmt.Fprintf(&b, "only a source distribution is locked (%s), and pipe does not build sdists; "+
			"build one with `pip wheel %s==%s` for %s and serve it from your python_index mirror, or choose a version that publishes wheels",
			e.Sdist, e.Package, e.Version, e.Platform)
		return b.String()
	case len(e.Wheels) == 0:
		fmt.Fprintf(&b, "the lock lists no wheel and no sdist for it; run `uv lock` again")
		return b.String()
	}
	fmt.Fprintf(&b, "no wheel for %s; the lock has", e.Platform)
	for i, w := range e.Wheels {
		if i == maxListedWheels {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Wheels)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s (%s)", w.Filename, w.Reason)
	}
	if e.Sdist != "" {
		fmt.Fprintf(&b, "\nand an sdist, which pipe does not build")
	}
	fmt.Fprintf(&b, "\nchoose a version with a wheel for %s, or publish one to your index", e.Platform)
	return b.String()
}

// SelectWheel picks the wheel of pkg version that p prefers most, by the
// rank of its best tag in p.Tags(); ties go to the higher build tag, then
// the file name so the choice is stable. The result is a copy.
func SelectWheel(pkg, version string, wheels []Wheel, p Platform) (*Wheel, error) {
	return selectWheel(pkg, version, wheels, nil, p.tagSet())
}

func selectWheel(pkg, version string, wheels []Wheel, sdist *Sdist, ts *tagSet) (*Wheel, error) {
	p := ts.p
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", pkg, version, err)
	}
	best, bestRank, bestBuild := -1, 0, ""
	var rejected []RejectedWheel
	for i := range wheels {
		w, err := parseWheelName(wheels[i].Filename)
		if err != nil {
			rejected = append(rejected, RejectedWheel{wheels[i].Filename, "not a valid wheel file name"})
			continue
		}
		rank := -1
		for _, t := range w.tags {
			if r, ok := ts.rank[t]; ok && (rank < 0 || r < rank) {
				rank = r
			}
		}
		if rank < 0 {
			rejected = append(rejected, RejectedWheel{wheels[i].Filename, ts.wheelMismatch(w.tags)})
			continue
		}
		if best < 0 || rank < bestRank ||
			rank == bestRank && (compareBuildTags(w.build, bestBuild) > 0 ||
				compareBuildTags(w.build, bestBuild) == 0 && wheels[i].Filename < wheels[best].Filename) {
			best, bestRank, bestBuild = i, rank, w.build
		}
	}
	if best < 0 {
		e := &NoWheelError{Package: pkg, Version: version, Platform: p, Wheels: rejected}
		if sdist != nil {
			e.Sdist = sdist.URL
			if e.Sdist == "" {
				e.Sdist = sdist.Path
			}
			if e.Sdist == "" {
				e.Sdist = "sdist"
			}
		}
		return nil, e
	}
	w := wheels[best]
	return &w, nil
}

// wheelMismatch explains in a few words why no tag of a wheel fits: the
// platform, the interpreter, or both.
func (ts *tagSet) wheelMismatch(tags []Tag) string {
	p := ts.p
	platOK, interpOK := false, false
	for _, t := range tags {
		platOK = platOK || ts.plats[t.Platform]
		interpOK = interpOK || ts.interp[[2]string{t.Python, t.ABI}]
	}
	var reasons []string
	if !platOK {
		// Prefer the explanation for a tag of our own architecture:
		// "needs glibc 2.39" says more than "for ppc64le".
		reason := ""
		for _, t := range tags {
			r, ours := p.platformMismatch(t.Platform)
			if ours {
				reason = r
				break
			}
			if reason == "" {
				reason = r
			}
		}
		reasons = append(reasons, reason)
	}
	if !interpOK {
		reasons = append(reasons, p.interpreterMismatch(tags[0]))
	}
	if len(reasons) == 0 {
		return fmt.Sprintf("no tag of it fits python%s", p.minorPythonVersion())
	}
	return strings.Join(reasons, "; ")
}

func (p Platform) interpreterMismatch(t Tag) string {
	major, minor, _ := splitPythonVersion(p.PythonVersion)
	switch {
	case strings.HasPrefix(t.Python, "pp"):
		return "for PyPy"
	case strings.HasSuffix(t.ABI, "t") && strings.HasPrefix(t.ABI, "cp"):
		return "for free-threaded CPython"
	case strings.HasPrefix(t.Python, "cp") && t.ABI != "abi3" && t.ABI != "none" && t.Python != fmt.Sprintf("cp%d%d", major, minor):
		return "for CPython " + pyTagVersion(t.Python)
	case t.ABI == "abi3" && strings.HasPrefix(t.Python, "cp"):
		return "abi3 from CPython " + pyTagVersion(t.Python) + ", newer than " + p.minorPythonVersion()
	}
	return fmt.Sprintf("tag %s does not fit python%s", t, p.minorPythonVersion())
}

// pyTagVersion turns "cp313" into "3.13".
func pyTagVersion(tag string) string {
	digits := strings.TrimLeft(tag, "abcdefghijklmnopqrstuvwxyz")
	if len(digits) >= 2 {
		return digits[:1] + "." + digits[1:]
	}
	return digits
}

// platformMismatch explains why platform tag pl is not accepted, and
// whether it is at least for p's architecture.
func (p Platform) platformMismatch(pl string) (reason string, ours bool) {
	m := p.machine()
	g := p.glibc()
	switch {
	case strings.HasPrefix(pl, "musllinux"):
		return "musllinux: " + p.who() + " uses glibc", false
	case strings.HasPrefix(pl, "macosx"):
		return "for macOS", false
	case strings.HasPrefix(pl, "win"):
		return "for Windows", false
	case strings.HasPrefix(pl, "linux_"):
		return "plain linux_ wheels are not portable; Lambda needs manylinux", strings.TrimPrefix(pl, "linux_") == m
	case strings.HasPrefix(pl, "manylinux"):
		glibcMinor, arch := parseManylinux(pl)
		if arch != m {
			return "for " + arch, false
		}
		if glibcMinor > g[1] {
			if p.Host {
				return fmt.Sprintf("needs glibc 2.%d; this machine has %d.%d", glibcMinor, g[0], g[1]), true
			}
			return fmt.Sprintf("needs glibc 2.%d; Lambda python%s has %d.%d", glibcMinor, p.minorPythonVersion(), g[0], g[1]), true
		}
		return "platform " + pl, true
	}
	return "platform " + pl, false
}

// parseManylinux reads manylinux_2_28_x86_64 and the legacy
// manylinux2014_aarch64 spellings into a glibc minor and an architecture.
func parseManylinux(pl string) (glibcMinor int, arch string) {
	for minor, l := range legacyManylinux {
		if a, ok := strings.CutPrefix(pl, l.name+"_"); ok {
			return minor, a
		}
	}
	rest, ok := strings.CutPrefix(pl, "manylinux_")
	if !ok {
		return 0, pl
	}
	parts := strings.SplitN(rest, "_", 3)
	if len(parts) != 3 {
		return 0, rest
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil || parts[0] != "2" {
		return 0, parts[2]
	}
	return minor, parts[2]
}
