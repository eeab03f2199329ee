package python

import (
	"strings"
	"testing"
)

func TestEvalMarker(t *testing.T) {
	x8612 := Platform{PythonVersion: "3.12", Arch: "x86_64"}.MarkerEnv()
	arm311 := Platform{PythonVersion: "3.11", Arch: "arm64"}.MarkerEnv()
	full := Platform{PythonVersion: "3.12.4", Arch: "x86_64"}.MarkerEnv()
	withExtra := Platform{PythonVersion: "3.12", Arch: "x86_64"}.MarkerEnv()
	withExtra["extra"] = "Binary_Extra"

	tests := []struct {
		marker string
		env    MarkerEnv
		want   bool
	}{
		{"", x8612, true},
		{"   ", x8612, true},
		{"sys_platform == 'linux'", x8612, true},
		{"sys_platform == \"win32\"", x8612, false},
		{"'linux' == sys_platform", x8612, true},
		{"platform_system == 'Linux' and os_name == 'posix'", x8612, true},
		{"platform_machine == 'x86_64'", x8612, true},
		{"platform_machine == 'aarch64'", arm311, true},
		{"platform_machine == 'arm64'", arm311, false},
		{"implementation_name == 'cpython' and platform_python_implementation == 'CPython'", x8612, true},
		{"implementation_name != 'pypy'", x8612, true},
		{"python_version >= '3.12'", x8612, true},
		{"python_version >= '3.12'", arm311, false},
		{"python_version < '3.12'", arm311, true},
		{"python_version > '3.8'", x8612, true},
		{"python_version == '3.1'", x8612, false},   // 3.12 is not 3.1, as versions
		{"python_version == '3.12.0'", x8612, true}, // trailing zeros are equal
		{"python_version ~= '3.10'", x8612, true},
		{"python_version ~= '3.10.0'", x8612, false},
		{"python_version == '3.*'", x8612, true},
		{"python_version != '3.12.*'", x8612, false},
		{"python_full_version >= '3.12.1'", x8612, false},
		{"python_full_version >= '3.12.1'", full, true},
		{"python_full_version == '3.12.0'", x8612, true},
		{"python_full_version < '3.13'", full, true},
		{"implementation_version >= '3.12'", x8612, true},
		{"python_version in '3.11 3.12'", x8612, true},
		{"python_version not in '3.10 3.11'", x8612, true},
		{"'linux' in sys_platform", x8612, true},
		{"'86' in platform_machine", x8612, true},
		{"platform_machine not in 'x86_64 AMD64'", x8612, false},
		{"sys_platform == 'win32' or sys_platform == 'linux'", x8612, true},
		{"sys_platform == 'win32' or sys_platform == 'darwin'", x8612, false},
		{"(sys_platform == 'win32' or sys_platform == 'linux') and python_version >= '3.12'", x8612, true},
		{"sys_platform == 'win32' or sys_platform == 'linux' and python_version >= '3.13'", x8612, false}, // and binds tighter
		{"(sys_platform == 'win32' or sys_platform == 'linux') and python_version >= '3.13'", x8612, false},
		{"((((python_version >= '3.9'))))", x8612, true},
		{"platform_machine == 'AMD64' or platform_machine == 'WIN32' or platform_machine == 'aarch64' or platform_machine == 'amd64' or platform_machine == 'ppc64le' or platform_machine == 'win32' or platform_machine == 'x86_64'", arm311, true},
		{"platform_python_implementation != 'PyPy' and sys_platform != 'cygwin' and sys_platform != 'win32'", x8612, true},
		{"os.name == 'posix' and sys.platform == 'linux'", x8612, true}, // PEP 345 spellings
		{"platform.python_implementation == 'CPython'", x8612, true},    // PEP 345 spellings
		{"platform_release >= '5.10'", x8612, false},                    // unknown on Lambda: ""
		{"sys_platform < 'm'", x8612, true},                             // string comparison
		{"extra == 'binary'", x8612, false},
		{"extra != 'binary'", x8612, true},
		{"extra == 'binary-extra'", withExtra, true}, // PEP 685 normalisation
		{"extra == 'Binary.Extra'", withExtra, true}, // PEP 685 normalisation
		{"extra == \"binary_extra\" and python_version >= '3.12'", withExtra, true},
		{"extra == 'other'", withExtra, false},
	}
	for _, tt := range tests {
		got, err := EvalMarker(tt.marker, tt.env)
		if err != nil {
			t.Errorf("EvalMarker(%q): %v", tt.marker, err)
			continue
		}
		if got != tt.want {
			t.Errorf("EvalMarker(%q) with python %s %s = %v, want %v", tt.marker, tt.env["python_full_version"], tt.env["platform_machine"], got, tt.want)
		}
	}
}

