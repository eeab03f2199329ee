package python

// PEP 508 environment markers and the PEP 440 version arithmetic they need.
//
// Markers decide which locked dependencies a Lambda bundle gets, so they are
// evaluated for the target platform (Platform.MarkerEnv), never for the host
// that runs pipe.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// MarkerEnv maps PEP 508 marker variables to their values. A variable the
// map lacks evaluates as "", which is what pip does for `extra` outside an
// extra and is harmless for the rarely used platform_release/version.
type MarkerEnv map[string]string

// MarkerEnv is the environment of the Lambda runtime p targets.
//
// python_full_version is PythonVersion when it names a patch release
// ("3.12.8"); for "3.12" it is "3.12.0". Lambda updates the patch release
// under a function without notice, so no later patch is more true than .0,
// and .0 is where uv puts the fork boundaries it writes
// (python_full_version >= '3.12'). Set PythonVersion to a full version to
// evaluate patch-level markers against a specific release.
func (p Platform) MarkerEnv() MarkerEnv {
	full := p.fullPythonVersion()
	return MarkerEnv{
		"os_name":                        "posix",
		"sys_platform":                   "linux",
		"platform_system":                "Linux",
		"platform_machine":               p.machine(),
		"platform_python_implementation": "CPython",
		"implementation_name":            "cpython",
		"implementation_version":         full,
		"python_version":                 p.minorPythonVersion(),
		"python_full_version":            full,
		// Lambda does not promise a kernel release or build string.
		"platform_release": "",
		"platform_version": "",
	}
}

// EvalMarker evaluates a PEP 508 marker expression in env. An empty marker
// is true. `extra` is compared after PEP 685 normalisation.
func EvalMarker(marker string, env MarkerEnv) (bool, error) {
	m, err := parseMarker(marker)
	if err != nil {
		return false, err
	}
	var extras map[string]bool
	if e := env["extra"]; e != "" {
		extras = map[string]bool{NormalizeName(e): true}
	}
	return m.eval(env, extras)
}

// markerVars are the PEP 508 variables, with the legacy dotted spellings
// (PEP 345) that old sdists still carry mapped to their modern names.
var markerVars = map[string]string{
	"os_name":                        "os_name",
	"os.name":                        "os_name",
	"sys_platform":                   "sys_platform",
	"sys.platform":                   "sys_platform",
	"platform_machine":               "platform_machine",
	"platform.machine":               "platform_machine",
	"platform_python_implementation": "platform_python_implementation",
	"platform.python_implementation": "platform_python_implementation",
	"python_implementation":          "platform_python_implementation",
	"platform_release":               "platform_release",
	"platform.release":               "platform_release",
	"platform_system":                "platform_system",
	"platform_version":               "platform_version",
	"platform.version":               "platform_version",
	"python_version":                 "python_version",
	"python_full_version":            "python_full_version",
	"implementation_name":            "implementation_name",
	"implementation_version":         "implementation_version",
	"extra":                          "extra",
}

// markerNode is a parsed marker. extras is the set of active extras
// (normalised); a set rather than one value because uv encodes conflicting
// extras as extra names, several of which can be active at once.
type markerNode interface {
	eval(env MarkerEnv, extras map[string]bool) (bool, error)
}

type markerTrue struct{}

func (markerTrue) eval(MarkerEnv, map[string]bool) (bool, error) { return true, nil }

type markerBool struct {
	and  bool
	l, r markerNode
}

func (b *markerBool) eval(env MarkerEnv, extras map[string]bool) (bool, error) {
	// Both sides are evaluated so an invalid comparison is reported
	// whichever side it is on, as pip does.
	l, err := b.l.eval(env, extras)
	if err != nil {
		return false, err
	}
	r, err := b.r.eval(env, extras)
	if err != nil {
		return false, err
	}
	if b.and {
		return l && r, nil
	}
	return l || r, nil
}

// markerOperand is a literal string or a variable.
type markerOperand struct {
	variable string // canonical name, "" for a literal
	value    string
}

type markerCmp struct {
	l, r markerOperand
	op   string
}

func (c *markerCmp) eval(env MarkerEnv, extras map[string]bool) (bool, error) {
	if c.l.variable == "extra" || c.r.variable == "extra" {
		return c.evalExtra(extras)
	}
	lhs, rhs := c.l.value, c.r.value
	if c.l.variable != "" {
		lhs = env[c.l.variable]
	}
	if c.r.variable != "" {
		rhs = env[c.r.variable]
	}
	return markerCompare(lhs, c.op, rhs)
}

