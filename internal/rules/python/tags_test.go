package python

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDefaultGlibc(t *testing.T) {
	for v, want := range map[string][2]int{
		"3.9": {2, 26}, "3.10": {2, 26}, "3.11": {2, 26}, "3.11.9": {2, 26},
		"3.12": {2, 34}, "3.13": {2, 34}, "3.14": {2, 34}, "junk": {2, 34},
	} {
		if got := DefaultGlibc(v); got != want {
			t.Errorf("DefaultGlibc(%q) = %v, want %v", v, got, want)
		}
	}
}

func tagStrings(tags []Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.String()
	}
	return out
}

func TestPlatformTags(t *testing.T) {
	tags := tagStrings(Platform{PythonVersion: "3.12", Arch: "x86_64"}.Tags())
	idx := func(s string) int {
		t.Helper()
		i := slices.Index(tags, s)
		if i < 0 {
			t.Fatalf("tag %s missing", s)
		}
		return i
	}
	if tags[0] != "cp312-cp312-manylinux_2_34_x86_64" {
		t.Errorf("first tag = %s, want cp312-cp312-manylinux_2_34_x86_64", tags[0])
	}
	if last := tags[len(tags)-1]; last != "py30-none-any" {
		t.Errorf("last tag = %s, want py30-none-any", last)
	}
	// Each legacy alias sits right after the PEP 600 tag it equals.
	for _, pair := range [][2]string{
		{"cp312-cp312-manylinux_2_17_x86_64", "cp312-cp312-manylinux2014_x86_64"},
		{"cp312-cp312-manylinux_2_12_x86_64", "cp312-cp312-manylinux2010_x86_64"},
		{"cp312-cp312-manylinux_2_5_x86_64", "cp312-cp312-manylinux1_x86_64"},
	} {
		if idx(pair[1]) != idx(pair[0])+1 {
			t.Errorf("%s is not right after %s", pair[1], pair[0])
		}
	}
	// Strictly preferred, in this order.
	chain := []string{
		"cp312-cp312-manylinux_2_34_x86_64",
		"cp312-cp312-manylinux_2_28_x86_64",
		"cp312-cp312-manylinux2014_x86_64",
		"cp312-cp312-manylinux1_x86_64",
		"cp312-abi3-manylinux_2_34_x86_64",
		"cp312-abi3-manylinux1_x86_64",
		"cp312-none-manylinux_2_17_x86_64",
		"cp311-abi3-manylinux_2_28_x86_64",
		"cp39-abi3-manylinux_2_17_x86_64",
		"cp32-abi3-manylinux1_x86_64",
		"py312-none-manylinux_2_17_x86_64",
		"py3-none-manylinux_2_17_x86_64",
		"py311-none-manylinux_2_17_x86_64",
		"cp312-none-any",
		"py312-none-any",
		"py3-none-any",
		"py311-none-any",
		"py30-none-any",
	}
	for i := 1; i < len(chain); i++ {
		if idx(chain[i-1]) >= idx(chain[i]) {
			t.Errorf("%s should rank above %s", chain[i-1], chain[i])
		}
	}
	for _, tag := range tags {
		if strings.Contains(tag, "musllinux") || strings.Contains(tag, "linux_x86_64") && !strings.Contains(tag, "manylinux") ||
			strings.Contains(tag, "aarch64") || strings.Contains(tag, "manylinux_2_35") || strings.Contains(tag, "cp313") ||
			strings.Contains(tag, "cp31-abi3") || strings.Contains(tag, "py2") {
			t.Errorf("unexpected tag %s", tag)
		}
	}

	arm := tagStrings(Platform{PythonVersion: "3.11", Arch: "arm64"}.Tags())
	if arm[0] != "cp311-cp311-manylinux_2_26_aarch64" {
		t.Errorf("arm64 3.11 first tag = %s, want cp311-cp311-manylinux_2_26_aarch64 (Amazon Linux 2)", arm[0])
	}
	for _, want := range []string{"cp311-cp311-manylinux2014_aarch64", "cp311-cp311-manylinux_2_17_aarch64", "cp37-abi3-manylinux2014_aarch64"} {
		if !slices.Contains(arm, want) {
			t.Errorf("arm64 tags lack %s", want)
		}
	}
	for _, tag := range arm {
		// aarch64 wheels start at manylinux2014; the older policies never covered it.
		if strings.Contains(tag, "manylinux2010") || strings.Contains(tag, "manylinux1") || strings.Contains(tag, "manylinux_2_16") || strings.Contains(tag, "x86_64") {
			t.Errorf("unexpected arm64 tag %s", tag)
		}
	}
	if len(Platform{PythonVersion: "3.12", Arch: "ppc64le"}.Tags()) != 0 {
		t.Error("an unknown architecture should support no tags")
	}
	if custom := tagStrings(Platform{PythonVersion: "3.12", Arch: "x86_64", Glibc: [2]int{2, 28}}.Tags()); custom[0] != "cp312-cp312-manylinux_2_28_x86_64" {
		t.Errorf("glibc 2.28 first tag = %s", custom[0])
	}
}

