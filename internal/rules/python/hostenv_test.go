package python

import (
	"strings"
	"testing"
)

// TestResolveGroups: the dev group of the root adds its closure to the
// runtime one; an optional group the project lacks adds nothing; a
// required one is an error naming the groups it has.
func TestResolveGroups(t *testing.T) {
	l := readLock(t, "workspace")
	p := Platform{PythonVersion: "3.12", Arch: "x86_64"}
	runtime, err := l.Resolve("my-api", nil, p)
	if err != nil {
		t.Fatal(err)
	}
	withDev, err := l.ResolveGroups("my-api", nil, &GroupSpec{Names: []string{"dev"}}, p)
	if err != nil {
		t.Fatal(err)
	}
	rt, dv := plan(runtime), plan(withDev)
	for _, name := range []string{"pytest", "ruff"} {
		if _, ok := rt[name]; ok {
			t.Errorf("%s is in the runtime closure", name)
		}
		if _, ok := dv[name]; !ok {
			t.Errorf("%s is not in the closure with the dev group: %v", name, dv)
		}
	}
	for name, v := range rt {
		if dv[name] != v {
			t.Errorf("%s: %q with the dev group, %q without", name, dv[name], v)
		}
	}
	// Spelling does not matter, as for extras.
	if _, err := l.ResolveGroups("my-api", nil, &GroupSpec{Names: []string{"DEV"}}, p); err != nil {
		t.Errorf("group DEV: %v", err)
	}
	if _, err := l.ResolveGroups("my-api", nil, &GroupSpec{Names: []string{"lint"}, Optional: true}, p); err != nil {
		t.Errorf("an optional group the project lacks: %v", err)
	}
	_, err = l.ResolveGroups("my-api", nil, &GroupSpec{Names: []string{"lint"}}, p)
	if err == nil || !strings.Contains(err.Error(), `package my-api has no dependency group "lint" (it has dev)`) {
		t.Errorf("a required group the project lacks: %v", err)
	}
}

// TestHostPlatform: this machine takes plain linux_ wheels after every
// manylinux one, and the messages name the machine, not Lambda.
func TestHostPlatform(t *testing.T) {
	host := Platform{PythonVersion: "3.11.7", Arch: "x86_64", Glibc: [2]int{2, 36}, Host: true}
	tags := host.Tags()
	first, last := -1, -1
	for i, tag := range tags {
		if tag == (Tag{"cp311", "cp311", "linux_x86_64"}) {
			last = i
		}
		if tag == (Tag{"cp311", "cp311", "manylinux_2_17_x86_64"}) {
			first = i
		}
	}
	if first < 0 || last < 0 || last < first {
		t.Errorf("linux_x86_64 (%d) must come after manylinux_2_17 (%d)", last, first)
	}
	lambda := Platform{PythonVersion: "3.11", Arch: "x86_64"}
	for _, tag := range lambda.Tags() {
		if strings.HasPrefix(tag.Platform, "linux_") {
			t.Fatalf("Lambda accepts %s", tag)
		}
	}
	_, err := SelectWheel("muslonly", "1.0", []Wheel{{Filename: "muslonly-1.0-py3-none-musllinux_1_1_x86_64.whl"}, {Filename: "muslonly-1.0-cp311-cp311-manylinux_2_39_x86_64.whl"}}, host)
	for _, want := range []string{
		"no wheel for python3.11 on this machine (linux x86_64, glibc 2.36)",
		"muslonly-1.0-py3-none-musllinux_1_1_x86_64.whl (musllinux: this machine's Python uses glibc)",
		"muslonly-1.0-cp311-cp311-manylinux_2_39_x86_64.whl (needs glibc 2.39; this machine has 2.36)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