// evalExtra treats `extra == 'x'` as membership in the active set, which
// is the ordinary meaning when one extra is active and uv's meaning for its
// encoded conflict extras.
func (c *markerCmp) evalExtra(extras map[string]bool) (bool, error) {
	lit := c.r
	if c.r.variable == "extra" {
		lit = c.l
	}
	name := NormalizeName(lit.value)
	switch c.op {
	case "==", "===":
		return extras[name], nil
	case "!=":
		return !extras[name], nil
	case "in", "not in":
		// `'a' in extra` asks whether the active extra contains a
		// substring; with a set, any member containing it.
		found := false
		for e := range extras {
			if c.r.variable == "extra" && strings.Contains(e, name) || c.l.variable == "extra" && strings.Contains(name, e) {
				found = true
			}
		}
		return found == (c.op == "in"), nil
	}
	return false, fmt.Errorf("extra compared with %s; only ==, != and in are defined", c.op)
}

// markerCompare applies op the way packaging does: as a PEP 440 version
// specifier when `op rhs` is one (python_version >= '3.12'), otherwise as a
// Python string comparison (sys_platform == 'linux').
func markerCompare(lhs, op, rhs string) (bool, error) {
	if op != "in" && op != "not in" {
		if spec, err := parseSpecifier(op + rhs); err == nil {
			return spec.contains(lhs), nil
		}
	}
	switch op {
	case "in":
		return strings.Contains(rhs, lhs), nil
	case "not in":
		return !strings.Contains(rhs, lhs), nil
	case "==":
		return lhs == rhs, nil
	case "!=":
		return lhs != rhs, nil
	case "<":
		return lhs < rhs, nil
	case "<=":
		return lhs <= rhs, nil
	case ">":
		return lhs > rhs, nil
	case ">=":
		return lhs >= rhs, nil
	}
	return false, fmt.Errorf("%q %s %q: %s needs a version on the right (PEP 440)", lhs, op, rhs, op)
}

// maxMarkerDepth bounds parenthesis nesting: real markers nest a few
// levels, and the bound keeps hostile input from exhausting the stack.
const maxMarkerDepth = 64

// parseMarker parses a PEP 508 marker expression; "" is always true.
func parseMarker(s string) (markerNode, error) {
	if strings.TrimSpace(s) == "" {
		return markerTrue{}, nil
	}
	p := &markerParser{src: s}
	if err := p.lex(); err != nil {
		return nil, fmt.Errorf("marker %q: %w", s, err)
	}
	n, err := p.or(0)
	if err == nil && p.pos < len(p.toks) {
		err = fmt.Errorf("unexpected %s at column %d", p.toks[p.pos].text, p.toks[p.pos].col)
	}
	if err != nil {
		return nil, fmt.Errorf("marker %q: %w", s, err)
	}
	return n, nil
}

type markerTokKind int

const (
	mtIdent markerTokKind = iota
	mtString
	mtOp
	mtLParen
	mtRParen
)

type markerTok struct {
	kind markerTokKind
	text string
	col  int // 1-based, for error messages
}

type markerParser struct {
	src  string
	toks []markerTok
	pos  int
}

func (p *markerParser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		col := i + 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			p.toks = append(p.toks, markerTok{mtLParen, "(", col})
			i++
		case c == ')':
			p.toks = append(p.toks, markerTok{mtRParen, ")", col})
			i++
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return fmt.Errorf("unterminated string at column %d", col)
			}
			p.toks = append(p.toks, markerTok{mtString, s[i+1 : i+1+end], col})
			i += end + 2
		case strings.ContainsRune("<>=!~", rune(c)):
			j := i
			for j < len(s) && strings.ContainsRune("<>=!~", rune(s[j])) {
				j++
			}
			op := s[i:j]
			switch op {
			case "<", "<=", ">", ">=", "==", "!=", "~=", "===":
			default:
				return fmt.Errorf("unknown operator %q at column %d", op, col)
			}
			p.toks = append(p.toks, markerTok{mtOp, op, col})
			i = j
		case isMarkerIdentByte(c):
			j := i
			for j < len(s) && isMarkerIdentByte(s[j]) {
				j++
			}
			p.toks = append(p.toks, markerTok{mtIdent, s[i:j], col})
			i = j
		default:
			return fmt.Errorf("unexpected %q at column %d", c, col)
		}
	}
	return nil
}

func isMarkerIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

func (p *markerParser) peekIdent(word string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == mtIdent && p.toks[p.pos].text == word
}

func (p *markerParser) or(depth int) (markerNode, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.peekIdent("or") {
		p.pos++
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = &markerBool{and: false, l: l, r: r}
	}
	return l, nil
}

func (p *markerParser) and(depth int) (markerNode, error) {
	l, err := p.atom(depth)
	if err != nil {
		return nil, err
	}
	for p.peekIdent("and") {
		p.pos++
		r, err := p.atom(depth)
		if err != nil {
			return nil, err
		}
		l = &markerBool{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *markerParser) atom(depth int) (markerNode, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("unexpected end, expected a comparison")
	}
	if p.toks[p.pos].kind == mtLParen {
		if depth >= maxMarkerDepth {
			return nil, fmt.Errorf("parentheses nested deeper than %d", maxMarkerDepth)
		}
		p.pos++
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.toks) || p.toks[p.pos].kind != mtRParen {
			return nil, fmt.Errorf("missing ) for ( ")
		}
		p.pos++
		return n, nil
	}
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	op, err := p.operator()
	if err != nil {
		return nil, err
	}
	r, err := p.operand()
	if err != nil {
		return nil, err
	}
	if l.variable == "" && r.variable == "" {
		return nil, fmt.Errorf("%q %s %q compares two strings; one side must be a marker variable", l.value, op, r.value)
	}
	// Comparisons that cannot succeed in any environment are refused
	// here, so a bad marker fails when its file is read, not on the one
	// platform that happens to evaluate it.
	if l.variable == "extra" || r.variable == "extra" {
		if l.variable != "" && r.variable != "" {
			return nil, fmt.Errorf("extra compared with another variable")
		}
		switch op {
		case "==", "!=", "===", "in", "not in":
		default:
			return nil, fmt.Errorf("extra compared with %s; only ==, != and in are defined", op)
		}
	}
	if op == "~=" && r.variable == "" {
		if _, err := parseSpecifier(op + r.value); err != nil {
			return nil, fmt.Errorf("~= %q needs a version on the right (PEP 440): %w", r.value, err)
		}
	}
	return &markerCmp{l: l, op: op, r: r}, nil
}

func (p *markerParser) operand() (markerOperand, error) {
	if p.pos >= len(p.toks) {
		return markerOperand{}, fmt.Errorf("unexpected end, expected a variable or a quoted string")
	}
	t := p.toks[p.pos]
	p.pos++
	switch t.kind {
	case mtString:
		return markerOperand{value: t.text}, nil
	case mtIdent:
		if v, ok := markerVars[t.text]; ok {
			return markerOperand{variable: v}, nil
		}
		return markerOperand{}, fmt.Errorf("unknown marker variable %q at column %d", t.text, t.col)
	}
	return markerOperand{}, fmt.Errorf("unexpected %s at column %d, expected a variable or a quoted string", t.text, t.col)
}

func (p *markerParser) operator() (string, error) {
	if p.pos >= len(p.toks) {
		return "", fmt.Errorf("unexpected end, expected a comparison operator")
	}
	t := p.toks[p.pos]
	p.pos++
	switch {
	case t.kind == mtOp:
		return t.text, nil
	case t.kind == mtIdent && t.text == "in":
		return "in", nil
	case t.kind == mtIdent && t.text == "not" && p.peekIdent("in"):
		p.pos++
		return "not in", nil
	}
	return "", fmt.Errorf("unexpected %s at column %d, expected a comparison operator", t.text, t.col)
}

// pepVersion is a parsed PEP 440 version.
type pepVersion struct {
	epoch   uint64
	release []uint64
	preL    int // 0 none, 1 a, 2 b, 3 rc
	preN    uint64
	post    uint64
	hasPost bool
	dev     uint64
	hasDev  bool
	local   []string
}