func TestParseWheelFilename(t *testing.T) {
	tests := []struct {
		name          string
		dist, version string
		tags          []string
		wantErr       string
	}{
		{name: "six-1.16.0-py2.py3-none-any.whl", dist: "six", version: "1.16.0", tags: []string{"py2-none-any", "py3-none-any"}},
		{name: "pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", dist: "pydantic_core", version: "2.23.4",
			tags: []string{"cp312-cp312-manylinux_2_17_x86_64", "cp312-cp312-manylinux2014_x86_64"}},
		{name: "greenlet-3.1.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl", dist: "greenlet", version: "3.1.0",
			tags: []string{"cp312-cp312-manylinux_2_24_x86_64", "cp312-cp312-manylinux_2_28_x86_64"}},
		{name: "foo-1.0-1build-py3-none-any.whl", dist: "foo", version: "1.0", tags: []string{"py3-none-any"}},
		{name: "torch-2.0.0+cpu-cp312-cp312-linux_x86_64.whl", dist: "torch", version: "2.0.0+cpu", tags: []string{"cp312-cp312-linux_x86_64"}},
		{name: "a-1-py2.py3-abi3.none-x.y.whl", dist: "a", version: "1", tags: []string{
			"py2-abi3-x", "py2-abi3-y", "py2-none-x", "py2-none-y", "py3-abi3-x", "py3-abi3-y", "py3-none-x", "py3-none-y"}},
		{name: "foo-1.0-py3-none-any.zip", wantErr: "does not end in .whl"},
		{name: "foo-1.0-none-any.whl", wantErr: "want name-version"},
		{name: "foo-1.0-b1-py3-none-any.whl", wantErr: "must start with a digit"},
		{name: "foo-1.0-x-y-py3-none-any.whl", wantErr: "want name-version"},
		{name: "foo-1.0-py3..-none-any.whl", wantErr: "empty tag"},
		{name: "foo--py3-none-any.whl", wantErr: "empty component"},
	}
	for _, tt := range tests {
		dist, version, tags, err := ParseWheelFilename(tt.name)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseWheelFilename(%q) error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseWheelFilename(%q): %v", tt.name, err)
			continue
		}
		if dist != tt.dist || version != tt.version || !reflect.DeepEqual(tagStrings(tags), tt.tags) {
			t.Errorf("ParseWheelFilename(%q) = %s %s %v, want %s %s %v", tt.name, dist, version, tagStrings(tags), tt.dist, tt.version, tt.tags)
		}
	}
}

func wheelsNamed(names ...string) []Wheel {
	var ws []Wheel
	for _, n := range names {
		ws = append(ws, Wheel{Filename: n, URL: "https://files.example.org/" + n})
	}
	return ws
}

