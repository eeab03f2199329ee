// Package buildfile evaluates WORKSPACE.star, BUILD.star and loaded .star
// files with go.starlark.net and turns rule calls into engine targets.
//
// Evaluation is hermetic: the only ways a file sees the outside world are
// load() and glob(). Errors carry file:line:col relative to the workspace.
package buildfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.starlark.net/resolve"
	star "go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"github.com/pipebuild/pipe/internal/engine"
)

// fileOptions are the Starlark dialect of pipe files: sets and top-level
// if/for are allowed (users write small loops over services), while and
// recursion are not, so evaluation always terminates.
var fileOptions = &syntax.FileOptions{Set: true, TopLevelControl: true}

// Evaluator loads packages of one workspace. It is safe for concurrent use;
// loaded .star modules are evaluated once and shared.
type Evaluator struct {
	root     string
	registry *engine.Registry
	// Print receives print() output; nil discards it.
	Print func(pos engine.Pos, msg string)

	modMu   sync.Mutex
	modules map[string]*moduleEntry

	astMu sync.Mutex
	asts  map[string]*syntax.File

	ignores *ignoreCache

	realRootOnce sync.Once
	realRoot     string
}

// readSource reads a .star file of the workspace. One that resolves through
// a symbolic link to outside the workspace is refused: evaluation reads
// only the workspace, so the same commit evaluates alike everywhere.
func (ev *Evaluator) readSource(file string) ([]byte, error) {
	abs := filepath.Join(ev.root, filepath.FromSlash(file))
	ev.realRootOnce.Do(func() {
		ev.realRoot, _ = filepath.EvalSymlinks(ev.root)
	})
	if real, err := filepath.EvalSymlinks(abs); err == nil && ev.realRoot != "" {
		if r, err := filepath.Rel(ev.realRoot, real); err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return nil, fmt.Errorf("%s resolves to %s, outside the workspace, through a symbolic link: copy it into the workspace", file, real)
		}
	}
	return os.ReadFile(abs)
}

type moduleEntry struct {
	owner   *loadChain
	ready   chan struct{}
	globals star.StringDict
	err     error
	// loads is every .star file the module loaded, transitively.
	loads map[string]bool
}

// loadChain is the chain of modules one evaluation is loading; it finds load
// cycles, including across goroutines that wait on each other.
type loadChain struct {
	stack   []string
	waiting *moduleEntry
}

// NewEvaluator returns an evaluator for the workspace at root.
func NewEvaluator(root string, registry *engine.Registry) *Evaluator {
	return &Evaluator{
		root:     root,
		registry: registry,
		modules:  map[string]*moduleEntry{},
		asts:     map[string]*syntax.File{},
		ignores:  newIgnoreCache(root),
	}
}

// pkgBuilder collects the targets of the package being evaluated.
type pkgBuilder struct {
	pkg     *engine.Package
	globCtx *globContext
	loads   map[string]bool
	// seen are the directories and .gitignore files glob() read: with the
	// BUILD.star and loads they are everything the package's value depends on.
	seen map[string]bool
}

const (
	localPkg   = "pipe.pkg"
	localChain = "pipe.chain"
	// localLoads is the set a thread adds every loaded file to.
	localLoads = "pipe.loads"
)

// LoadPackage evaluates pkg's BUILD.star; cancelling ctx stops the
// evaluation with ctx's error.
func (ev *Evaluator) LoadPackage(ctx context.Context, pkg string) (*engine.Package, error) {
	p, _, err := ev.loadPackage(ctx, pkg)
	return p, err
}

// loadPackage evaluates pkg's BUILD.star and also returns every
// workspace-relative path the result depends on.
func (ev *Evaluator) loadPackage(ctx context.Context, pkg string) (*engine.Package, []string, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("load //%s: %w", pkg, err)
	}
	file := path.Join(pkg, engine.BuildFile)
	src, err := ev.readSource(file)
	if err != nil {
		return nil, nil, fmt.Errorf("load //%s: %w", pkg, err)
	}
	b := &pkgBuilder{
		pkg: &engine.Package{
			Path:    pkg,
			File:    file,
			Targets: map[string]*engine.Target{},
		},
		loads: map[string]bool{},
		seen:  map[string]bool{},
	}
	chain := &loadChain{stack: []string{file}}
	thread := ev.newThread(file, chain)
	thread.SetLocal(localPkg, b)
	thread.SetLocal(localLoads, b.loads)
	// Only the package's own thread is cancelled: a loaded module is
	// shared by every package, and must not keep an interrupt as its error.
	stop := context.AfterFunc(ctx, func() { thread.Cancel("interrupted") })
	defer stop()
	if _, err := ev.exec(thread, file, src, ev.buildPredeclared()); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, fmt.Errorf("load //%s: %w", pkg, cerr)
		}
		return nil, nil, err
	}
	for l := range b.loads {
		b.pkg.Loads = append(b.pkg.Loads, l)
	}
	sort.Strings(b.pkg.Loads)
	deps := append([]string{file}, b.pkg.Loads...)
	for d := range b.seen {
		deps = append(deps, d)
	}
	return b.pkg, deps, nil
}

