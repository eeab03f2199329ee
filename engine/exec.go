package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/cache"
)

// Status is how an action ended.
type Status string

const (
	StatusExecuted Status = "executed"
	StatusCached   Status = "cached"
	StatusFailed   Status = "failed"
	// StatusSkipped: not run because a dependency failed or the build was
	// interrupted.
	StatusSkipped Status = "skipped"
)

// ActionEvent reports one finished action.
type ActionEvent struct {
	Action *Action
	Key    cache.Digest
	Status Status
	Start  time.Time
	End    time.Time
	// Restored counts outputs copied back from the cache because they were
	// missing or edited in the workspace.
	Restored int
	// Output is what the action printed (stdout then stderr), possibly cut.
	Output string
	Err    error
	// Warning is something the user should know though the action
	// succeeded, such as a corrupt cache entry that was replaced.
	Warning string
	// Explain says why the action ran (with Executor.Explain).
	Explain string
	Worker  int
}

// Reporter receives progress from the executor. Calls may come from many
// goroutines at once.
type Reporter interface {
	ActionStarted(a *Action, worker int)
	ActionFinished(ev *ActionEvent)
}

// ProgressReporter is a Reporter that also shows progress within an
// action (ExecContext.Progress).
type ProgressReporter interface {
	ActionProgress(a *Action, msg string)
}

// Summary counts a build's actions.
type Summary struct {
	Total, Executed, Cached, Failed, Skipped int
	Duration                                 time.Duration
}

// Executor runs actions against the cache.
type Executor struct {
	WS          *Workspace
	Cache       *cache.Cache
	Digests     *FileDigests
	Jobs        int
	KeepGoing   bool
	Reporter    Reporter
	PipeVersion string
	// Hooks for a remote cache, set by the CLI; nil means local only.
	Remote RemoteCache
	// Graph, when set, lets the executor remove files that an executed
	// target no longer declares from its dist/ directory.
	Graph *ActionGraph
	// Explain says, for each executed action, what differs from the key
	// recorded when it last executed (ActionEvent.Explain).
	Explain bool
}

// RemoteCache is the executor's view of a shared cache: look up results
// by action key, fetch their blobs into the local cache, and upload.
type RemoteCache interface {
	// Fetch returns a result for key whose blobs are now in the local cache.
	Fetch(ctx context.Context, key cache.Digest) (*cache.ActionResult, bool)
	// Upload stores a result and its blobs (if uploads are enabled).
	Upload(ctx context.Context, key cache.Digest, r *cache.ActionResult)
}

// BuildFailedError reports actions that failed; the CLI exits with 1.
type BuildFailedError struct {
	Failed []*ActionEvent
}

func (e *BuildFailedError) Error() string {
	if len(e.Failed) == 1 {
		return fmt.Sprintf("%s failed: %v", e.Failed[0].Action.Owner, e.Failed[0].Err)
	}
	return fmt.Sprintf("%d actions failed", len(e.Failed))
}

type actionState struct {
	a          *Action
	pending    int32
	dependents []*actionState
	// digests of the action's outputs once it finished; dirs hold a tree
	// digest.
	outDigests map[string]cache.Digest
	result     *cache.ActionResult
	ok         bool
	depFailed  atomic.Bool
}

