package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Query is a parsed `pipe query` expression. The language is the useful
// core of Bazel's:
//
//	//pkg/...  //pkg:all  //pkg:name       target patterns
//	deps(x [, depth])                       x and everything it depends on
//	rdeps(universe, x [, depth])            targets in universe that depend on x
//	kind(regex, x)                          targets of x whose rule matches
//	filter(regex, x)                        targets of x whose label matches
//	x + y, x union y, x - y, x except y, x ^ y, x intersect y, (x)
type Query struct {
	root qnode
}

type qnode interface{}

type qpattern struct{ p Pattern }
type qfunc struct {
	name string
	args []qnode
	strs []string // regex or depth arguments
}
type qbinop struct {
	op   string
	l, r qnode
}

// ParseQuery parses expr; relPkg resolves relative patterns.
func ParseQuery(expr, relPkg string) (*Query, error) {
	toks, err := lexQuery(expr)
	if err != nil {
		return nil, err
	}
	p := &qparser{toks: toks, relPkg: relPkg}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, Usagef("query: unexpected %q after a complete expression", p.toks[p.pos])
	}
	return &Query{root: n}, nil
}

func lexQuery(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case strings.ContainsRune("(),+^", c):
			toks = append(toks, string(c))
			i++
		case c == '-' && (i+1 >= len(s) || s[i+1] == ' '):
			toks = append(toks, "-")
			i++
		case c == '"' || c == '\'':
			end := strings.IndexRune(s[i+1:], c)
			if end < 0 {
				return nil, Usagef("query: unterminated string starting at offset %d", i)
			}
			toks = append(toks, s[i:i+end+2])
			i += end + 2
		default:
			j := i
			for j < len(s) && !unicode.IsSpace(rune(s[j])) && !strings.ContainsRune("(),+^", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

type qparser struct {
	toks   []string
	pos    int
	relPkg string
}

func (p *qparser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *qparser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *qparser) expect(t string) error {
	if got := p.next(); got != t {
		if got == "" {
			got = "end of expression"
		}
		return Usagef("query: expected %q, found %q", t, got)
	}
	return nil
}

func (p *qparser) expr() (qnode, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		op := p.peek()
		switch op {
		case "+", "union":
			op = "+"
		case "-", "except":
			op = "-"
		case "^", "intersect":
			op = "^"
		default:
			return l, nil
		}
		p.next()
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		l = &qbinop{op: op, l: l, r: r}
	}
}

var queryFuncs = map[string]struct {
	exprArgs []bool // true: expression; false: string/int
	optional int    // trailing optional args
}{
	"deps":   {[]bool{true, false}, 1},
	"rdeps":  {[]bool{true, true, false}, 1},
	"kind":   {[]bool{false, true}, 0},
	"filter": {[]bool{false, true}, 0},
}

func (p *qparser) term() (qnode, error) {
	t := p.next()
	switch {
	case t == "":
		return nil, Usagef("query: unexpected end of expression")
	case t == "(":
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	}
	if spec, ok := queryFuncs[t]; ok && p.peek() == "(" {
		p.next()
		f := &qfunc{name: t}
		for i, isExpr := range spec.exprArgs {
			if i > 0 {
				optional := i >= len(spec.exprArgs)-spec.optional
				if optional && p.peek() == ")" {
					break
				}
				if optional && p.peek() == "" {
					return nil, Usagef("query: %s: expected \")\" or \",\", found end of expression", t)
				}
				if err := p.expect(","); err != nil {
					return nil, err
				}
			}
			if isExpr {
				n, err := p.expr()
				if err != nil {
					return nil, err
				}
				f.args = append(f.args, n)
			} else {
				w := p.next()
				if isPunct(w) {
					return nil, Usagef("query: %s: expected a word, found %q", t, w)
				}
				f.strs = append(f.strs, strings.Trim(w, `"'`))
			}
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		if (t == "deps" || t == "rdeps") && len(f.strs) == 1 {
			if d, err := strconv.Atoi(f.strs[0]); err != nil || d < 0 {
				return nil, Usagef("query: %s: depth %q is not a non-negative integer", t, f.strs[0])
			}
		}
		return f, nil
	}
	if isPunct(t) {
		return nil, Usagef("query: expected a target pattern or function, found %q", t)
	}
	pat, err := ParsePattern(strings.Trim(t, `"'`), p.relPkg)
	if err != nil {
		return nil, Usagef("query: %v", err)
	}
	return &qpattern{pat}, nil
}

func isPunct(t string) bool {
	switch t {
	case "(", ")", ",", "+", "^", "-", "":
		return true
	}
	return false
}

// Patterns lists every target pattern in the query: loading them (and
// their dependencies) gives the universe the query runs on.
func (q *Query) Patterns() []Pattern {
	var out []Pattern
	var walk func(n qnode)
	walk = func(n qnode) {
		switch n := n.(type) {
		case *qpattern:
			out = append(out, n.p)
		case *qfunc:
			for _, a := range n.args {
				walk(a)
			}
		case *qbinop:
			walk(n.l)
			walk(n.r)
		}
	}
	walk(q.root)
	return out
}

// Eval runs the query over a loaded target graph and returns sorted labels.
func (q *Query) Eval(tg *TargetGraph) ([]Label, error) {
	set, err := evalQuery(q.root, tg)
	if err != nil {
		return nil, err
	}
	out := make([]Label, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	sortLabels(out)
	return out, nil
}

type labelSet map[Label]bool

func evalQuery(n qnode, tg *TargetGraph) (labelSet, error) {
	switch n := n.(type) {
	case *qpattern:
		s := labelSet{}
		for l := range tg.Targets {
			if n.p.Matches(l) {
				s[l] = true
			}
		}
		return s, nil
	case *qbinop:
		l, err := evalQuery(n.l, tg)
		if err != nil {
			return nil, err
		}
		r, err := evalQuery(n.r, tg)
		if err != nil {
			return nil, err
		}
		out := labelSet{}
		switch n.op {
		case "+":
			for k := range l {
				out[k] = true
			}
			for k := range r {
				out[k] = true
			}
		case "-":
			for k := range l {
				if !r[k] {
					out[k] = true
				}
			}
		case "^":
			for k := range l {
				if r[k] {
					out[k] = true
				}
			}
		}
		return out, nil
	case *qfunc:
		args := make([]labelSet, len(n.args))
		for i, a := range n.args {
			s, err := evalQuery(a, tg)
			if err != nil {
				return nil, err
			}
			args[i] = s
		}
		depth := -1
		if (n.name == "deps" && len(n.strs) == 1) || (n.name == "rdeps" && len(n.strs) == 1) {
			d, err := strconv.Atoi(n.strs[0])
			if err != nil || d < 0 {
				return nil, Usagef("query: %s: depth %q is not a non-negative integer", n.name, n.strs[0])
			}
			depth = d
		}
		switch n.name {
		case "deps":
			return closure(args[0], depth, tg.DirectDeps), nil
		case "rdeps":
			universe := closure(args[0], -1, tg.DirectDeps)
			rev := map[Label][]Label{}
			for l := range universe {
				for _, d := range tg.DirectDeps(l) {
					rev[d] = append(rev[d], l)
				}
			}
			out := closure(args[1], depth, func(l Label) []Label { return rev[l] })
			for l := range out {
				if !universe[l] {
					delete(out, l)
				}
			}
			return out, nil
		case "kind", "filter":
			re, err := regexp.Compile(n.strs[0])
			if err != nil {
				return nil, Usagef("query: %s: bad regular expression %q: %v", n.name, n.strs[0], err)
			}
			out := labelSet{}
			for l := range args[0] {
				subject := l.String()
				if n.name == "kind" {
					subject = tg.Targets[l].Rule.Name + " rule"
				}
				if re.MatchString(subject) {
					out[l] = true
				}
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("query: internal error: unknown node %T", n)
}

func closure(start labelSet, depth int, next func(Label) []Label) labelSet {
	out := labelSet{}
	frontier := make([]Label, 0, len(start))
	for l := range start {
		out[l] = true
		frontier = append(frontier, l)
	}
	for d := 0; len(frontier) > 0 && (depth < 0 || d < depth); d++ {
		var nf []Label
		for _, l := range frontier {
			for _, n := range next(l) {
				if !out[n] {
					out[n] = true
					nf = append(nf, n)
				}
			}
		}
		frontier = nf
	}
	return out
}