func TestEvalMarkerErrors(t *testing.T) {
	env := Platform{PythonVersion: "3.12", Arch: "x86_64"}.MarkerEnv()
	tests := []struct{ marker, wantErr string }{
		{"python_version >= ", "expected a variable or a quoted string"},
		{"python_version", "expected a comparison operator"},
		{"python_version >> '3'", "unknown operator"},
		{"sys_platform == 'linux", "unterminated string"},
		{"(sys_platform == 'linux'", "missing )"},
		{"sys_platform == 'linux')", "unexpected )"},
		{"sys_platform == 'linux' and", "unexpected end"},
		{"platform == 'linux'", "unknown marker variable \"platform\""},
		{"'a' == 'b'", "compares two strings"},
		{"sys_platform ~= 'linux'", "needs a version on the right"},
		{"sys_platform = 'linux'", "unknown operator"},
		{"sys_platform == 'linux' xor os_name == 'posix'", "unexpected xor"},
		{"extra < 'x'", "only ==, != and in"},
		{"extra == os_name", "extra compared with another variable"},
		{"'1.0' ~= sys_platform", "needs a version on the right"},
		{strings.Repeat("(", 100) + "os_name == 'posix'" + strings.Repeat(")", 100), "nested deeper"},
	}
	for _, tt := range tests {
		_, err := EvalMarker(tt.marker, env)
		if err == nil {
			t.Errorf("EvalMarker(%q): no error, want one containing %q", tt.marker, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("EvalMarker(%q) = %v, want it to contain %q", tt.marker, err, tt.wantErr)
		}
	}
}

func TestMarkerEnv(t *testing.T) {
	env := Platform{PythonVersion: "3.12", Arch: "arm64"}.MarkerEnv()
	want := map[string]string{
		"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
		"platform_machine": "aarch64", "python_version": "3.12", "python_full_version": "3.12.0",
		"implementation_name": "cpython", "platform_python_implementation": "CPython",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("MarkerEnv()[%s] = %q, want %q", k, env[k], v)
		}
	}
	env = Platform{PythonVersion: "3.11.9", Arch: "x86_64"}.MarkerEnv()
	if env["python_version"] != "3.11" || env["python_full_version"] != "3.11.9" || env["platform_machine"] != "x86_64" {
		t.Errorf("MarkerEnv for 3.11.9 x86_64 = %v", env)
	}
}

func TestVersionOrder(t *testing.T) {
	// Each version is strictly greater than the one before (PEP 440's
	// own example ordering, plus local versions).
	order := []string{
		"0.9", "1.0.dev0", "1.0.dev1", "1.0a1.dev0", "1.0a1", "1.0a2", "1.0b1", "1.0rc1",
		"1.0", "1.0+abc", "1.0+abc.5", "1.0+5", "1.0.post1.dev0", "1.0.post1", "1.0.1", "1.1", "1!0.1",
	}
	for i := 1; i < len(order); i++ {
		a, err := parsePEPVersion(order[i-1])
		if err != nil {
			t.Fatal(err)
		}
		b, err := parsePEPVersion(order[i])
		if err != nil {
			t.Fatal(err)
		}
		if compareVersions(a, b) >= 0 || compareVersions(b, a) <= 0 {
			t.Errorf("want %s < %s", order[i-1], order[i])
		}
	}
	equal := [][2]string{{"1.0", "1.0.0"}, {"1.0-1", "1.0.post1"}, {"1.0alpha1", "1.0a1"}, {"1.0c1", "1.0rc1"}, {"v1.0", "1.0"}, {"1.0.RC.1", "1.0rc1"}, {"1.0-dev", "1.0.dev0"}}
	for _, e := range equal {
		if !sameVersion(e[0], e[1]) {
			t.Errorf("want %s == %s", e[0], e[1])
		}
	}
	for _, bad := range []string{"", "abc", "1.0-", "1..0", "1.0+", "99999999999999999999999"} {
		if _, err := parsePEPVersion(bad); err == nil {
			t.Errorf("parsePEPVersion(%q): no error", bad)
		}
	}
}

