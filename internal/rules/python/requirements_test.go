package python

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequirementsUVExport(t *testing.T) {
	const file = "testdata/requirements/uv-export.txt"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := ParseRequirements(data, file)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ name, version, marker, editable, url, extras string }
	var got []row
	for _, r := range reqs {
		got = append(got, row{r.Name, r.Version, r.Marker, r.Editable, r.URL, strings.Join(r.Extras, ",")})
	}
	want := []row{
		{editable: "./packages/common"},
		{editable: "./packages/my-api"},
		{name: "annotated-types", version: "0.7.0"},
		{name: "anyio", version: "4.4.0"},
		{name: "colorama", version: "0.4.6", marker: "sys_platform == 'win32'"},
		{name: "fastapi", version: "0.115.0", extras: "standard"},
		{name: "numpy", version: "1.26.4", marker: "python_full_version < '3.12'"},
		{name: "numpy", version: "2.1.0", marker: "python_full_version >= '3.12'"},
		{name: "Pydantic_Core", version: "2.23.4"},
		{name: "urlpkg", url: "https://example.com/dl/urlpkg-1.0-py3-none-any.whl#sha256=0bfe935e70c321c7ca3afc75ce0d0ca2f98b5422e008bb31c00c6d7f1f1c0ad6"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requirements:\n got %+v\nwant %+v", got, want)
	}
	lines := []int{3, 5, 6, 10, 13, 16, 19, 22, 26, 27}
	for i, r := range reqs {
		if i < len(lines) && r.Line != lines[i] {
			t.Errorf("%s%s: line %d, want %d", r.Name, r.Editable, r.Line, lines[i])
		}
		if r.Editable == "" && len(r.Hashes) == 0 {
			t.Errorf("%s has no hashes", r.Name)
		}
		for _, h := range r.Hashes {
			if !sha256HexRE().MatchString(h) {
				t.Errorf("%s: hash %q is not lower-case hex", r.Name, h)
			}
		}
	}
	if len(reqs[2].Hashes) != 2 || reqs[7].Hashes[1] != strings.ToLower(reqs[7].Hashes[1]) {
		t.Errorf("hashes = %v / %v", reqs[2].Hashes, reqs[7].Hashes)
	}
	// The markers are what the bundle will evaluate for its platform.
	env := Platform{PythonVersion: "3.12", Arch: "arm64"}.MarkerEnv()
	var kept []string
	for _, r := range reqs {
		if ok, err := EvalMarker(r.Marker, env); err != nil {
			t.Fatal(err)
		} else if ok && r.Name != "" {
			kept = append(kept, r.Name+"=="+r.Version)
		}
	}
	if want := "annotated-types==0.7.0 anyio==4.4.0 fastapi==0.115.0 numpy==2.1.0 Pydantic_Core==2.23.4 urlpkg=="; strings.Join(kept, " ") != want {
		t.Errorf("for 3.12 arm64: %s", strings.Join(kept, " "))
	}
}

