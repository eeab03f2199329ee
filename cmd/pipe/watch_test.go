package main

import (
	"testing"
)

func TestEditorTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".main.py.swp": true, "main.py~": true, ".#main.py": true, "#main.py#": true, "4913": true,
		"main.py___jb_tmp___": true, ".goutputstream-X1Y2": true, "main.py": false, "run.sh": false, "BUILD.star": false, "notes.tmp": true,
	} {
		if got := editorTemp(name); got != want {
			t.Errorf("editorTemp(%q) = %t, want %t", name, got, want)
		}
	}
}

func TestDescribeChanges(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "start"},
		{[]string{"a.py"}, "a.py changed"},
		{[]string{"a.py", "b.py", "c.py"}, "a.py, b.py, c.py changed"},
		{[]string{"a.py", "b.py", "c.py", "d.py"}, "a.py, b.py and 2 more changed"},
	} {
		if got := describeChanges(tc.in); got != tc.want {
			t.Errorf("describeChanges(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