// Execute runs actions (a dependency-closed list) and returns counts. The
// error is a *BuildFailedError when actions failed, ctx.Err() when the
// build was interrupted.
func (e *Executor) Execute(ctx context.Context, actions []*Action) (Summary, error) {
	start := time.Now()
	jobs := e.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	states := make(map[*Action]*actionState, len(actions))
	for _, a := range actions {
		states[a] = &actionState{a: a}
	}
	var roots []*actionState
	for _, a := range actions {
		s := states[a]
		for _, d := range a.deps {
			ds, ok := states[d]
			if !ok {
				return Summary{}, fmt.Errorf("internal error: %s depends on %s, which is not scheduled", a.Owner, d.Owner)
			}
			ds.dependents = append(ds.dependents, s)
			s.pending++
		}
		if s.pending == 0 {
			roots = append(roots, s)
		}
	}
	os.RemoveAll(filepath.Join(e.WS.StateDir(), "sandbox"))

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var (
		mu       sync.Mutex
		summary  = Summary{Total: len(actions)}
		failed   []*ActionEvent
		stopped  atomic.Bool
		wg       sync.WaitGroup
		checkSem = make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
		execSem  = make(chan int, jobs)
	)
	for i := 1; i <= jobs; i++ {
		execSem <- i
	}
	var schedule func(s *actionState)
	var finish func(s *actionState, ev *ActionEvent)
	skipped := func(s *actionState) {
		now := time.Now()
		finish(s, &ActionEvent{Action: s.a, Status: StatusSkipped, Start: now, End: now})
	}
	finish = func(s *actionState, ev *ActionEvent) {
		mu.Lock()
		switch ev.Status {
		case StatusExecuted:
			summary.Executed++
		case StatusCached:
			summary.Cached++
		case StatusFailed:
			summary.Failed++
			failed = append(failed, ev)
		case StatusSkipped:
			summary.Skipped++
		}
		mu.Unlock()
		if e.Reporter != nil {
			e.Reporter.ActionFinished(ev)
		}
		if ev.Status == StatusFailed && !e.KeepGoing {
			stopped.Store(true)
		}
		for _, d := range s.dependents {
			if !s.ok {
				d.depFailed.Store(true)
			}
			// The last dependency to finish decides whether d runs.
			if atomic.AddInt32(&d.pending, -1) == 0 {
				if d.depFailed.Load() {
					skipped(d)
				} else {
					schedule(d)
				}
			}
		}
	}
	schedule = func(s *actionState) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stopped.Load() || runCtx.Err() != nil {
				skipped(s)
				return
			}
			finish(s, e.runOne(runCtx, s, states, checkSem, execSem))
		}()
	}
	for _, r := range roots {
		schedule(r)
	}
	wg.Wait()
	summary.Duration = time.Since(start)
	if err := ctx.Err(); err != nil {
		return summary, err
	}
	if len(failed) > 0 {
		sort.Slice(failed, func(i, j int) bool { return failed[i].Action.Owner.Less(failed[j].Action.Owner) })
		return summary, &BuildFailedError{Failed: failed}
	}
	return summary, nil
}

func (e *Executor) runOne(ctx context.Context, s *actionState, states map[*Action]*actionState, checkSem chan struct{}, execSem chan int) *ActionEvent {
	a := s.a
	ev := &ActionEvent{Action: a, Start: time.Now()}
	fail := func(err error) *ActionEvent {
		ev.Status, ev.Err, ev.End = StatusFailed, err, time.Now()
		return ev
	}
	checkSem <- struct{}{}
	key, parts, err := e.actionKey(a, states)
	if err != nil {
		<-checkSem
		return fail(err)
	}
	ev.Key = key
	hit := func(r *cache.ActionResult, restored int) *ActionEvent {
		if restored > 0 && e.Graph != nil {
			e.pruneStale(a.Owner)
		}
		s.result, s.outDigests, s.ok = r, resultDigests(r), true
		ev.Status, ev.Restored, ev.End = StatusCached, restored, time.Now()
		return ev
	}
	if r, err := e.Cache.GetAC(key); err == nil {
		restored, err := e.materializeCached(r)
		if err == nil {
			<-checkSem
			return hit(r, restored)
		}
		if errors.Is(err, cache.ErrCorrupt) {
			ev.Warning = fmt.Sprintf("the cache held a corrupt copy of an output (%v); it was deleted and the action runs again", err)
		}
	}
	<-checkSem
	if e.Remote != nil {
		if r, ok := e.Remote.Fetch(ctx, key); ok {
			if restored, err := e.materializeCached(r); err == nil {
				if err := e.Cache.PutAC(key, r); err == nil {
					return hit(r, restored)
				}
			}
		}
	}
	var worker int
	select {
	case worker = <-execSem:
	case <-ctx.Done():
		ev.Status, ev.End = StatusSkipped, time.Now()
		return ev
	}
	defer func() { execSem <- worker }()
	ev.Worker = worker
	if e.Explain {
		ev.Explain = e.explain(a, parts)
	}
	ev.Start = time.Now()
	if e.Reporter != nil {
		e.Reporter.ActionStarted(a, worker)
	}
	r, out, err := e.execute(ctx, a)
	ev.Output = out
	if err != nil {
		if ctx.Err() != nil {
			ev.Status, ev.Err, ev.End = StatusSkipped, ctx.Err(), time.Now()
			return ev
		}
		return fail(err)
	}
	r.DurationMs = time.Since(ev.Start).Milliseconds()
	if err := e.Cache.PutAC(key, r); err != nil {
		return fail(err)
	}
	e.recordKey(a, parts)
	if e.Remote != nil {
		e.Remote.Upload(ctx, key, r)
	}
	s.result, s.outDigests, s.ok = r, resultDigests(r), true
	ev.Status, ev.End = StatusExecuted, time.Now()
	return ev
}