func TestSpecifiers(t *testing.T) {
	tests := []struct {
		spec, version string
		want          bool
	}{
		{">=3.11", "3.12.0", true},
		{">=3.11, <4.0", "3.14.0", true},
		{">=3.14, <4.0", "3.12.0", false},
		{"<3.0", "3.0rc1", false}, // a pre-release of the bound is excluded
		{"<3.0rc2", "3.0rc1", true},
		{">3.0", "3.0.post1", false}, // so is a post-release of the bound
		{">3.0.post0", "3.0.post1", true},
		{">3.0", "3.0+local", false},
		{"==1.0", "1.0+local", true},
		{"==1.0+local", "1.0", false},
		{"!=1.0", "1.0.0", false},
		{"~=2.2", "2.9", true},
		{"~=2.2", "3.0", false},
		{"~=2.2.1", "2.3", false},
		{"==2.*", "2.0.1", true},
		{"==2.0.*", "2.1", false},
		{"===1.0", "1.0", true},
		{"===1.0", "1.0.0", false},
		{">=0.115,<0.116", "0.115.0", true},
		{">1.0", "not a version", false},
	}
	for _, tt := range tests {
		set, err := parseSpecifierSet(tt.spec)
		if err != nil {
			t.Errorf("parseSpecifierSet(%q): %v", tt.spec, err)
			continue
		}
		if got := set.contains(tt.version); got != tt.want {
			t.Errorf("%q contains %q = %v, want %v", tt.spec, tt.version, got, tt.want)
		}
	}
	for _, bad := range []string{"3.12", ">=", "~=3", "<1.0+local", "==1.0.*+x", ">=3.11,", "=> 3"} {
		if _, err := parseSpecifierSet(bad); err == nil {
			t.Errorf("parseSpecifierSet(%q): no error", bad)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Pydantic_Core": "pydantic-core", "typing.extensions": "typing-extensions",
		"a-_.b": "a-b", "ABC": "abc", "zope.interface": "zope-interface", "x__": "x-",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzEvalMarker(f *testing.F) {
	for _, s := range []string{
		"", "sys_platform == 'linux'", "python_version >= '3.12' and (extra == 'x' or os_name != 'nt')",
		"python_full_version >= '3.12.1'", "'a' in platform_machine", "platform_machine not in 'x86_64 AMD64'",
		"python_version ~= '3.10'", "python_version == '3.*'", "extra == 'extra-6-my-api-cpu' or extra != 'extra-6-my-api-gpu'",
		"((os_name == 'posix'))", "platform_release === 'x'", "implementation_version > '3.12.0rc1+local.1'",
	} {
		f.Add(s)
	}
	env := Platform{PythonVersion: "3.12", Arch: "x86_64"}.MarkerEnv()
	env["extra"] = "cpu"
	f.Fuzz(func(t *testing.T, marker string) {
		got, err := EvalMarker(marker, env)
		if err != nil || strings.TrimSpace(marker) == "" {
			return
		}
		// A marker that evaluates must evaluate the same again, and its
		// parenthesised form must agree with it.
		again, err := EvalMarker("("+marker+")", env)
		if err != nil && strings.Contains(err.Error(), "nested deeper") {
			return
		}
		if err != nil || again != got {
			t.Fatalf("EvalMarker(%q) = %v, but with parentheses %v, %v", marker, got, again, err)
		}
	})
}