// pepVersionRE is PEP 440's permissive form (packaging's VERSION_PATTERN):
// case-insensitive, optional separators, implicit numbers, alternative
// spellings.
var pepVersionRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*v?(?:([0-9]+)!)?([0-9]+(?:\.[0-9]+)*)` +
		`(?:[-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?([0-9]+)?)?` +
		`(?:-([0-9]+)|[-_.]?(post|rev|r)[-_.]?([0-9]+)?)?` +
		`(?:[-_.]?(dev)[-_.]?([0-9]+)?)?` +
		`(?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?\s*$`)
})

// parsePEPVersion parses s; numbers too large for uint64 make it invalid
// rather than silently wrong.
func parsePEPVersion(s string) (*pepVersion, error) {
	m := pepVersionRE().FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return nil, fmt.Errorf("%q is not a PEP 440 version", s)
	}
	num := func(t string) (uint64, error) {
		if t == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a PEP 440 version: %w", s, err)
		}
		return n, nil
	}
	var v pepVersion
	var err error
	if v.epoch, err = num(m[1]); err != nil {
		return nil, err
	}
	for _, part := range strings.Split(m[2], ".") {
		n, err := num(part)
		if err != nil {
			return nil, err
		}
		v.release = append(v.release, n)
	}
	if m[3] != "" {
		switch m[3] {
		case "alpha", "a":
			v.preL = 1
		case "beta", "b":
			v.preL = 2
		default:
			v.preL = 3
		}
		if v.preN, err = num(m[4]); err != nil {
			return nil, err
		}
	}
	if m[5] != "" || m[6] != "" {
		v.hasPost = true
		if v.post, err = num(m[5] + m[7]); err != nil {
			return nil, err
		}
	}
	if m[8] != "" {
		v.hasDev = true
		if v.dev, err = num(m[9]); err != nil {
			return nil, err
		}
	}
	if m[10] != "" {
		v.local = strings.FieldsFunc(m[10], func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	}
	return &v, nil
}

func (v *pepVersion) isPrerelease() bool { return v.preL != 0 || v.hasDev }

// public is v without its local label.
func (v *pepVersion) public() *pepVersion {
	c := *v
	c.local = nil
	return &c
}

// base is the epoch and release only.
func (v *pepVersion) base() *pepVersion {
	return &pepVersion{epoch: v.epoch, release: v.release}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareVersions orders versions as PEP 440 does: 1.0.dev0 < 1.0a1 <
// 1.0 < 1.0.post1, trailing zeros ignored, local labels after the public
// version.
func compareVersions(a, b *pepVersion) int {
	if c := cmpUint(a.epoch, b.epoch); c != 0 {
		return c
	}
	for i := 0; i < len(a.release) || i < len(b.release); i++ {
		var x, y uint64
		if i < len(a.release) {
			x = a.release[i]
		}
		if i < len(b.release) {
			y = b.release[i]
		}
		if c := cmpUint(x, y); c != 0 {
			return c
		}
	}
	// Pre-release rank: a dev release of a final version sorts before
	// its pre-releases; a final version after them.
	preRank := func(v *pepVersion) int {
		switch {
		case v.preL != 0:
			return v.preL
		case v.hasDev && !v.hasPost:
			return 0
		}
		return 4
	}
	if c := preRank(a) - preRank(b); c != 0 {
		return c
	}
	if a.preL != 0 {
		if c := cmpUint(a.preN, b.preN); c != 0 {
			return c
		}
	}
	if a.hasPost != b.hasPost {
		if a.hasPost {
			return 1
		}
		return -1
	}
	if c := cmpUint(a.post, b.post); c != 0 {
		return c
	}
	if a.hasDev != b.hasDev {
		if a.hasDev {
			return -1
		}
		return 1
	}
	if c := cmpUint(a.dev, b.dev); c != 0 {
		return c
	}
	return compareLocal(a.local, b.local)
}

// compareLocal orders local labels: absent first, then segment by segment
// with numbers above words.
func compareLocal(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		an, aerr := strconv.ParseUint(a[i], 10, 64)
		bn, berr := strconv.ParseUint(b[i], 10, 64)
		switch {
		case aerr == nil && berr == nil:
			if c := cmpUint(an, bn); c != 0 {
				return c
			}
		case aerr == nil:
			return 1
		case berr == nil:
			return -1
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return len(a) - len(b)
}

// pepSpecifier is one clause of a PEP 440 specifier set, e.g. ">=3.12".
type pepSpecifier struct {
	op       string
	raw      string // the version text, for ===
	v        *pepVersion
	wildcard bool // ==1.2.* / !=1.2.*
}

func parseSpecifier(s string) (*pepSpecifier, error) {
	s = strings.TrimSpace(s)
	var op string
	for _, o := range []string{"===", "~=", "==", "!=", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(s, o) {
			op = o
			break
		}
	}
	if op == "" {
		return nil, fmt.Errorf("%q has no comparison operator", s)
	}
	raw := strings.TrimSpace(s[len(op):])
	sp := &pepSpecifier{op: op, raw: raw}
	if op == "===" {
		if raw == "" {
			return nil, fmt.Errorf("%q: === needs a value", s)
		}
		return sp, nil
	}
	if (op == "==" || op == "!=") && strings.HasSuffix(raw, ".*") {
		sp.wildcard = true
		raw = strings.TrimSuffix(raw, ".*")
	}
	v, err := parsePEPVersion(raw)
	if err != nil {
		return nil, err
	}
	if sp.wildcard && (v.local != nil || v.hasDev) {
		return nil, fmt.Errorf("%q: a prefix match cannot have a local or dev part", s)
	}
	if v.local != nil && op != "==" && op != "!=" {
		return nil, fmt.Errorf("%q: only == and != accept a local version", s)
	}
	if op == "~=" && len(v.release) < 2 {
		return nil, fmt.Errorf("%q: ~= needs at least two release numbers", s)
	}
	sp.v = v
	return sp, nil
}

// contains reports whether version text s satisfies the specifier,
// pre-releases allowed (markers and the lock have already chosen). Text that
// is not a version satisfies nothing but ===.
func (sp *pepSpecifier) contains(s string) bool {
	if sp.op == "===" {
		return strings.EqualFold(strings.TrimSpace(s), sp.raw)
	}
	v, err := parsePEPVersion(s)
	if err != nil {
		return false
	}
	return sp.containsVersion(v)
}

func (sp *pepSpecifier) containsVersion(v *pepVersion) bool {
	spec := sp.v
	switch sp.op {
	case "==", "!=":
		var eq bool
		switch {
		case sp.wildcard:
			eq = v.epoch == spec.epoch && releasePrefix(v.public(), spec)
		case spec.local == nil:
			eq = compareVersions(v.public(), spec) == 0
		default:
			eq = compareVersions(v, spec) == 0
		}
		return eq == (sp.op == "==")
	case "~=":
		prefix := &pepVersion{epoch: spec.epoch, release: spec.release[:len(spec.release)-1]}
		return compareVersions(v.public(), spec) >= 0 && v.epoch == spec.epoch && releasePrefix(v, prefix)
	case "<=":
		return compareVersions(v.public(), spec) <= 0
	case ">=":
		return compareVersions(v.public(), spec) >= 0
	case "<":
		if compareVersions(v, spec) >= 0 {
			return false
		}
		// <3.0 excludes 3.0rc1 unless the bound is itself a pre-release.
		return spec.isPrerelease() || !v.isPrerelease() || compareVersions(v.base(), spec.base()) != 0
	case ">":
		if compareVersions(v, spec) <= 0 {
			return false
		}
		// >3.0 excludes 3.0.post1 and 3.0+local unless the bound asks.
		if !spec.hasPost && v.hasPost && compareVersions(v.base(), spec.base()) == 0 {
			return false
		}
		return v.local == nil || compareVersions(v.base(), spec.base()) != 0
	}
	return false
}

// releasePrefix reports whether v's release starts with prefix's release,
// v padded with zeros (so 3.12 matches 3.12.0.*).
func releasePrefix(v, prefix *pepVersion) bool {
	for i, n := range prefix.release {
		var x uint64
		if i < len(v.release) {
			x = v.release[i]
		}
		if x != n {
			return false
		}
	}
	return true
}

// pepSpecifierSet is a comma-separated conjunction of specifiers.
type pepSpecifierSet []*pepSpecifier

func parseSpecifierSet(s string) (pepSpecifierSet, error) {
	var set pepSpecifierSet
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			if strings.TrimSpace(s) == "" {
				return nil, nil
			}
			return nil, fmt.Errorf("specifier %q has an empty clause", s)
		}
		sp, err := parseSpecifier(part)
		if err != nil {
			return nil, fmt.Errorf("specifier %q: %w", s, err)
		}
		set = append(set, sp)
	}
	return set, nil
}

func (set pepSpecifierSet) contains(s string) bool {
	for _, sp := range set {
		if !sp.contains(s) {
			return false
		}
	}
	return true
}

// NormalizeName is a distribution or extra name in PEP 503 form: lower case,
// every run of '-', '_' and '.' one '-'.
func NormalizeName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' || c == '_' || c == '.' {
			sep = true
			continue
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}