// resultDigests indexes a result by path, adding a tree digest for each
// output directory.
func resultDigests(r *cache.ActionResult) map[string]cache.Digest {
	m := make(map[string]cache.Digest, len(r.Outputs)+len(r.Dirs))
	for _, o := range r.Outputs {
		m[o.Path] = o.Digest
	}
	for _, d := range r.Dirs {
		m[d] = TreeDigest(r, d)
	}
	return m
}

// TreeDigest is the digest of the output directory dir of r: its files'
// relative paths, modes and digests, and its symlinks, in sorted order.
func TreeDigest(r *cache.ActionResult, dir string) cache.Digest {
	h := sha256.New()
	prefix := dir + "/"
	var lines []string
	for _, o := range r.Outputs {
		if rel, ok := strings.CutPrefix(o.Path, prefix); ok {
			lines = append(lines, fmt.Sprintf("f %s %s %t", rel, o.Digest, o.Executable))
		}
	}
	for p, t := range r.Symlinks {
		if rel, ok := strings.CutPrefix(p, prefix); ok {
			lines = append(lines, "l "+rel+" "+t)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(h, l)
		h.Write([]byte{0})
	}
	var d cache.Digest
	h.Sum(d[:0])
	return d
}

func writeField(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	io.WriteString(h, s)
}

// actionKey is the sha256 over everything that can change the action's
// outputs (see KeyParts).
func (e *Executor) actionKey(a *Action, states map[*Action]*actionState) (cache.Digest, *KeyParts, error) {
	parts := &KeyParts{
		Rule:     a.RuleKind + " " + a.RuleVersion,
		Mnemonic: a.Mnemonic,
		Identity: a.Identity,
		Argv:     a.Argv,
		Env:      a.Env,
		Tools:    append([]string(nil), a.Tools...),
		Sandbox:  a.Sandbox,
		Inputs:   make([]KeyInput, 0, len(a.Inputs)),
	}
	if a.Argv == nil {
		// In-process steps are pipe's own code.
		parts.Pipe = e.PipeVersion
	}
	sort.Strings(parts.Tools)
	for _, in := range a.Inputs {
		var d cache.Digest
		if in.Generator != nil {
			d = states[in.Generator].outDigests[in.Path]
		} else {
			dd, _, err := e.Digests.Digest(in.Path, e.WS.Abs(in.Path))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return cache.Digest{}, nil, fmt.Errorf("input %s does not exist (declared by %s): create it or remove it from the target's attributes", in.Path, in.Owner)
				}
				return cache.Digest{}, nil, fmt.Errorf("input %s: %w", in.Path, err)
			}
			d = dd
		}
		parts.Inputs = append(parts.Inputs, KeyInput{Path: in.Path, Digest: d})
	}
	sort.Slice(parts.Inputs, func(i, j int) bool { return parts.Inputs[i].Path < parts.Inputs[j].Path })
	for _, o := range a.Outputs {
		p := o.Path
		if o.Dir {
			p += "/"
		}
		parts.Outputs = append(parts.Outputs, p)
	}
	return parts.Key(), parts, nil
}