func (ev *Evaluator) newThread(file string, chain *loadChain) *star.Thread {
	t := &star.Thread{
		Name: file,
		Load: ev.load,
		Print: func(t *star.Thread, msg string) {
			if ev.Print != nil {
				ev.Print(callerPos(t, 1), msg)
			}
		},
	}
	t.SetLocal(localChain, chain)
	// Loops at the top level are allowed, and range() can be large: a
	// bound on steps makes a runaway BUILD file an error, not a hang.
	t.SetMaxExecutionSteps(maxSteps)
	return t
}

// maxSteps bounds the Starlark steps one file's evaluation may take (a
// BUILD file of thousands of targets takes well under a million).
const maxSteps = 50_000_000

// exec parses and runs one file, keeping its syntax tree for error positions.
func (ev *Evaluator) exec(thread *star.Thread, file string, src []byte, predeclared star.StringDict) (star.StringDict, error) {
	f, err := fileOptions.Parse(file, src, 0)
	if err != nil {
		var se syntax.Error
		if errors.As(err, &se) {
			se.Pos = tokenStart(src, se)
			return nil, convertError(se)
		}
		return nil, convertError(err)
	}
	// Names a load() asks for are checked before the file is resolved:
	// otherwise a misspelt name is reported at its first use, with the
	// misspelling offered back as the fix.
	if err := ev.checkLoadedNames(thread, f); err != nil {
		return nil, err
	}
	prog, err := star.FileProgram(f, predeclared.Has)
	if err != nil {
		return nil, convertError(suggestPredeclared(err, predeclared))
	}
	ev.astMu.Lock()
	ev.asts[file] = f
	ev.astMu.Unlock()
	g, err := prog.Init(thread, predeclared)
	if err != nil {
		var ee *star.EvalError
		if thread.ExecutionSteps() >= maxSteps && errors.As(err, &ee) {
			// Starlark says only "too many steps"; say what to look for.
			ee.Msg += fmt.Sprintf(" (%d steps: a loop that does not end, or one far too large for a BUILD file; shorten it)", uint64(maxSteps))
		}
		return nil, convertError(err)
	}
	g.Freeze()
	return g, nil
}

// checkLoadedNames loads the modules f's load statements name and reports
// the first name one of them does not define, at the load statement. A
// module that fails to load is left to the evaluation, which reports it.
func (ev *Evaluator) checkLoadedNames(thread *star.Thread, f *syntax.File) error {
	for _, stmt := range f.Stmts {
		ls, ok := stmt.(*syntax.LoadStmt)
		if !ok {
			continue
		}
		globals, err := ev.load(thread, ls.ModuleName())
		if err != nil {
			continue
		}
		for _, from := range ls.From {
			if strings.HasPrefix(from.Name, "_") || globals.Has(from.Name) {
				continue // private names are refused by the evaluation itself
			}
			var exported []string
			for _, k := range globals.Keys() {
				if !strings.HasPrefix(k, "_") {
					exported = append(exported, k)
				}
			}
			hint := ""
			if d := engine.DidYouMean(from.Name, exported); d != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", d)
			} else if len(exported) > 0 {
				hint = fmt.Sprintf(" (it defines %s)", strings.Join(exported, ", "))
			}
			return engine.Errorf(toPos(from.NamePos), "load: name %s not found in %s%s", from.Name, ls.ModuleName(), hint)
		}
	}
	return nil
}

