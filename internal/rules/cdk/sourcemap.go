package cdk

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sourcemap/sourcemap"
)

// positions translates positions in the bundle (app.js:LINE:COL, as node
// prints them in stack traces) to the TypeScript sources, through the
// source map esbuild inlined into the bundle.
type positions struct {
	re  *regexp.Regexp
	sm  *sourcemap.Consumer
	dir string // workspace directory of the bundle; the map's sources are relative to it
	js  string // workspace path of the bundle
	src []byte // the bundle
}

const inlineMapPrefix = "//# sourceMappingURL=data:application/json;base64,"

// newPositions reads the inline source map of bundle (workspace path rel),
// which node loaded from one of abs. Without a map, positions still become
// workspace paths.
func newPositions(bundle []byte, rel string, abs ...string) *positions {
	var alts []string
	for _, a := range abs {
		alts = append(alts, regexp.QuoteMeta(a))
	}
	p := &positions{
		// node prints a CommonJS file's plain path; file:// URLs appear
		// when the error passes through ESM machinery.
		re:  regexp.MustCompile(`(?:file://)?(?:` + strings.Join(alts, "|") + `):(\d+)(?::(\d+))?`),
		dir: path.Dir(rel),
		js:  rel,
		src: bundle,
	}
	if i := bytes.LastIndex(bundle, []byte(inlineMapPrefix)); i >= 0 {
		enc := bytes.TrimSpace(bundle[i+len(inlineMapPrefix):])
		if raw, err := base64.StdEncoding.DecodeString(string(enc)); err == nil {
			if sm, err := sourcemap.Parse("", raw); err == nil {
				p.sm = sm
			}
		}
	}
	return p
}

// lookup maps a 1-based line and column of the bundle to a workspace path,
// line and column (1-based) of the source.
func (p *positions) lookup(line, col int) (string, int, int, bool) {
	_, src, l, c, ok := p.lookupRaw(line, col)
	return src, l, c, ok
}

// lookupRaw also returns the source's name in the map, for its content.
func (p *positions) lookupRaw(line, col int) (raw, src string, l, c int, ok bool) {
	if p.sm == nil {
		return "", "", 0, 0, false
	}
	raw, _, l, c, ok = p.sm.Source(line, max(col-1, 0))
	if !ok || raw == "" {
		return "", "", 0, 0, false
	}
	return raw, path.Join(p.dir, raw), l, c + 1, true
}

// showSource replaces the bundle line node prints under an uncaught
// error's "app.js:LINE" header, and the caret under it, with the
// TypeScript line the code came from.
func (p *positions) showSource(text string) string {
	if p.sm == nil {
		return text
	}
	lines := strings.Split(text, "\n")
	for i := 0; i+2 < len(lines); i++ {
		m := p.re.FindStringSubmatch(lines[i])
		if m == nil || m[0] != lines[i] || m[2] != "" || strings.TrimSpace(lines[i+2]) != "^" {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		raw, src, l, c, ok := p.lookupRaw(line, strings.IndexByte(lines[i+2], '^')+1)
		if !ok {
			continue
		}
		content := strings.Split(p.sm.SourceContent(raw), "\n")
		if l < 1 || l > len(content) {
			continue
		}
		lines[i] = fmt.Sprintf("%s:%d", src, l)
		lines[i+1] = strings.TrimRight(content[l-1], "\r")
		lines[i+2] = strings.Repeat(" ", c-1) + "^"
	}
	return strings.Join(lines, "\n")
}

// translate rewrites every position in the bundle that text mentions.
func (p *positions) translate(text string) string {
	return p.re.ReplaceAllStringFunc(p.showSource(text), func(m string) string {
		sub := p.re.FindStringSubmatch(m)
		line, _ := strconv.Atoi(sub[1])
		if sub[2] == "" {
			// The header node prints above the offending line of an
			// uncaught error has no column: take the line's first token.
			if src, l, _, ok := p.lookup(line, p.indent(line)+1); ok {
				return fmt.Sprintf("%s:%d", src, l)
			}
			return fmt.Sprintf("%s:%d", p.js, line)
		}
		col, _ := strconv.Atoi(sub[2])
		if src, l, c, ok := p.lookup(line, col); ok {
			return fmt.Sprintf("%s:%d:%d", src, l, c)
		}
		return fmt.Sprintf("%s:%d:%d", p.js, line, col)
	})
}

// firstSource returns the first translated position in text that lies in
// a source (not the bundle), for the one-line error.
func (p *positions) firstSource(text string) string {
	for _, sub := range p.re.FindAllStringSubmatch(text, -1) {
		if sub[2] == "" {
			continue
		}
		line, _ := strconv.Atoi(sub[1])
		col, _ := strconv.Atoi(sub[2])
		if src, l, c, ok := p.lookup(line, col); ok {
			return fmt.Sprintf("%s:%d:%d", src, l, c)
		}
	}
	return ""
}

// indent is the 0-based column of the first non-blank byte of a line of the
// bundle.
func (p *positions) indent(line int) int {
	rest := p.src
	for i := 1; i < line; i++ {
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			return 0
		}
		rest = rest[j+1:]
	}
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return len(rest) - len(bytes.TrimLeft(rest, " \t"))
}