// materializeCached makes the workspace hold r's outputs, restoring any that
// are missing or were edited. It reports false when a blob is missing or
// corrupt, so the action must run again.
func (e *Executor) materializeCached(r *cache.ActionResult) (int, error) {
	restored := 0
	for _, o := range r.Outputs {
		abs := e.WS.Abs(o.Path)
		fi, err := os.Lstat(abs)
		if err == nil && fi.Mode().IsRegular() && (fi.Mode()&0o111 != 0) == o.Executable {
			if d, ok := e.Digests.Lookup(o.Path, fi); ok && d == o.Digest {
				continue
			}
			if fi.Size() == o.Size {
				if d, _, err := e.Digests.Digest(o.Path, abs); err == nil && d == o.Digest {
					continue
				}
			}
		}
		if err == nil && fi.IsDir() {
			os.RemoveAll(abs)
		}
		if err := e.Cache.CopyOut(o.Digest, abs, o.Executable); err != nil {
			return restored, fmt.Errorf("restore %s: %w", o.Path, err)
		}
		if fi, err := os.Stat(abs); err == nil {
			e.Digests.Record(o.Path, fi, o.Digest)
		}
		restored++
	}
	for p, target := range r.Symlinks {
		abs := e.WS.Abs(p)
		if cur, err := os.Readlink(abs); err == nil && cur == target {
			continue
		}
		os.RemoveAll(abs)
		os.MkdirAll(filepath.Dir(abs), 0o755)
		if err := os.Symlink(target, abs); err != nil {
			return restored, fmt.Errorf("restore %s: %w", p, err)
		}
		restored++
	}
	if len(r.Dirs) > 0 {
		restored += e.pruneDirs(r)
	}
	return restored, nil
}

// pruneDirs removes files in output directories that the result does not
// list, so a restored directory equals what the action produced.
func (e *Executor) pruneDirs(r *cache.ActionResult) int {
	want := map[string]bool{}
	for _, o := range r.Outputs {
		want[o.Path] = true
	}
	for p := range r.Symlinks {
		want[p] = true
	}
	removed := 0
	for _, d := range r.Dirs {
		root := e.WS.Abs(d)
		os.MkdirAll(root, 0o755)
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || p == root {
				return nil
			}
			rel := d + "/" + filepath.ToSlash(p[len(root)+1:])
			if de.IsDir() {
				if !hasPrefixDir(rel, want) {
					os.RemoveAll(p)
					removed++
					return fs.SkipDir
				}
				return nil
			}
			if !want[rel] {
				os.Remove(p)
				removed++
			}
			return nil
		})
	}
	return removed
}

