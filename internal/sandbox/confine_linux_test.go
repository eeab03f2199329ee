package sandbox

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadsAndWritesOutsideScratch: a path of Reads in the hidden
// workspace and one under /tmp stay visible and read-only at their own
// paths, a path of Writes is writable and what the command writes there
// stays, and the rest of the workspace is still hidden.
func TestReadsAndWritesOutsideScratch(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	// The workspace's .venv (under the hidden workspace) and an
	// environment in a cache under /tmp (t.TempDir).
	venv := filepath.Join(l.ws, ".venv")
	cache := t.TempDir()
	env := filepath.Join(cache, "trees", "env")
	plugins := filepath.Join(cache, "plugins")
	for _, d := range []string{venv, env, plugins} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(venv, "pyvenv.cfg"), []byte("venv\n"), 0o644)
	os.WriteFile(filepath.Join(env, "site.txt"), []byte("site\n"), 0o644)
	s := l.spec(strings.Join([]string{
		"cat " + venv + "/pyvenv.cfg " + env + "/site.txt",
		"{ echo x > " + venv + "/new 2>/dev/null && echo wrote-venv; } || echo refused-venv",
		"{ echo x > " + env + "/new 2>/dev/null && echo wrote-env; } || echo refused-env",
		"{ cat " + l.secret + " 2>/dev/null && echo read-secret; } || echo hidden-secret",
		"echo plugin > " + plugins + "/p.txt && echo wrote-plugins",
	}, "; "))
	// A missing read is left out, not a failure.
	s.Reads = []string{venv, env, "/usr/bin", filepath.Join(l.ws, "missing")}
	s.Writes = []string{plugins}
	out, err := run(t, s)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"venv\nsite\n", "refused-venv", "refused-env", "hidden-secret", "wrote-plugins"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(plugins, "p.txt")); err != nil || string(b) != "plugin\n" {
		t.Errorf("the write to the writable directory did not reach it: %q, %v", b, err)
	}
	for _, p := range []string{filepath.Join(venv, "new"), filepath.Join(env, "new")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}

// TestReadOfScratchParentRefused: a read that would show the scratch
// directory's parent (the whole workspace) is a setup error, not a
// silent hole in the sandbox.
func TestReadOfScratchParentRefused(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	s := l.spec("cat " + l.secret)
	s.Reads = []string{l.ws}
	_, err := run(t, s)
	var se *SetupError
	if err == nil || !asSetup(err, &se) || !strings.Contains(se.Msg, "holds the scratch directory") {
		t.Errorf("got %v, want a setup error naming the scratch directory", err)
	}
}

func asSetup(err error, se **SetupError) bool {
	e, ok := err.(*SetupError)
	if ok {
		*se = e
	}
	return ok
}

// BenchmarkConfine is the cost of a program of an in-process step
// (pytest, node) through a build's helper: as it ran before, in a PID
// namespace with the host's file system and network (runner-pid), and
// confined (isolated, no network, its interpreter and environment shown
// from a cache under /tmp and a .venv in the workspace, a plugin cache
// writable).
func BenchmarkConfine(b *testing.B) {
	if err := Probe(context.Background()); err != nil {
		b.Skip(err)
	}
	ws := b.TempDir()
	cache := b.TempDir()
	scratch := filepath.Join(ws, ".pipe", "sandbox", "1")
	reads := []string{filepath.Join(ws, ".venv"), filepath.Join(cache, "interp"), filepath.Join(cache, "trees", "env")}
	writes := []string{filepath.Join(cache, "plugins")}
	for _, d := range append(append([]string{scratch}, reads...), writes...) {
		os.MkdirAll(d, 0o755)
	}
	base := Spec{Argv: []string{"/bin/true"}, Dir: scratch, Hide: ws, Scratch: scratch}
	for _, c := range []struct {
		name string
		spec Spec
	}{
		{"runner-pid", base},
		{"runner-confined", func() Spec {
			s := base
			s.Isolate, s.Reads, s.Writes = true, reads, writes
			return s
		}()},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Runner{}
			defer r.Close()
			for b.Loop() {
				if err := r.Run(context.Background(), c.spec, io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReadsAndWritesUndoneForNextCommand: a reused supervisor shows one
// command's Reads and Writes to that command only; the next one, in the
// same supervisor, finds the read hidden again and the writable
// directory read-only.
func TestReadsAndWritesUndoneForNextCommand(t *testing.T) {
	needNamespaces(t)
	l := newLayout(t)
	shown := filepath.Join(l.ws, "tools", "env")
	// Outside /tmp, whose private tmpfs would take a mount under it
	// away with it anyway.
	base, err := os.MkdirTemp("/var/tmp", "pipe-sandbox-writes-")
	if err != nil {
		t.Fatalf("a directory outside /tmp to write to: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	writable := filepath.Join(base, "plugins")
	for _, d := range []string{shown, writable} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(shown, "site.txt"), []byte("site\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runner{}
	defer r.Close()
	first := l.spec(`echo $$ > dist/pkg/pid; cat ` + shown + `/site.txt && echo first > ` + writable + `/a.txt`)
	first.Reads, first.Writes = []string{shown}, []string{writable}
	var out syncBuffer
	if err := r.Run(context.Background(), first, &out, &out); err != nil {
		t.Fatalf("first command: %v\n%s", err, out.String())
	}
	if b, err := os.ReadFile(filepath.Join(writable, "a.txt")); err != nil || string(b) != "first\n" {
		t.Fatalf("the first command's write did not arrive: %q, %v\n%s", b, err, out.String())
	}
	pid1, _ := os.ReadFile(filepath.Join(l.scratch, "dist", "pkg", "pid"))
	idleSupervisors(r, first)
	second := l.spec(`echo $$; cat ` + shown + `/site.txt || echo no-read; echo second > ` + writable + `/b.txt || echo no-write`)
	out = syncBuffer{}
	if err := r.Run(context.Background(), second, &out, &out); err != nil {
		t.Fatalf("second command: %v\n%s", err, out.String())
	}
	got := out.String()
	checkSameSupervisor(t, pid1, got)
	if strings.Contains(got, "\nsite\n") || !strings.Contains(got, "no-read") || !strings.Contains(got, "no-write") {
		t.Errorf("the second command sees what only the first was shown:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(writable, "b.txt")); err == nil {
		t.Error("the second command wrote to the first one's writable directory")
	}
}