func TestSelectWheel(t *testing.T) {
	// Shaped like pydantic-core's release: every CPython, glibc and musl, all OSes.
	pydanticCore := wheelsNamed(
		"pydantic_core-2.23.4-cp312-cp312-musllinux_1_1_x86_64.whl",
		"pydantic_core-2.23.4-cp312-cp312-musllinux_1_1_aarch64.whl",
		"pydantic_core-2.23.4-cp312-cp312-win_amd64.whl",
		"pydantic_core-2.23.4-cp312-cp312-macosx_11_0_arm64.whl",
		"pydantic_core-2.23.4-cp312-cp312-macosx_10_12_x86_64.whl",
		"pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		"pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
		"pydantic_core-2.23.4-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		"pydantic_core-2.23.4-cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
		"pydantic_core-2.23.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		"pydantic_core-2.23.4-pp310-pypy310_pp73-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
	)
	cryptography := wheelsNamed(
		"cryptography-43.0.1-cp39-abi3-musllinux_1_2_x86_64.whl",
		"cryptography-43.0.1-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		"cryptography-43.0.1-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
		"cryptography-43.0.1-cp39-abi3-manylinux_2_28_x86_64.whl",
		"cryptography-43.0.1-cp39-abi3-manylinux_2_28_aarch64.whl",
		"cryptography-43.0.1-cp37-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
	)
	x86 := func(v string) Platform { return Platform{PythonVersion: v, Arch: "x86_64"} }
	arm := func(v string) Platform { return Platform{PythonVersion: v, Arch: "arm64"} }
	tests := []struct {
		name    string
		wheels  []Wheel
		p       Platform
		want    string
		wantErr []string
	}{
		{"pydantic-core x86_64", pydanticCore, x86("3.12"), "pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", nil},
		{"pydantic-core arm64", pydanticCore, arm("3.12"), "pydantic_core-2.23.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", nil},
		{"pydantic-core 3.13", pydanticCore, arm("3.13"), "pydantic_core-2.23.4-cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", nil},
		{"pydantic-core 3.11", pydanticCore, x86("3.11"), "pydantic_core-2.23.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", nil},
		{"pydantic-core 3.11 arm64: only musl and other versions", pydanticCore, arm("3.11"), "", []string{
			"pydantic-core 2.23.4: no wheel for python3.11 on manylinux arm64 (glibc 2.26)",
			"cp312-cp312-musllinux_1_1_aarch64.whl (musllinux: Lambda's Python uses glibc; for CPython 3.12)",
			"cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64.whl (for CPython 3.13)",
			"cp312-cp312-win_amd64.whl (for Windows; for CPython 3.12)",
			"cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (for x86_64)",
			"pp310-pypy310_pp73-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (for x86_64; for PyPy)",
		}},
		{"abi3 newest glibc wins", cryptography, x86("3.12"), "cryptography-43.0.1-cp39-abi3-manylinux_2_28_x86_64.whl", nil},
		{"abi3 on Amazon Linux 2 stops at glibc 2.26", cryptography, x86("3.11"), "cryptography-43.0.1-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", nil},
		{"abi3 arm64", cryptography, arm("3.12"), "cryptography-43.0.1-cp39-abi3-manylinux_2_28_aarch64.whl", nil},
		{"abi3 arm64 Amazon Linux 2", cryptography, arm("3.11"), "cryptography-43.0.1-cp37-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", nil},
		{"abi3 explicit glibc", cryptography, Platform{PythonVersion: "3.12", Arch: "x86_64", Glibc: [2]int{2, 17}}, "cryptography-43.0.1-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", nil},
		{"abi3 too new for the interpreter", wheelsNamed("x-1-cp313-abi3-manylinux_2_17_x86_64.whl"), x86("3.12"), "", []string{"(abi3 from CPython 3.13, newer than 3.12)"}},
		{"py2.py3-none-any", wheelsNamed("six-1.16.0-py2.py3-none-any.whl"), arm("3.12"), "six-1.16.0-py2.py3-none-any.whl", nil},
		{"platform wheel beats pure", wheelsNamed("x-1-py3-none-any.whl", "x-1-cp312-cp312-manylinux_2_5_x86_64.manylinux1_x86_64.whl"), x86("3.12"), "x-1-cp312-cp312-manylinux_2_5_x86_64.manylinux1_x86_64.whl", nil},
		{"pure wins over incompatible", wheelsNamed("x-1-cp312-cp312-musllinux_1_2_x86_64.whl", "x-1-py3-none-any.whl"), x86("3.12"), "x-1-py3-none-any.whl", nil},
		{"py3-none-manylinux (ruff-like)", wheelsNamed("ruff-0.6.3-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "ruff-0.6.3-py3-none-musllinux_1_2_aarch64.whl"), arm("3.12"), "ruff-0.6.3-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", nil},
		{"build tag breaks ties", wheelsNamed("x-1-1-py3-none-any.whl", "x-1-2-py3-none-any.whl", "x-1-py3-none-any.whl"), x86("3.12"), "x-1-2-py3-none-any.whl", nil},
		{"musllinux only", wheelsNamed("x-1-cp312-cp312-musllinux_1_2_x86_64.whl", "x-1-cp312-cp312-musllinux_1_1_x86_64.whl"), x86("3.12"), "", []string{"musllinux: Lambda's Python uses glibc"}},
		{"plain linux tag is refused", wheelsNamed("x-1-cp312-cp312-linux_x86_64.whl"), x86("3.12"), "", []string{"not portable"}},
		{"manylinux_2_39 is too new", wheelsNamed("new_glibc-1.0.0-cp312-cp312-manylinux_2_39_x86_64.whl"), x86("3.12"), "", []string{
			"new-glibc 1.0.0: no wheel for python3.12 on manylinux x86_64 (glibc 2.34)",
			"new_glibc-1.0.0-cp312-cp312-manylinux_2_39_x86_64.whl (needs glibc 2.39; Lambda python3.12 has 2.34)",
		}},
		{"manylinux_2_28 too new for Amazon Linux 2", wheelsNamed("x-1-cp311-cp311-manylinux_2_28_aarch64.whl"), arm("3.11"), "", []string{"needs glibc 2.28; Lambda python3.11 has 2.26"}},
		{"compressed set with one too-new tag is judged by our arch", wheelsNamed("x-1-cp312-cp312-manylinux_2_38_riscv64.manylinux_2_39_x86_64.whl"), x86("3.12"), "", []string{"needs glibc 2.39"}},
		{"free-threaded build", wheelsNamed("x-1-cp312-cp312t-manylinux_2_17_x86_64.whl"), x86("3.12"), "", []string{"free-threaded"}},
		{"bad file name", wheelsNamed("x-1.tar.gz"), x86("3.12"), "", []string{"x-1.tar.gz (not a valid wheel file name)"}},
		{"no wheels", nil, x86("3.12"), "", []string{"lists no wheel and no sdist"}},
		{"bad platform", wheelsNamed("six-1.16.0-py2.py3-none-any.whl"), Platform{PythonVersion: "3.12", Arch: "s390x"}, "", []string{"architecture \"s390x\""}},
		{"bad python", wheelsNamed("six-1.16.0-py2.py3-none-any.whl"), Platform{PythonVersion: "python3", Arch: "x86_64"}, "", []string{"python version \"python3\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg := "pkg"
			if len(tt.wheels) > 0 {
				d, v, _, err := ParseWheelFilename(tt.wheels[0].Filename)
				if err == nil {
					pkg = NormalizeName(d) + " " + v
				}
			}
			name, version, _ := strings.Cut(pkg, " ")
			got, err := SelectWheel(name, version, tt.wheels, tt.p)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("SelectWheel chose %s, want an error", got.Filename)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not contain %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("SelectWheel: %v", err)
			}
			if got.Filename != tt.want {
				t.Errorf("SelectWheel = %s, want %s", got.Filename, tt.want)
			}
		})
	}
}

func TestNoWheelErrorSdist(t *testing.T) {
	p := Platform{PythonVersion: "3.12", Arch: "x86_64"}
	_, err := selectWheel("dkimpy", "1.1.8", nil, &Sdist{URL: "https://files.example.org/dkimpy-1.1.8.tar.gz"}, p.tagSet())
	var nw *NoWheelError
	if !errors.As(err, &nw) || nw.Package != "dkimpy" || nw.Sdist == "" {
		t.Fatalf("error = %#v, want a NoWheelError for dkimpy with its sdist", err)
	}
	for _, want := range []string{"dkimpy 1.1.8", "only a source distribution", "dkimpy-1.1.8.tar.gz", "does not build sdists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// Many incompatible wheels are listed up to a bound.
	var many []Wheel
	for i := 0; i < 40; i++ {
		many = append(many, wheelsNamed("x-1-cp312-cp312-win_amd64.whl")...)
	}
	_, err = selectWheel("x", "1", many, &Sdist{Path: "dist/x-1.tar.gz"}, p.tagSet())
	if err == nil || !strings.Contains(err.Error(), "… and 10 more") || !strings.Contains(err.Error(), "an sdist, which pipe does not build") {
		t.Errorf("error = %v", err)
	}
}
