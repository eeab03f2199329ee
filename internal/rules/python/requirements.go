package python

// Hash-pinned requirements.txt files, the alternative to uv.lock (what
// `uv export` and `pip-compile --generate-hashes` write), and the PEP 508
// requirement strings both they and pyproject.toml use.

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Requirement is one entry of a requirements.txt.
type Requirement struct {
	Name, Version, Marker string
	// Hashes are the lower-case hex sha256 digests the file allows.
	Hashes []string
	// Editable is the path of a local project (`-e ./packages/lib`, or a
	// bare `./packages/lib` as `uv export --no-editable` writes): a
	// workspace member, copied as source. Name and Version are then empty.
	Editable string
	Extras   []string
	URL      string // for `name @ url` requirements
	Line     int    // where the requirement starts, for messages
}

// requirementOptionsIgnored are pip options that may appear in an exported
// file but do not change what gets installed for pipe: the index comes from
// python_index, and hashes are always required.
var requirementOptionsIgnored = map[string]bool{
	"-i": true, "--index-url": true, "--extra-index-url": true,
	"-f": true, "--find-links": true, "--trusted-host": true,
	"--no-index": false, "--pre": false, "--prefer-binary": false,
	"--require-hashes": false, "--only-binary": true, "--no-binary": true,
}

// requirementCommentRE is pip's comment rule: '#' at the start or after
// whitespace, so URL fragments (#sha256=…, #egg=…) survive.
var requirementCommentRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(^|\s+)#.*$`) })

// ParseRequirements parses a hash-pinned requirements.txt. Every
// requirement must be pinned (name==version) with at least one sha256
// --hash, except local projects; file names the file in errors.
func ParseRequirements(data []byte, file string) ([]Requirement, error) {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	lines := strings.Split(text, "\n")
	var out []Requirement
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := lines[i]
		// A trailing backslash continues the line, as in pip.
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + lines[i]
		}
		line = strings.TrimSuffix(line, "\\")
		line = strings.TrimSpace(requirementCommentRE().ReplaceAllString(line, ""))
		if line == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", file, start)
		req, err := parseRequirementLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if req == nil {
			continue
		}
		req.Line = start
		out = append(out, *req)
	}
	return out, nil
}

// parseRequirementLine returns nil for an option line that pipe ignores.
func parseRequirementLine(line string) (*Requirement, error) {
	fields := strings.Fields(line)
	if strings.HasPrefix(fields[0], "-") {
		return parseRequirementOption(fields)
	}
	// As pip does: the requirement is every field before the first one
	// that starts with '-'; the rest are per-requirement options.
	n := 0
	for n < len(fields) && !strings.HasPrefix(fields[n], "-") {
		n++
	}
	spec := strings.Join(fields[:n], " ")
	req := &Requirement{}
	for j := n; j < len(fields); j++ {
		opt, val, hasVal := strings.Cut(fields[j], "=")
		if opt != "--hash" {
			return nil, fmt.Errorf("option %s is not supported on a requirement line", opt)
		}
		if !hasVal {
			if j+1 >= len(fields) {
				return nil, fmt.Errorf("--hash needs a value (sha256:…)")
			}
			j++
			val = fields[j]
		}
		algo, digest, ok := strings.Cut(val, ":")
		if !ok {
			return nil, fmt.Errorf("--hash=%s: want sha256:<hex>", val)
		}
		if algo != "sha256" {
			continue
		}
		digest = strings.ToLower(digest)
		if !sha256HexRE().MatchString(digest) {
			return nil, fmt.Errorf("--hash=%s: a sha256 digest is 64 hex digits", val)
		}
		req.Hashes = append(req.Hashes, digest)
	}
	if isLocalRequirementPath(spec) {
		req.Editable = strings.TrimSpace(spec)
		return req, nil
	}
	pr, err := parseRequirement(spec)
	if err != nil {
		return nil, err
	}
	req.Name, req.Extras, req.Marker, req.URL = pr.Name, pr.Extras, pr.Marker, pr.URL
	if pr.URL == "" {
		set, err := parseSpecifierSet(pr.Specifier)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		if len(set) != 1 || (set[0].op != "==" && set[0].op != "===") || set[0].wildcard {
			return nil, fmt.Errorf("%s is not pinned; pipe needs name==version with --hash lines, as `uv export` writes them", spec)
		}
		req.Version = set[0].raw
	}
	if len(req.Hashes) == 0 {
		return nil, fmt.Errorf("%s has no --hash=sha256:…; export with hashes (`uv export` without --no-hashes)", spec)
	}
	return req, nil
}

