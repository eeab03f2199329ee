package cache

import (
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	for in, want := range map[string]Header{
		"x-buildbuddy-api-key=abc123":  {"x-buildbuddy-api-key", "abc123"},
		"Authorization=Basic Y2k6eA==": {"authorization", "Basic Y2k6eA=="},
		" x-team = pipe ":              {"x-team", "pipe"},
		"x-empty=":                     {"x-empty", ""},
		"x-eq=a=b":                     {"x-eq", "a=b"},
	} {
		got, err := ParseHeader(in)
		if err != nil || got != want {
			t.Errorf("ParseHeader(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, words := range map[string]string{
		"x-api-key: hunter2": "no '='",
		"=v":                 "empty name",
		"x key=v":            "letters, digits",
		"grpc-timeout=1S":    "gRPC's own",
		"x-trace-bin=AAAA":   "binary",
		"content-type=text":  "sets it itself",
		"x-nl=a\nb":          "printable ASCII",
		"x-utf=café":         "printable ASCII",
	} {
		_, err := ParseHeader(in)
		if err == nil || !strings.Contains(err.Error(), words) {
			t.Errorf("ParseHeader(%q) = %v; want an error saying %q", in, err, words)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseHeader(%q) repeats the value: %v", in, err)
		}
	}
}

func TestParseHeaderList(t *testing.T) {
	got, err := ParseHeaderList("x-a=1\r\n\n# comment\n  x-b=2  \n")
	if err != nil || len(got) != 2 || got[0] != (Header{"x-a", "1"}) || got[1] != (Header{"x-b", "2"}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseHeaderList("x-a=1\nbroken"); err == nil || !strings.HasPrefix(err.Error(), "line 2:") {
		t.Errorf("error %v does not name line 2", err)
	}
	merged := mergeHeaders([]Header{{"a", "ws"}, {"b", "ws"}}, []Header{{"b", "env"}}, []Header{{"a", "flag"}})
	if len(merged) != 2 || merged[0] != (Header{"a", "flag"}) || merged[1] != (Header{"b", "env"}) {
		t.Errorf("merged %+v", merged)
	}
}

func TestCheckInstanceName(t *testing.T) {
	for _, ok := range []string{"", "main", "team/main", "projects/p1/instances/default_instance"} {
		if err := CheckInstanceName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"/main", "main/", "a//b", "a/blobs/b", "uploads", "has space", "../x", "tab\t"} {
		if err := CheckInstanceName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseHeader: whatever is accepted is a header gRPC and HTTP can
// carry, and reads back the same.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"x-api-key=abc", "A=b=c", "=", "x=\x00", "grpc-x=1", " k = v ", "k\t=v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeader(s)
		if err != nil {
			return
		}
		if h.Name == "" || h.Name != strings.ToLower(h.Name) || strings.HasPrefix(h.Name, "grpc-") || strings.HasSuffix(h.Name, "-bin") {
			t.Fatalf("%q: accepted name %q", s, h.Name)
		}
		for _, c := range []byte(h.Name + h.Value) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("%q: accepted byte %#x", s, c)
			}
		}
		if h.Value != strings.TrimSpace(h.Value) {
			t.Fatalf("%q: value %q keeps surrounding space", s, h.Value)
		}
		again, err := ParseHeader(h.Name + "=" + h.Value)
		if err != nil || again != h {
			t.Fatalf("%q: %+v reads back as %+v, %v", s, h, again, err)
		}
	})
}

func FuzzParseHeaderList(f *testing.F) {
	f.Add("x-a=1\nx-b=2")
	f.Add("# c\n\n\r\nk=v\r")
	f.Fuzz(func(t *testing.T, s string) {
		hs, err := ParseHeaderList(s)
		if err != nil {
			return
		}
		for _, h := range hs {
			if strings.ContainsAny(h.Name+h.Value, "\r\n") {
				t.Fatalf("%q: header %+v holds a line break", s, h)
			}
		}
	})
}

func FuzzCheckInstanceName(f *testing.F) {
	for _, s := range []string{"main", "a/b", "a//b", "blobs", "x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckInstanceName(s) != nil || s == "" {
			return
		}
		// An accepted name keeps resource names parseable: no keyword
		// segment, no empty segment, nothing a path would normalise.
		for _, seg := range strings.Split(s, "/") {
			if seg == "" || reservedSegments[seg] || seg == "." || seg == ".." || strings.ContainsAny(seg, " \t\n") {
				t.Fatalf("%q accepted", s)
			}
		}
	})
}