// undefinedRE matches the resolver's message for an unknown name that it
// found no suggestion for among the file's own names.
var undefinedRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^undefined: ([A-Za-z_][A-Za-z0-9_]*)$`) })

// suggestPredeclared adds a "did you mean" from the builtins (rules,
// glob, Starlark's own functions) to undefined-name errors: the resolver
// only suggests the file's own names, so a misspelt rule got no hint.
func suggestPredeclared(err error, predeclared star.StringDict) error {
	var rl resolve.ErrorList
	if !errors.As(err, &rl) {
		return err
	}
	var names []string
	names = append(names, predeclared.Keys()...)
	names = append(names, star.Universe.Keys()...)
	out := make(resolve.ErrorList, len(rl))
	for i, e := range rl {
		if m := undefinedRE().FindStringSubmatch(e.Msg); m != nil {
			if d := engine.DidYouMean(m[1], names); d != "" {
				e.Msg += fmt.Sprintf(" (did you mean %s?)", d)
			}
		}
		out[i] = e
	}
	return out
}

// tokenStart moves a "got X, want Y" syntax error from just after the
// offending token, where the parser reports it, to the token's first
// column, where an editor should put the cursor.
func tokenStart(src []byte, se syntax.Error) syntax.Position {
	pos := se.Pos
	if !strings.HasPrefix(se.Msg, "got ") || pos.Line < 1 || pos.Col < 2 {
		return pos
	}
	lines := strings.Split(string(src), "\n")
	if int(pos.Line) > len(lines) {
		return pos
	}
	line := lines[pos.Line-1]
	end := int(pos.Col) - 1 // byte index just past the token
	if end > len(line) {
		return pos
	}
	isIdent := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	start := end
	switch {
	case isIdent(line[end-1]):
		for start > 0 && isIdent(line[start-1]) {
			start--
		}
	case line[end-1] != ' ' && line[end-1] != '\t':
		start = end - 1
	}
	pos.Col = int32(start + 1)
	return pos
}

// convertError turns Starlark's errors into engine.BuildFileErrors.
func convertError(err error) error {
	var be *engine.BuildFileError
	if errors.As(err, &be) {
		return be
	}
	var me engine.MultiError
	if errors.As(err, &me) {
		return me
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return engine.Errorf(toPos(se.Pos), "syntax error: %s", se.Msg)
	}
	var ee *star.EvalError
	if errors.As(err, &ee) {
		// An error raised inside a builtin we wrote already carries a
		// position: keep it rather than Starlark's frame.
		var inner *engine.BuildFileError
		if errors.As(ee.Unwrap(), &inner) {
			return inner
		}
		pos := engine.Pos{}
		for i := len(ee.CallStack) - 1; i >= 0; i-- {
			if p := ee.CallStack[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
				pos = toPos(p)
				break
			}
		}
		msg := ee.Msg
		if len(ee.CallStack) > 2 {
			msg += "\n" + strings.TrimRight(ee.CallStack.String(), "\n")
		}
		return engine.Errorf(pos, "%s", msg)
	}
	var rl resolve.ErrorList
	if errors.As(err, &rl) {
		var out engine.MultiError
		for _, e := range rl {
			out = append(out, engine.Errorf(toPos(e.Pos), "%s", e.Msg))
		}
		if len(out) == 1 {
			return out[0]
		}
		return out
	}
	return err
}

func toPos(p syntax.Position) engine.Pos {
	return engine.Pos{File: p.Filename(), Line: int(p.Line), Col: int(p.Col)}
}

// callerPos is the position of the call depth frames up the stack.
func callerPos(t *star.Thread, depth int) engine.Pos {
	if t.CallStackDepth() <= depth {
		return engine.Pos{File: t.Name}
	}
	return toPos(t.CallFrame(depth).Pos)
}

// load implements load("//pkg:file.star", ...) with a shared module cache.
func (ev *Evaluator) load(thread *star.Thread, module string) (star.StringDict, error) {
	from := thread.Name
	file, err := ev.moduleFile(from, module)
	if err != nil {
		return nil, engine.Errorf(callerPos(thread, 0), "%v", err)
	}
	chain := thread.Local(localChain).(*loadChain)
	for i, f := range chain.stack {
		if f == file {
			cycle := append(append([]string(nil), chain.stack[i:]...), file)
			return nil, engine.Errorf(callerPos(thread, 0), "load cycle: %s", strings.Join(cycle, " -> "))
		}
	}

	ev.modMu.Lock()
	e, ok := ev.modules[file]
	ready := false
	if ok {
		select {
		case <-e.ready:
			// Evaluated already (the load check of this file, or another
			// package, got here first): nothing to wait for, no cycle.
			ready = true
		default:
		}
	}
	if ready {
		ev.modMu.Unlock()
	} else if ok {
		// Waiting on a module another goroutine is loading: if that one is
		// (transitively) waiting on us, it is a cycle.
		for w := e; w != nil && w.owner != nil; w = w.owner.waiting {
			if w.owner == chain {
				ev.modMu.Unlock()
				return nil, engine.Errorf(callerPos(thread, 0), "load cycle through %s", file)
			}
		}
		chain.waiting = e
		ev.modMu.Unlock()
		<-e.ready
		ev.modMu.Lock()
		chain.waiting = nil
		ev.modMu.Unlock()
	} else {
		e = &moduleEntry{owner: chain, ready: make(chan struct{}), loads: map[string]bool{}}
		ev.modules[file] = e
		ev.modMu.Unlock()
		e.globals, e.err = ev.execModule(file, chain, e.loads)
		close(e.ready)
	}
	if e.err != nil {
		return nil, e.err
	}
	// The loading file depends on this module and everything it loaded;
	// e.loads is final once e is ready.
	if set, ok := thread.Local(localLoads).(map[string]bool); ok {
		set[file] = true
		for f := range e.loads {
			set[f] = true
		}
	}
	return e.globals, nil
}

func (ev *Evaluator) execModule(file string, chain *loadChain, loads map[string]bool) (star.StringDict, error) {
	src, err := ev.readSource(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load %s: no such file in the workspace", file)
		}
		return nil, fmt.Errorf("load %s: %w", file, err)
	}
	chain.stack = append(chain.stack, file)
	defer func() { chain.stack = chain.stack[:len(chain.stack)-1] }()
	thread := ev.newThread(file, chain)
	thread.SetLocal(localLoads, loads)
	return ev.exec(thread, file, src, ev.buildPredeclared())
}

// moduleFile turns a load() label into a workspace-relative path.
func (ev *Evaluator) moduleFile(from, module string) (string, error) {
	fromPkg := path.Dir(from)
	if fromPkg == "." {
		fromPkg = ""
	}
	l, err := engine.ParseLabel(module, fromPkg)
	if err != nil {
		return "", fmt.Errorf("load(%q): %v", module, err)
	}
	if !strings.HasSuffix(l.Name, ".star") {
		return "", fmt.Errorf("load(%q): can only load .star files", module)
	}
	return path.Join(l.Pkg, l.Name), nil
}

// buildPredeclared is the set of builtins in every BUILD.star and .star file.
func (ev *Evaluator) buildPredeclared() star.StringDict {
	d := star.StringDict{
		"glob":         star.NewBuiltin("glob", ev.glob),
		"package_name": star.NewBuiltin("package_name", packageName),
		"struct":       star.NewBuiltin("struct", starlarkstruct.Make),
	}
	for _, name := range ev.registry.Names() {
		rule, _ := ev.registry.Lookup(name)
		d[name] = star.NewBuiltin(name, ev.ruleBuiltin(rule))
	}
	for _, name := range ev.registry.MacroNames() {
		m, _ := ev.registry.LookupMacro(name)
		d[name] = star.NewBuiltin(name, ev.macroBuiltin(m))
	}
	return d
}

func packageName(thread *star.Thread, fn *star.Builtin, args star.Tuple, kwargs []star.Tuple) (star.Value, error) {
	if err := star.UnpackPositionalArgs(fn.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	b, ok := thread.Local(localPkg).(*pkgBuilder)
	if !ok {
		return nil, fmt.Errorf("package_name() can only be called while a BUILD.star is evaluated, not at the top level of a .star file")
	}
	return star.String(b.pkg.Path), nil
}

// ast returns the parsed syntax tree of file, if it was evaluated.
func (ev *Evaluator) ast(file string) *syntax.File {
	ev.astMu.Lock()
	defer ev.astMu.Unlock()
	return ev.asts[file]
}

// callAt finds the call expression whose '(' is at pos.
func (ev *Evaluator) callAt(pos engine.Pos) *syntax.CallExpr {
	f := ev.ast(pos.File)
	if f == nil {
		return nil
	}
	var found *syntax.CallExpr
	syntax.Walk(f, func(n syntax.Node) bool {
		if found != nil {
			return false
		}
		if c, ok := n.(*syntax.CallExpr); ok && int(c.Lparen.Line) == pos.Line && int(c.Lparen.Col) == pos.Col {
			found = c
			return false
		}
		return true
	})
	return found
}

// argPos is the position of keyword argument name in the call at pos, or
// the call's own start when it cannot be found.
func (ev *Evaluator) argPos(pos engine.Pos, name string) engine.Pos {
	c := ev.callAt(pos)
	if c == nil {
		return pos
	}
	for _, a := range c.Args {
		if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
			if id, ok := b.X.(*syntax.Ident); ok && id.Name == name {
				start, _ := b.Span()
				return toPos(start)
			}
		}
	}
	start, _ := c.Span()
	return toPos(start)
}

// callStart is the position where the call at pos begins (its callee).
func (ev *Evaluator) callStart(pos engine.Pos) engine.Pos {
	if c := ev.callAt(pos); c != nil {
		start, _ := c.Span()
		return toPos(start)
	}
	return pos
}
