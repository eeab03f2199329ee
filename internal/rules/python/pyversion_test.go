package python

import (
	"strings"
	"testing"
)

func TestParsePythonRequest(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "3.12", want: "3.12"},
		{in: "3.12.1", want: "3.12.1"},
		{in: " 3.9 ", want: "3.9"},
		{in: "cpython-3.13", want: "3.13"},
		{in: "cpython@3.13.0", want: "3.13.0"},
		{in: "python3.11", want: "3.11"},
		{in: "3", err: "is not a CPython version"},
		{in: "3.12.1.4", err: "is not a CPython version"},
		{in: "3.012", err: "is not a CPython version"},
		{in: "2.7", err: "pipe runs Python 3"},
		{in: "pypy3.10", err: "is not a CPython version"},
		{in: "3.12t", err: "is not a CPython version"},
		{in: ">=3.12", err: "is not a CPython version"},
		{in: "", err: "is not a CPython version"},
	} {
		r, err := ParsePythonRequest(c.in)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParsePythonRequest(%q) = %v, %v; want error %q", c.in, r, err, c.err)
			}
		case err != nil || r.String() != c.want:
			t.Errorf("ParsePythonRequest(%q) = %v, %v; want %s", c.in, r, err, c.want)
		}
	}
	r, _ := ParsePythonRequest("3.12")
	if !r.Matches(3, 12, 1) || !r.Matches(3, 12, 9) || r.Matches(3, 11, 7) {
		t.Errorf("3.12 matches any 3.12.x and nothing else")
	}
	r, _ = ParsePythonRequest("3.12.1")
	if !r.Matches(3, 12, 1) || r.Matches(3, 12, 2) {
		t.Errorf("3.12.1 matches 3.12.1 only")
	}
}

func TestParsePythonVersionFile(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "3.12\n", want: "3.12"},
		{in: "3.12.1", want: "3.12.1"},
		{in: "# pinned by uv\n\n3.11\n", want: "3.11"},
		{in: "3.12.1\n3.11.7\n", want: "3.12.1"}, // pyenv: the first one runs
		{in: "3.13 # the newest\n", want: "3.13"},
		{in: "cpython-3.12\n", want: "3.12"},
		{in: "\n# nothing\n", err: ".python-version: names no version"},
		{in: "", err: ".python-version: names no version"},
		{in: "system\n", err: `.python-version:1: "system" is not a CPython version`},
		{in: "\n\npypy3.10\n", err: `.python-version:3: "pypy3.10"`},
	} {
		r, err := ParsePythonVersionFile([]byte(c.in), ".python-version")
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, %v; want error %q", c.in, r, err, c.err)
			}
		case err != nil || r.String() != c.want:
			t.Errorf("%q: %v, %v; want %s", c.in, r, err, c.want)
		}
	}
}

func TestLowestMinor(t *testing.T) {
	for in, want := range map[string]string{
		">=3.12":         "3.12",
		">=3.11,<3.13":   "3.11",
		"~=3.11.4":       "3.11",
		"==3.12.*":       "3.12",
		">3.9":           "3.9",
		">=3.9.2, !=3.9": "3.9",
		"<3.0":           "",
		"nonsense":       "",
	} {
		got, ok := lowestMinor(in)
		if got != want || ok != (want != "") {
			t.Errorf("lowestMinor(%q) = %q, %t; want %q", in, got, ok, want)
		}
	}
}

// FuzzParsePythonVersionFile: any content either names a Python 3
// version or says which line is wrong; it never panics.
func FuzzParsePythonVersionFile(f *testing.F) {
	for _, s := range []string{"3.12\n", "3.12.1\n3.11\n", "# c\ncpython@3.13\n", "system", "", "\x00", "3.999.999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePythonVersionFile(b, ".python-version")
		if err != nil {
			if !strings.HasPrefix(err.Error(), ".python-version") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if r.Major != 3 || r.Minor < 0 || (r.HasPatch && r.Patch < 0) {
			t.Fatalf("parsed %q as %+v", b, r)
		}
		again, err := ParsePythonRequest(r.String())
		if err != nil || again != r {
			t.Fatalf("%v does not round-trip: %v, %v", r, again, err)
		}
	})
}