func hasPrefixDir(dir string, want map[string]bool) bool {
	prefix := dir + "/"
	for p := range want {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// execute runs a in a fresh scratch directory, stores its outputs in the
// CAS and moves them into the workspace.
func (e *Executor) execute(ctx context.Context, a *Action) (*cache.ActionResult, string, error) {
	scratch, err := os.MkdirTemp(ensureDir(filepath.Join(e.WS.StateDir(), "sandbox")), strconv.Itoa(a.id)+"-")
	if err != nil {
		return nil, "", err
	}
	defer removeTree(scratch)
	ec := &ExecContext{Dir: scratch, ws: e.WS, a: a, cache: e.Cache, Stdout: newLimitedBuffer(), Stderr: newLimitedBuffer()}
	if pr, ok := e.Reporter.(ProgressReporter); ok {
		ec.progress = func(msg string) { pr.ActionProgress(a, msg) }
	}
	output := func() string {
		// Paths in tracebacks and compiler messages name the scratch copy,
		// which is gone when the user reads them: print them as workspace
		// paths.
		return strings.ReplaceAll(ec.Stdout.String()+ec.Stderr.String(), scratch+"/", "")
	}
	if a.Sandbox {
		for _, in := range a.Inputs {
			if err := stage(e.WS.Abs(in.Path), joinSlash(scratch, in.Path), in.Dir); err != nil {
				return nil, "", fmt.Errorf("stage input %s: %w", in.Path, err)
			}
		}
	}
	for _, o := range a.Outputs {
		dir := joinSlash(scratch, o.Path)
		if !o.Dir {
			dir = path.Dir(dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, "", err
		}
	}
	if a.Argv != nil {
		err = runCommand(ctx, ec, a)
	} else if a.Run != nil {
		err = a.Run(ctx, ec)
	} else {
		err = fmt.Errorf("action has neither a command nor a step")
	}
	if err != nil {
		return nil, output(), err
	}
	r := &cache.ActionResult{}
	for _, o := range a.Outputs {
		src := joinSlash(scratch, o.Path)
		fi, err := os.Lstat(src)
		if err != nil {
			return nil, output(), fmt.Errorf("declared output %s was not created", outputName(a, o))
		}
		if o.Dir {
			if !fi.IsDir() {
				return nil, output(), fmt.Errorf("declared output directory %s is not a directory", outputName(a, o))
			}
			if err := e.collectDir(r, scratch, o.Path); err != nil {
				return nil, output(), err
			}
			r.Dirs = append(r.Dirs, o.Path)
			continue
		}
		if !fi.Mode().IsRegular() {
			return nil, output(), fmt.Errorf("declared output %s is not a regular file", outputName(a, o))
		}
		d, size, err := e.Cache.PutFile(src)
		if err != nil {
			return nil, output(), fmt.Errorf("store %s: %w", o.Path, err)
		}
		r.Outputs = append(r.Outputs, cache.OutputFile{Path: o.Path, Digest: d, Size: size, Executable: fi.Mode()&0o111 != 0})
	}
	// Every blob is stored; now move the outputs into the workspace, each
	// with one rename, so the workspace never holds a half-written file.
	for _, o := range a.Outputs {
		if err := e.moveIntoPlace(joinSlash(scratch, o.Path), o); err != nil {
			return nil, output(), fmt.Errorf("write %s: %w", o.Path, err)
		}
	}
	for _, of := range r.Outputs {
		if fi, err := os.Stat(e.WS.Abs(of.Path)); err == nil {
			e.Digests.Record(of.Path, fi, of.Digest)
		}
	}
	if e.Graph != nil {
		e.pruneStale(a.Owner)
	}
	return r, output(), nil
}

// pruneStale removes from the target's dist/ directory what no action
// declares any more (outputs renamed or dropped from a BUILD file), so dist/
// holds exactly what the build produces. It only runs after an action of
// the target executed or had outputs restored: a changed declaration always
// changes the key, so the stale file is either there after an execution or
// next to a file restored from an older result.
func (e *Executor) pruneStale(owner Label) {
	root := path.Join("dist", owner.Pkg, owner.Name)
	if output, _ := e.Graph.declaredKind(root); output {
		// The target's directory is itself a declared output directory;
		// restoring it already removed what the action did not produce.
		return
	}
	var walk func(dir string)
	walk = func(dir string) {
		ents, err := os.ReadDir(e.WS.Abs(dir))
		if err != nil {
			return
		}
		for _, de := range ents {
			rel := dir + "/" + de.Name()
			if strings.HasPrefix(de.Name(), ".pipe-tmp-") || strings.HasSuffix(de.Name(), ".pipe-old") {
				continue // another action's write in progress
			}
			output, ancestor := e.Graph.declaredKind(rel)
			switch {
			case output:
			case ancestor && de.IsDir():
				walk(rel)
			default:
				os.RemoveAll(e.WS.Abs(rel))
				e.Digests.Forget(rel)
			}
		}
	}
	walk(root)
}

func outputName(a *Action, o *File) string {
	return fmt.Sprintf("%s (of %s)", o.Path, a.Owner)
}

func (e *Executor) collectDir(r *cache.ActionResult, scratch, dir string) error {
	root := joinSlash(scratch, dir)
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(p[len(scratch)+1:])
		switch {
		case de.IsDir():
			return nil
		case de.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			resolved := path.Join(path.Dir(rel), target)
			if path.IsAbs(target) || !strings.HasPrefix(resolved, dir+"/") {
				return fmt.Errorf("output %s is a symlink to %s, outside its directory %s", rel, target, dir)
			}
			if r.Symlinks == nil {
				r.Symlinks = map[string]string{}
			}
			r.Symlinks[rel] = target
			return nil
		case de.Type().IsRegular():
			fi, err := de.Info()
			if err != nil {
				return err
			}
			d, size, err := e.Cache.PutFile(p)
			if err != nil {
				return fmt.Errorf("store %s: %w", rel, err)
			}
			r.Outputs = append(r.Outputs, cache.OutputFile{Path: rel, Digest: d, Size: size, Executable: fi.Mode()&0o111 != 0})
			return nil
		default:
			return fmt.Errorf("output %s is not a regular file, directory or symlink", rel)
		}
	})
}

// moveIntoPlace renames a finished output from the scratch directory to its
// place in the workspace, replacing what was there.
func (e *Executor) moveIntoPlace(src string, o *File) error {
	dst := e.WS.Abs(o.Path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !o.Dir {
		if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
			os.RemoveAll(dst)
		}
		return os.Rename(src, dst)
	}
	// A directory cannot be replaced in one rename: move the old one aside
	// first, then delete it.
	old := dst + ".pipe-old"
	os.RemoveAll(old)
	if _, err := os.Lstat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return removeTree(old)
}

func ensureDir(d string) string {
	os.MkdirAll(d, 0o755)
	return d
}

// removeTree removes a tree even where the action left read-only dirs.
func removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	filepath.WalkDir(p, func(q string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// stage copies an input into the scratch directory, read-only, so the
// action sees exactly its declared inputs and cannot change the originals.
func stage(src, dst string, dir bool) error {
	return StageTree(src, dst, dir, func(s, d string) error { return copyFile(s, d, true) })
}

// StageTree recreates the file or directory src at dst: directories are
// made, symlinks recreated as they are, and each file placed with place
// (a copy, a hard link…).
func StageTree(src, dst string, dir bool, place func(src, dst string) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !dir {
		return place(src, dst)
	}
	return filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, p[len(src):])
		switch {
		case de.IsDir():
			return os.MkdirAll(target, 0o755)
		case de.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return place(p, target)
		}
	})
}

