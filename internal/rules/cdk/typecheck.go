package cdk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/engine"
)

type typecheckSpec struct {
	tools *toolchain
	pkg   string
	out   *engine.File
}

// tscPosRE matches tsc's non-pretty diagnostics: "src/main.ts(12,5): error TS2322: ...".
var tscPosRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^([^\s(][^(\n]*)\((\d+),(\d+)\): `) })

// run type-checks the staged sources: tsc sees exactly the declared inputs,
// so a file missing from srcs is an error here too.
func (s *typecheckSpec) run(ctx context.Context, ec *engine.ExecContext) error {
	if err := s.tools.checkNode(); err != nil {
		return err
	}
	tsc := filepath.Join(s.tools.NodeModules, ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil || s.tools.TypeScript == "" {
		return fmt.Errorf("typecheck = True, but TypeScript is not installed (%s does not exist): run npm install --save-dev typescript, or drop typecheck", tsc)
	}
	// tsc resolves aws-cdk-lib's types from node_modules directories above
	// the project, as node does.
	if _, err := os.Lstat(filepath.Join(ec.Dir, "node_modules")); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink(s.tools.NodeModules, filepath.Join(ec.Dir, "node_modules")); err != nil {
			return err
		}
	}
	tmp := filepath.Join(ec.Dir, ".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	env := map[string]string{"PATH": ec.Workspace().Settings.Path, "HOME": tmp, "TMPDIR": tmp}
	dir := filepath.Join(ec.Dir, filepath.FromSlash(s.pkg))
	stdout, stderr, err := runNode(ctx, ec, s.tools, dir, env, engine.Confinement{}, tsc, "--noEmit", "-p", ".", "--pretty", "false")
	// tsc names files relative to the project directory; the user wants
	// workspace paths.
	out := tscPosRE().ReplaceAllStringFunc(stdout+stderr, func(m string) string {
		sub := tscPosRE().FindStringSubmatch(m)
		return fmt.Sprintf("%s:%s:%s: ", path.Join(s.pkg, sub[1]), sub[2], sub[3])
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ec.Stderr.Write([]byte(out))
		n := strings.Count(out, ": error TS")
		first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		switch n {
		case 0:
			return fmt.Errorf("tsc failed: %s", first)
		case 1:
			return fmt.Errorf("type error: %s", first)
		}
		return fmt.Errorf("%d type errors; the first: %s", n, first)
	}
	return os.WriteFile(ec.Output(s.out), []byte(fmt.Sprintf("typescript %s: no type errors\n", s.tools.TypeScript)), 0o644)
}