func parseRequirementOption(fields []string) (*Requirement, error) {
	opt, val, hasVal := strings.Cut(fields[0], "=")
	rest := fields[1:]
	// -e./path and -i<url> are the short options' glued forms.
	if !hasVal && len(opt) > 2 && opt[1] != '-' {
		opt, val, hasVal = opt[:2], opt[2:], true
	}
	value := func() (string, error) {
		if hasVal {
			if len(rest) > 0 {
				return "", fmt.Errorf("unexpected %q after %s", strings.Join(rest, " "), opt)
			}
			if val == "" {
				return "", fmt.Errorf("%s needs a value", opt)
			}
			return val, nil
		}
		if len(rest) != 1 {
			return "", fmt.Errorf("%s needs one value", opt)
		}
		return rest[0], nil
	}
	switch opt {
	case "-e", "--editable":
		p, err := value()
		if err != nil {
			return nil, err
		}
		return &Requirement{Editable: p}, nil
	case "-r", "--requirement", "-c", "--constraint":
		return nil, fmt.Errorf("%s includes another file, which pipe does not follow; export one file with `uv export`", opt)
	case "--hash":
		return nil, fmt.Errorf("--hash without a requirement before it (is a line continuation \\ missing?)")
	}
	takesValue, known := requirementOptionsIgnored[opt]
	if !known {
		return nil, fmt.Errorf("option %s is not supported in a requirements file for pipe", opt)
	}
	if takesValue {
		if _, err := value(); err != nil {
			return nil, err
		}
	} else if hasVal || len(rest) > 0 {
		return nil, fmt.Errorf("%s takes no value", opt)
	}
	return nil, nil
}

// isLocalRequirementPath reports whether a requirement is a path to a local project
// rather than a named distribution.
func isLocalRequirementPath(s string) bool {
	s = strings.TrimSpace(s)
	return s == "." || s == ".." || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		strings.HasPrefix(s, "/") || strings.HasPrefix(s, "file:")
}

// pep508Requirement is a parsed PEP 508 requirement string.
type pep508Requirement struct {
	Name      string
	Extras    []string
	Specifier string // "" for any version, or a URL requirement
	URL       string
	Marker    string
}

var (
	requirementNameRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?`) })
	requirementExtraRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$`) })
)

// parseRequirement parses `name[extra,…] specifier ; marker` or
// `name[extra] @ url ; marker`, checking the specifier and the marker.
func parseRequirement(s string) (*pep508Requirement, error) {
	orig := s
	s = strings.TrimSpace(s)
	name := requirementNameRE().FindString(s)
	if name == "" {
		return nil, fmt.Errorf("requirement %q does not start with a distribution name", orig)
	}
	r := &pep508Requirement{Name: name}
	s = strings.TrimSpace(s[len(name):])
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, fmt.Errorf("requirement %q: missing ] after the extras", orig)
		}
		for _, e := range strings.Split(s[1:end], ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if !requirementExtraRE().MatchString(e) {
				return nil, fmt.Errorf("requirement %q: %q is not an extra name", orig, e)
			}
			r.Extras = append(r.Extras, e)
		}
		s = strings.TrimSpace(s[end+1:])
	}
	var marker string
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		// A URL may hold ';', so only whitespace ends it.
		rest = strings.TrimSpace(rest)
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			end = len(rest)
		}
		r.URL = rest[:end]
		if r.URL == "" {
			return nil, fmt.Errorf("requirement %q: @ needs a URL", orig)
		}
		after := strings.TrimSpace(rest[end:])
		if after != "" {
			m, ok := strings.CutPrefix(after, ";")
			if !ok {
				return nil, fmt.Errorf("requirement %q: unexpected %q after the URL", orig, after)
			}
			marker = m
		}
	} else {
		spec, m, hasMarker := strings.Cut(s, ";")
		if hasMarker {
			marker = m
		}
		spec = strings.TrimSpace(spec)
		if strings.HasPrefix(spec, "(") {
			if !strings.HasSuffix(spec, ")") {
				return nil, fmt.Errorf("requirement %q: missing ) after the version", orig)
			}
			spec = strings.TrimSpace(spec[1 : len(spec)-1])
		}
		if spec != "" {
			if _, err := parseSpecifierSet(spec); err != nil {
				return nil, fmt.Errorf("requirement %q: %w", orig, err)
			}
		}
		r.Specifier = spec
	}
	r.Marker = strings.TrimSpace(marker)
	if _, err := parseMarker(r.Marker); err != nil {
		return nil, fmt.Errorf("requirement %q: %w", orig, err)
	}
	return r, nil
}