func copyFile(src, dst string, readOnly bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if fi.Mode()&0o111 != 0 {
		mode = 0o755
	}
	if readOnly {
		mode &^= 0o222
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// runCommand runs a.Argv in its own process group, so cancelling kills the
// whole tree the command started, not just the shell.
func runCommand(ctx context.Context, ec *ExecContext, a *Action) error {
	cmd := exec.CommandContext(ctx, a.Argv[0], a.Argv[1:]...)
	cmd.Dir = ec.Dir
	env := make([]string, 0, len(a.Env))
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cmd.Env = env
	cmd.Stdout = ec.Stdout
	cmd.Stderr = ec.Stderr
	// Pdeathsig kills the command if pipe itself is killed (kill -9), so
	// no orphan keeps writing into a scratch directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return fmt.Errorf("command killed by signal %s", st.Signal())
		}
		return fmt.Errorf("command exited with status %d", exit.ExitCode())
	}
	return fmt.Errorf("run %s: %w", a.Argv[0], err)
}

// limitedBuffer keeps the first and last parts of a long output.
type limitedBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int64
}

const outputLimit = 64 << 10

func newLimitedBuffer() *limitedBuffer { return &limitedBuffer{} }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := outputLimit - b.head.Len(); room > 0 {
		k := min(room, len(p))
		b.head.Write(p[:k])
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if len(b.tail) > outputLimit {
			cut := len(b.tail) - outputLimit
			b.dropped += int64(cut)
			b.tail = append(b.tail[:0], b.tail[cut:]...)
		}
	}
	return n, nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return b.head.String() + string(b.tail)
	}
	return fmt.Sprintf("%s\n… %d bytes omitted …\n%s", b.head.String(), b.dropped, b.tail)
}
