package testenv

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/term"
)

// skips records the tests Need skipped, for Main's summary. It is the one
// piece of package state here: Need is called by the tests, the summary
// is printed after them, and nothing else connects the two.
type skips struct {
	mu    sync.Mutex
	tests map[component][]string
}

// component is what a skipped test needed, and how to get it.
type component struct{ what, fix string }

var skipped = &skips{tests: map[component][]string{}}

func (s *skips) add(test, what, fix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tests[component{what, fix}] = append(s.tests[component{what, fix}], test)
	// go test caches a passing package's result, and a cached run shows
	// nothing: reading a file changed this instant keeps this run out of
	// the cache, so every go test ./... shows the summary until the
	// component is installed.
	keepOutOfTestCache(s.summaryLocked(packagePath()))
}

// summary is the report of the skips, "" when there were none.
func (s *skips) summary(pkg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.summaryLocked(pkg)
}

func (s *skips) summaryLocked(pkg string) string {
	if len(s.tests) == 0 {
		return ""
	}
	comps := make([]component, 0, len(s.tests))
	n := 0
	for c, tests := range s.tests {
		comps = append(comps, c)
		n += len(tests)
	}
	sort.Slice(comps, func(i, j int) bool { return comps[i].what < comps[j].what })
	var b strings.Builder
	fmt.Fprintf(&b, "pipe tests: %s skipped %d test%s: components are missing (CI installs them with .ci/run and fails instead, PIPE_REQUIRE_ALL=1)\n", pkg, n, plural(n))
	for _, c := range comps {
		tests := s.tests[c]
		sort.Strings(tests)
		fmt.Fprintf(&b, "  %s (%s): %s\n", c.what, c.fix, strings.Join(tests, ", "))
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Main runs the tests (m.Run) and then, if Need skipped any, prints one
// summary of the missing components. go test ./... hides what a passing
// package's test binary prints, so the summary goes to the terminal
// (/dev/tty) as well as to stderr, which go test shows with -v or when the
// package fails. Use it as TestMain's body: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	report(os.Stderr, openTerminal, skipped.summary(packagePath()))
	return code
}

// report writes the summary to stderr and, when go test hides stderr
// (not -v, and stderr is not the terminal itself), to the terminal too.
func report(stderr *os.File, terminal func() io.WriteCloser, summary string) {
	if summary == "" {
		return
	}
	fmt.Fprint(stderr, summary)
	if verbose() || term.IsTerminal(int(stderr.Fd())) {
		return
	}
	if tty := terminal(); tty != nil {
		fmt.Fprint(tty, summary)
		tty.Close()
	}
}

// openTerminal opens the controlling terminal, nil when there is none
// (CI, an editor running the tests).
func openTerminal() io.WriteCloser {
	f, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return f
}

// verbose reports go test -v (or -json), which shows stderr anyway.
func verbose() bool {
	f := flag.Lookup("test.v")
	return f != nil && f.Value.String() != "false"
}

// packagePath names the package under test by its directory in the
// module, which is the test binary's working directory.
func packagePath() string {
	wd, err := os.Getwd()
	if err != nil {
		return "this package"
	}
	root, err := moduleRoot()
	if err != nil {
		return wd
	}
	rel, err := filepath.Rel(root, wd)
	if err != nil || rel == "." {
		return "./"
	}
	return "./" + filepath.ToSlash(rel)
}

// keepOutOfTestCache writes the summary so far to .pipe/test-skips/ in the
// checkout (pipe's own state directory, ignored by git) and reads it back:
// go test does not cache the result of a test binary that read a file of
// the module changed in the last two seconds.
func keepOutOfTestCache(summary string) {
	root, err := moduleRoot()
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", ".", "_").Replace(strings.TrimPrefix(packagePath(), "./"))
	p := filepath.Join(root, ".pipe", "test-skips", name+".txt")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return
	}
	if err := os.WriteFile(p, []byte(summary), 0o644); err != nil {
		return
	}
	if f, err := os.Open(p); err == nil {
		f.Close()
	}
}