func TestParseRequirementsShapes(t *testing.T) {
	const hash = "--hash=sha256:37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"
	tests := []struct {
		name    string
		text    string
		want    []Requirement
		wantErr string
	}{
		{name: "options are skipped", text: "--index-url https://pypi.org/simple\n--extra-index-url=https://mirror/simple\n-i https://x\n--no-index\n--require-hashes\n\n# comment\nsix==1.16.0 " + hash + "\n",
			want: []Requirement{{Name: "six", Version: "1.16.0", Hashes: []string{"37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"}, Line: 8}}},
		{name: "hash with a space and CRLF", text: "six==1.16.0 \\\r\n    --hash sha256:37DD54208DA7E1CD875388217D5E00EBD4179249F90FB72437E91A35459A0AD3\r\n",
			want: []Requirement{{Name: "six", Version: "1.16.0", Hashes: []string{"37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"}, Line: 1}}},
		{name: "sha512 next to sha256", text: "six===1.16.0 --hash=sha512:abc " + hash + "\n",
			want: []Requirement{{Name: "six", Version: "1.16.0", Hashes: []string{"37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"}, Line: 1}}},
		{name: "editable forms", text: "-e .\n--editable=./libs/a\n-e./libs/b\n../sibling\n",
			want: []Requirement{{Editable: ".", Line: 1}, {Editable: "./libs/a", Line: 2}, {Editable: "./libs/b", Line: 3}, {Editable: "../sibling", Line: 4}}},
		{name: "comment after requirement", text: "six==1.16.0 " + hash + " # pinned\n",
			want: []Requirement{{Name: "six", Version: "1.16.0", Hashes: []string{"37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"}, Line: 1}}},
		{name: "parenthesised version", text: "six (==1.16.0) " + hash + "\n",
			want: []Requirement{{Name: "six", Version: "1.16.0", Hashes: []string{"37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3"}, Line: 1}}},
		{name: "not pinned", text: "# header\nsix>=1.16.0 " + hash + "\n", wantErr: "reqs.txt:2: six>=1.16.0 is not pinned"},
		{name: "wildcard", text: "six==1.* " + hash + "\n", wantErr: "is not pinned"},
		{name: "no version", text: "six " + hash + "\n", wantErr: "six is not pinned"},
		{name: "no hash", text: "six==1.16.0\n", wantErr: "reqs.txt:1: six==1.16.0 has no --hash"},
		{name: "only sha512", text: "six==1.16.0 --hash=sha512:abc\n", wantErr: "has no --hash"},
		{name: "short hash", text: "six==1.16.0 --hash=sha256:abc\n", wantErr: "64 hex digits"},
		{name: "hash without algorithm", text: "six==1.16.0 --hash=abc\n", wantErr: "want sha256:<hex>"},
		{name: "dangling hash", text: "six==1.16.0\n    " + hash + "\n", wantErr: "reqs.txt:1: six==1.16.0 has no --hash"},
		{name: "hash line alone", text: "# x\n    " + hash + "\n", wantErr: "reqs.txt:2: --hash without a requirement"},
		{name: "nested file", text: "-r base.txt\n", wantErr: "-r includes another file"},
		{name: "empty editable", text: "-e=\n", wantErr: "reqs.txt:1: -e needs a value"},
		{name: "constraint", text: "--constraint c.txt\n", wantErr: "--constraint includes another file"},
		{name: "unknown option", text: "--frobnicate\n", wantErr: "option --frobnicate is not supported"},
		{name: "option value missing", text: "--index-url\n", wantErr: "--index-url needs one value"},
		{name: "flag with value", text: "--no-index yes\n", wantErr: "--no-index takes no value"},
		{name: "per-requirement option", text: "six==1.16.0 --global-option=x " + hash + "\n", wantErr: "option --global-option is not supported"},
		{name: "bad marker", text: "six==1.16.0 ; python_version >>> '3' " + hash + "\n", wantErr: "marker"},
		{name: "bad name", text: "!six==1\n", wantErr: "does not start with a distribution name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequirements([]byte(tt.text), "reqs.txt")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "reqs.txt:") {
					t.Fatalf("error = %v, want one naming reqs.txt:line and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseRequirement(t *testing.T) {
	tests := []struct {
		in   string
		want pep508Requirement
		err  string
	}{
		{in: "fastapi[standard]>=0.141.1,<1.0.0", want: pep508Requirement{Name: "fastapi", Extras: []string{"standard"}, Specifier: ">=0.141.1,<1.0.0"}},
		{in: "pwdlib[argon2, bcrypt] >=0.3.0", want: pep508Requirement{Name: "pwdlib", Extras: []string{"argon2", "bcrypt"}, Specifier: ">=0.3.0"}},
		{in: "tomli ; python_version < '3.11'", want: pep508Requirement{Name: "tomli", Marker: "python_version < '3.11'"}},
		{in: "name@https://x/y.whl;os_name=='posix'", want: pep508Requirement{Name: "name", URL: "https://x/y.whl;os_name=='posix'"}}, // PEP 508: ';' needs a space before it after a URL
		{in: "name @ https://x/y.whl extra", err: "unexpected \"extra\" after the URL"},
		{in: "name @ https://x/y.whl ; os_name == 'posix'", want: pep508Requirement{Name: "name", URL: "https://x/y.whl", Marker: "os_name == 'posix'"}},
		{in: "pip @ https://x/pip.whl#sha256=abc", want: pep508Requirement{Name: "pip", URL: "https://x/pip.whl#sha256=abc"}},
		{in: "A.B-C_D", want: pep508Requirement{Name: "A.B-C_D"}},
		{in: "x (>=1, <2)", want: pep508Requirement{Name: "x", Specifier: ">=1, <2"}},
		{in: "x[", err: "missing ]"},
		{in: "x[a b]", err: "not an extra name"},
		{in: "x @ ", err: "needs a URL"},
		{in: "x >= 1 ; sys_platform === ", err: "marker"},
		{in: "x (>=1", err: "missing )"},
		{in: "", err: "does not start with a distribution name"},
	}
	for _, tt := range tests {
		got, err := parseRequirement(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseRequirement(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseRequirement(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("parseRequirement(%q) = %+v, want %+v", tt.in, *got, tt.want)
		}
	}
}

func FuzzParseRequirements(f *testing.F) {
	data, err := os.ReadFile("testdata/requirements/uv-export.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("-e .\n--index-url https://x\nsix (==1.16.0) ; python_version >= '3' --hash sha256:37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3\n"))
	f.Add([]byte("a[b,c] @ https://x/a.whl ; os_name == 'posix' \\\n  --hash=sha256:37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3 # c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := ParseRequirements(data, "requirements.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "requirements.txt:") {
				t.Fatalf("error does not name the file and line: %v", err)
			}
			return
		}
		for _, r := range reqs {
			if r.Editable == "" && (r.Name == "" || len(r.Hashes) == 0 || r.Version == "" && r.URL == "") {
				t.Fatalf("incomplete requirement %+v", r)
			}
			if _, err := EvalMarker(r.Marker, Platform{PythonVersion: "3.12", Arch: "x86_64"}.MarkerEnv()); err != nil {
				t.Fatalf("requirement %+v has a marker that does not evaluate: %v", r, err)
			}
		}
	})
}
