package python

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/pipebuild/pipe/internal/engine"
)

// DefaultPythonVersion is the Python a target gets when neither its
// python_version, a .python-version file nor requires-python says: the
// newest Lambda runtime on Amazon Linux 2023 when this was written.
const DefaultPythonVersion = "3.12"

// PythonRequest is the Python a target asks for: a minor version ("3.12",
// any 3.12.x) or one release ("3.12.1").
type PythonRequest struct {
	Major, Minor, Patch int
	HasPatch            bool
}

// ParsePythonRequest reads "3.12" or "3.12.1", optionally spelt as uv
// allows ("cpython-3.12", "cpython@3.12", "python3.12").
func ParsePythonRequest(s string) (PythonRequest, error) {
	v := strings.TrimSpace(s)
	for _, p := range []string{"cpython-", "cpython@", "cpython", "python"} {
		if rest, ok := strings.CutPrefix(strings.ToLower(v), p); ok {
			v = rest
			break
		}
	}
	bad := fmt.Errorf("%q is not a CPython version: write one such as \"3.12\" or \"3.12.1\"", s)
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return PythonRequest{}, bad
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || p != strconv.Itoa(n) {
			return PythonRequest{}, bad
		}
		nums[i] = n
	}
	if nums[0] != 3 {
		return PythonRequest{}, fmt.Errorf("%q: pipe runs Python 3; write a version such as \"3.12\"", s)
	}
	r := PythonRequest{Major: nums[0], Minor: nums[1]}
	if len(nums) == 3 {
		r.Patch, r.HasPatch = nums[2], true
	}
	return r, nil
}

func (r PythonRequest) String() string {
	if r.HasPatch {
		return fmt.Sprintf("%d.%d.%d", r.Major, r.Minor, r.Patch)
	}
	return r.MinorVersion()
}

// MinorVersion is "3.12" for both "3.12" and "3.12.1".
func (r PythonRequest) MinorVersion() string { return fmt.Sprintf("%d.%d", r.Major, r.Minor) }

// Matches reports whether an interpreter of version (major, minor, patch)
// is what r asks for.
func (r PythonRequest) Matches(major, minor, patch int) bool {
	return r.Major == major && r.Minor == minor && (!r.HasPatch || r.Patch == patch)
}

// ParsePythonVersionFile reads a .python-version as pyenv and uv write it:
// the first line that is not blank or a # comment names the version.
// pyenv may list several versions, one per line; the first is the one it
// runs, and so is pipe's.
func ParsePythonVersionFile(data []byte, file string) (PythonRequest, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
		if s == "" {
			continue
		}
		r, err := ParsePythonRequest(s)
		if err != nil {
			return PythonRequest{}, fmt.Errorf("%s:%d: %v", file, line, err)
		}
		return r, nil
	}
	if err := sc.Err(); err != nil {
		return PythonRequest{}, fmt.Errorf("%s:%d: %v", file, line+1, err)
	}
	return PythonRequest{}, fmt.Errorf("%s: names no version: write one such as 3.12 (uv python pin 3.12 does)", file)
}

// lowestMinor is the oldest Python 3 minor version requires-python admits
// ("3.12" for ">=3.12", "3.11" for "~=3.11.4"), tried from 3.0 up to
// 3.99 at their first and a late patch release.
func lowestMinor(requiresPython string) (string, bool) {
	set, err := parseSpecifierSet(requiresPython)
	if err != nil {
		return "", false
	}
	for minor := 0; minor < 100; minor++ {
		for _, patch := range []string{".0", ".999"} {
			if set.contains(fmt.Sprintf("3.%d%s", minor, patch)) {
				return fmt.Sprintf("3.%d", minor), true
			}
		}
	}
	return "", false
}

// wantedPython is the Python version a target runs and builds for, and
// where that came from: its python_version attribute; else the nearest
// .python-version from its package up to the workspace root (as uv and
// pyenv find it); else the lowest version the package's pyproject.toml
// requires-python admits; else DefaultPythonVersion. Each file read is
// recorded, so editing one re-analyses the target.
func wantedPython(ctx *engine.AnalysisContext) (PythonRequest, string, error) {
	if v := ctx.String("python_version"); v != "" {
		r, err := ParsePythonRequest(v)
		if err != nil {
			return PythonRequest{}, "", ctx.Errorf("python_version: %v", err)
		}
		return r, "python_version", nil
	}
	pkg := ctx.Label().Pkg
	for dir := pkg; ; dir = path.Dir(dir) {
		if dir == "." {
			dir = ""
		}
		f := path.Join(dir, ".python-version")
		if ctx.FileExists(f) {
			b, err := ctx.ReadFile(f)
			if err != nil {
				return PythonRequest{}, "", ctx.Errorf("%v", err)
			}
			r, err := ParsePythonVersionFile(b, f)
			if err != nil {
				return PythonRequest{}, "", ctx.Errorf("%v", err)
			}
			return r, f, nil
		}
		if dir == "" {
			break
		}
	}
	pyproject := path.Join(pkg, "pyproject.toml")
	if files := ctx.Files("pyproject"); len(files) == 1 {
		pyproject = files[0].Path
	}
	if b, err := ctx.ReadFile(pyproject); err == nil {
		var doc struct {
			Project struct {
				RequiresPython string `toml:"requires-python"`
			} `toml:"project"`
		}
		if toml.Unmarshal(b, &doc) == nil && doc.Project.RequiresPython != "" {
			if v, ok := lowestMinor(doc.Project.RequiresPython); ok {
				r, _ := ParsePythonRequest(v)
				return r, fmt.Sprintf("requires-python %s in %s", doc.Project.RequiresPython, pyproject), nil
			}
		}
	}
	r, _ := ParsePythonRequest(DefaultPythonVersion)
	return r, "pipe's default", nil
}
