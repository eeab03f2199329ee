package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// A build snapshot answers a no-op build without loading, analysing or
// looking up a single action. It is written at the end of a build in which
// every action succeeded, and lists the stat of everything that build's
// result depended on:
//
//   - the graph's inputs: every directory the package walk read, every
//     BUILD.star, loaded .star file, globbed directory and .gitignore a
//     package's evaluation depended on (present or absent), WORKSPACE.star,
//     the files and paths analysis read, and the host tools it named;
//   - the environment variables analysis read, with their values;
//   - the actions' source inputs, with the stat their digest was taken at;
//   - the outputs in place: every file, symbolic link and directory the
//     actions' results put in the workspace, and the target directories a
//     cache hit checks for strays;
//   - the output ledger and the local cache's directory.
//
// When every stat and variable is as recorded, the package cache would hand
// back the same packages, analysis would declare the same actions, their
// keys would be the same, the cache holds results for them, and every output
// is in place: the build would be all cache hits that restore nothing. The
// snapshot says so directly.
//
// The racy-window rule of FileDigests applies to every entry: a path whose
// mtime or ctime is within RacyWindow of the moment the build read it (for
// the graph's inputs and the outputs' directories, the start of the build;
// for sources and output files, the moment their digest was recorded) is
// not trusted, and no snapshot is written. A later build, once the files
// have settled, writes one.
//
// A host probe is revalidated by the stats of the host paths it declared
// (AnalysisContext.ProbeByStat, such as the Python interpreter's choice);
// analysis that ran any other probe than a tool's identity writes no
// snapshot.
type Snapshot struct {
	// Key identifies what was built: pipe's version, the patterns, the
	// cache and the workspace (SnapshotKey).
	Key string
	// Actions are the actions the build ran or found cached, each with
	// the stats of its sources and outputs.
	Actions []SnapshotAction
	// Paths are the stats of the graph's inputs.
	Paths []SnapshotPath
	Env   []SnapshotEnv

	// id is the checksum of the file the snapshot was loaded from or saved
	// to; size its size, and patched the size of the patches applied.
	id      [32]byte
	size    int64
	patched int64
}

// SnapshotPath is one recorded stat. Path is workspace-relative, or
// absolute for a path outside the workspace (a host tool, the cache).
type SnapshotPath struct {
	Path    string
	Lstat   bool // compared without following a final symbolic link
	Missing bool
	Stat    FileStat
	// Untrusted marks a stat taken within the racy window: it counts as
	// changed, so the action goes the long way (a cache hit) and the next
	// snapshot records it settled.
	Untrusted bool
	// cpath is Path NUL-terminated, for fstatat without a copy.
	cpath []byte
}

// SnapshotAction is what a no-op build reports about one action.
type SnapshotAction struct {
	Owner    Label
	Mnemonic string
	Key      cache.ActionKey
	Outputs  []string
	// RanForMs is how long the action took when it last executed.
	RanForMs int64
	// Paths are the stats of the action's sources and outputs.
	Paths []SnapshotPath
	// Deps are the indexes in Snapshot.Actions of the actions producing
	// this one's inputs.
	Deps []int32
}

// identity names the action across builds of one graph: its owner and
// its first output (no two actions write the same path).
func (sa *SnapshotAction) identity() string {
	id := sa.Owner.String() + "\x00" + sa.Mnemonic
	if len(sa.Outputs) > 0 {
		id += "\x00" + sa.Outputs[0]
	}
	return id
}

// Event is the cache hit a build answered by the snapshot reports for sa.
func (sa *SnapshotAction) Event(at time.Time) *ActionEvent {
	a := &Action{Owner: sa.Owner, Mnemonic: sa.Mnemonic, Description: sa.Mnemonic + " " + sa.Owner.String()}
	for _, o := range sa.Outputs {
		a.Outputs = append(a.Outputs, &File{Path: o, Generator: a, Owner: sa.Owner})
	}
	return &ActionEvent{Action: a, Key: sa.Key, Status: StatusCached, Start: at, End: at, RanFor: time.Duration(sa.RanForMs) * time.Millisecond}
}

// SnapshotEnv is one environment variable analysis read.
type SnapshotEnv struct {
	Name, Value string
	Set         bool
}

// SnapshotKey names a build of patterns by pipe version, in the workspace
// at root, against the cache at cacheDir.
func SnapshotKey(version, root, cacheDir string, patterns []Pattern) string {
	ps := make([]string, len(patterns))
	for i, p := range patterns {
		ps[i] = p.String()
	}
	sort.Strings(ps)
	h := sha256.New()
	for _, s := range append([]string{"pipe-snapshot-1", version, root, cacheDir}, ps...) {
		writeField(h, s)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// SnapshotInputs is what RecordSnapshot needs from a finished build.
type SnapshotInputs struct {
	WS   *Workspace
	Plan *Plan
	// Executed is the list of actions the build executed or found cached,
	// all of which succeeded.
	Executed []*Action
	Exec     *Executor
	// PackageInputs lists the workspace paths package pkg's evaluation
	// depended on; false when the loader cannot say.
	PackageInputs func(pkg string) ([]string, bool)
	// Extra are further paths (workspace-relative or absolute) whose stat
	// decides the result, such as the ledger and the cache directory.
	Extra []string
	// Start is when the build started: the graph's inputs must have
	// settled by then.
	Start int64
	// ActionsOnly records the actions alone, for a build of part of a
	// graph whose inputs a snapshot already holds (Merge).
	ActionsOnly bool
}

// ErrNoSnapshot says why a build's snapshot cannot be recorded; it is not a
// failure of the build.
type ErrNoSnapshot struct{ Reason string }

func (e *ErrNoSnapshot) Error() string { return "no build snapshot: " + e.Reason }

func noSnapshot(format string, args ...any) error {
	return &ErrNoSnapshot{Reason: fmt.Sprintf(format, args...)}
}

// RecordSnapshot builds the snapshot of a successful build.
func RecordSnapshot(key string, in SnapshotInputs) (*Snapshot, error) {
	ws, plan, e := in.WS, in.Plan, in.Exec
	s := &Snapshot{Key: key}
	seen := map[string]bool{}
	// settledNow stats a graph input now and requires it to have settled
	// before the build started.
	var racy string
	settledNow := func(p string, lstat bool) {
		if seen[p] {
			return
		}
		seen[p] = true
		sp := statPath(ws, p, lstat)
		if !sp.Missing && !sp.Stat.Settled(in.Start) && racy == "" {
			racy = p
		}
		s.Paths = append(s.Paths, sp)
	}

	if !in.ActionsOnly {
		// The graph's inputs.
		settledNow(WorkspaceFile, false)
		for _, d := range plan.Targets.Walked {
			settledNow(d, true)
		}
		for _, p := range plan.Targets.Checked {
			settledNow(p, false)
		}
		pkgs := make([]string, 0, len(plan.Targets.Packages))
		for p := range plan.Targets.Packages {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		for _, p := range pkgs {
			deps, ok := in.PackageInputs(p)
			if !ok {
				return nil, noSnapshot("the inputs of package //%s are not known", p)
			}
			for _, d := range deps {
				settledNow(d, false)
			}
		}
		labels := make([]Label, 0, len(plan.Actions.inputs))
		for l := range plan.Actions.inputs {
			labels = append(labels, l)
		}
		sortLabels(labels)
		envSeen := map[string]bool{}
		for _, l := range labels {
			for _, ai := range plan.Actions.inputs[l] {
				switch ai.Kind {
				case InputFile, InputStat:
					settledNow(ai.Name, false)
				case InputEnv:
					if !envSeen[ai.Name] {
						envSeen[ai.Name] = true
						s.Env = append(s.Env, SnapshotEnv{Name: ai.Name, Value: ai.Value, Set: ai.Set})
					}
				case InputHostPath:
					settledNow(ai.Name, false)
				case InputProbe:
					if ai.Value == ProbeDecidedByStat {
						// Its host paths are InputHostPath entries.
						continue
					}
					tool, ok := strings.CutPrefix(ai.Name, "tool ")
					if !ok {
						return nil, noSnapshot("%s ran the host probe %q", l, ai.Name)
					}
					settledNow(tool, false)
				}
			}
		}
		for _, x := range in.Extra {
			settledNow(x, false)
		}
		if racy != "" {
			return nil, noSnapshot("%s changed within %v of the build's start", racy, time.Duration(RacyWindow))
		}
	}

	// Sources and outputs, by action. A stat that cannot be trusted yet
	// is kept, marked: that action alone goes the long way next time.
	index := make(map[*Action]int32, len(in.Executed))
	for i, a := range in.Executed {
		index[a] = int32(i)
	}
	for _, a := range in.Executed {
		k, r := e.result(a)
		if r == nil {
			return nil, noSnapshot("no result for an action of %s", a.Owner)
		}
		sa := SnapshotAction{Owner: a.Owner, Mnemonic: a.Mnemonic, Key: k, RanForMs: r.DurationMs}
		for _, o := range a.Outputs {
			sa.Outputs = append(sa.Outputs, o.Path)
		}
		for _, d := range a.deps {
			if j, ok := index[d]; ok {
				sa.Deps = append(sa.Deps, j)
			}
		}
		aseen := map[string]bool{}
		add := func(sp SnapshotPath) {
			if !aseen[sp.Path] {
				aseen[sp.Path] = true
				sa.Paths = append(sa.Paths, sp)
			}
		}
		// fromDigests takes the stat the digest cache recorded for p;
		// the digest the build used was taken at that stat.
		fromDigests := func(p string, lstat bool) {
			st, ok := e.Digests.settledStat(p)
			add(SnapshotPath{Path: p, Lstat: lstat, Stat: st, Untrusted: !ok})
		}
		now := func(p string, lstat bool) {
			sp := statPath(ws, p, lstat)
			sp.Untrusted = !sp.Missing && !sp.Stat.Settled(in.Start)
			add(sp)
		}
		for _, f := range a.Inputs {
			if f.Generator == nil {
				fromDigests(f.Path, false)
			}
		}
		for _, o := range r.Outputs {
			fromDigests(o.Path, true)
		}
		for p := range r.Symlinks {
			now(p, true)
			now(path.Dir(p), true)
		}
		for _, d := range r.Dirs {
			now(d, true)
			for _, o := range r.Outputs {
				if strings.HasPrefix(o.Path, d+"/") {
					for q := path.Dir(o.Path); q != d && !aseen[q]; q = path.Dir(q) {
						now(q, true)
					}
				}
			}
		}
		if e.Graph != nil {
			for _, d := range ownDirs(a) {
				fromDigests(d, true)
			}
		}
		s.Actions = append(s.Actions, sa)
	}
	return s, nil
}

// statPath stats p (workspace-relative or absolute) now.
func statPath(ws *Workspace, p string, lstat bool) SnapshotPath {
	sp := SnapshotPath{Path: p, Lstat: lstat}
	abs := p
	if !filepath.IsAbs(p) {
		abs = ws.Abs(p)
	}
	var fi os.FileInfo
	var err error
	if lstat {
		fi, err = os.Lstat(abs)
	} else {
		fi, err = os.Stat(abs)
	}
	if err != nil {
		sp.Missing = true
	} else {
		sp.Stat = StatOf(fi)
	}
	return sp
}

// Check reports whether every recorded stat and variable is unchanged; if
// not, it names the first difference it found.
func (s *Snapshot) Check(ctx context.Context, root string) (bool, string) {
	changed, ok, why, _ := s.Changed(ctx, root, nil)
	if !ok {
		return false, why
	}
	if len(changed) > 0 {
		a := &s.Actions[changed[0]]
		return false, fmt.Sprintf("an input or output of %s (%s) changed", a.Owner, a.Mnemonic)
	}
	return true, ""
}

// Known vouches for workspace paths that have not changed since the
// snapshot's stats were last found true (a change journal, such as
// journal.Changes); Changed stats only the paths it does not vouch for.
// Paths are workspace-relative, "." for the root.
type Known interface {
	Unchanged(path string) bool
}

// Changed compares the snapshot with the workspace. When a graph input or
// a variable changed, ok is false and why names it: nothing of the
// snapshot holds. Otherwise changed lists the indexes of the actions with a
// changed (or untrusted) source or output, in order. The stats are taken
// in parallel, relative to a descriptor of the workspace root and without
// allocating: on a large workspace they are the whole cost of a no-op.
// With known, a workspace path it vouches for is not stat'ed; paths
// outside the workspace always are. stats is how many were.
func (s *Snapshot) Changed(ctx context.Context, root string, known Known) (changed []int, ok bool, why string, stats int) {
	for _, e := range s.Env {
		v, ok := os.LookupEnv(e.Name)
		if ok != e.Set || v != e.Value {
			return nil, false, "environment variable " + e.Name + " changed", 0
		}
	}
	dirfd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Sprintf("open %s: %v", root, err), 0
	}
	defer syscall.Close(dirfd)
	// Work items: the graph's inputs (owner -1), then every action's paths.
	type item struct {
		owner int32
		p     *SnapshotPath
	}
	n := len(s.Paths)
	for i := range s.Actions {
		n += len(s.Actions[i].Paths)
	}
	items := make([]item, 0, n)
	vouched := func(p *SnapshotPath) bool {
		return known != nil && !p.Untrusted && !filepath.IsAbs(p.Path) && known.Unchanged(p.Path)
	}
	for i := range s.Paths {
		if !vouched(&s.Paths[i]) {
			items = append(items, item{-1, &s.Paths[i]})
		}
	}
	for ai := range s.Actions {
		for i := range s.Actions[ai].Paths {
			if !vouched(&s.Actions[ai].Paths[i]) {
				items = append(items, item{int32(ai), &s.Actions[ai].Paths[i]})
			}
		}
	}
	stats = len(items)
	var (
		graphBad atomic.Bool
		mu       sync.Mutex
		dirty    = make([]atomic.Bool, len(s.Actions))
	)
	stop := func() bool { return graphBad.Load() || ctx.Err() != nil }
	forChunks(len(items), 256, min(len(items)/256+1, 4*runtime.GOMAXPROCS(0)), stop, func(lo, hi int) {
		for _, it := range items[lo:hi] {
			if it.owner >= 0 && dirty[it.owner].Load() {
				continue
			}
			if !it.p.Untrusted && it.p.unchanged(dirfd) {
				continue
			}
			if it.owner >= 0 {
				dirty[it.owner].Store(true)
				continue
			}
			if !graphBad.Swap(true) {
				mu.Lock()
				why = it.p.Path + " changed"
				mu.Unlock()
			}
			return
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, false, err.Error(), stats
	}
	if graphBad.Load() {
		return nil, false, why, stats
	}
	for i := range dirty {
		if dirty[i].Load() {
			changed = append(changed, i)
		}
	}
	return changed, true, "", stats
}

// Stamp names the state of the snapshot file and its patches that s was
// loaded from or last saved to: a change journal's token is kept with the
// stamp of the snapshot it speaks for.
func (s *Snapshot) Stamp() [40]byte {
	var st [40]byte
	copy(st[:], s.id[:])
	binary.LittleEndian.PutUint64(st[32:], uint64(s.patched))
	return st
}

// Downstream returns the owners of the actions changed and of every action
// that depends on them, directly or not, sorted, and how many actions that
// is.
func (s *Snapshot) Downstream(changed []int) ([]Label, int) {
	rdeps := make([][]int32, len(s.Actions))
	for i, a := range s.Actions {
		for _, d := range a.Deps {
			if int(d) < len(rdeps) {
				rdeps[d] = append(rdeps[d], int32(i))
			}
		}
	}
	in := make([]bool, len(s.Actions))
	queue := append([]int(nil), changed...)
	for _, i := range queue {
		in[i] = true
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, j := range rdeps[i] {
			if !in[j] {
				in[j] = true
				queue = append(queue, int(j))
			}
		}
	}
	seen := map[Label]bool{}
	var owners []Label
	count := 0
	for i, ok := range in {
		if !ok {
			continue
		}
		count++
		if l := s.Actions[i].Owner; !seen[l] {
			seen[l] = true
			owners = append(owners, l)
		}
	}
	sortLabels(owners)
	return owners, count
}

// Merge returns the snapshot with the actions of part, a snapshot of a
// build of part of the same graph (RecordSnapshot with ActionsOnly), in
// place of its own. It reports false when part holds an action s does not
// know: the graph is not the same.
func (s *Snapshot) Merge(part *Snapshot) (*Snapshot, bool) {
	where, ok := s.where(part)
	if !ok {
		return nil, false
	}
	out := &Snapshot{Key: s.Key, Paths: s.Paths, Env: s.Env, Actions: append([]SnapshotAction(nil), s.Actions...)}
	for i := range part.Actions {
		out.Actions[where[i]] = placed(part.Actions[i], where)
	}
	return out, true
}

// where returns the index in s of each of part's actions, or false when
// one is not in s.
func (s *Snapshot) where(part *Snapshot) ([]int32, bool) {
	at := make(map[string]int32, len(s.Actions))
	for i := range s.Actions {
		at[s.Actions[i].identity()] = int32(i)
	}
	where := make([]int32, len(part.Actions))
	for i := range part.Actions {
		j, ok := at[part.Actions[i].identity()]
		if !ok {
			return nil, false
		}
		where[i] = j
	}
	return where, true
}

// placed is pa, an action of a part, with its dependencies renumbered as
// the whole's.
func placed(pa SnapshotAction, where []int32) SnapshotAction {
	deps := make([]int32, len(pa.Deps))
	for k, d := range pa.Deps {
		deps[k] = where[d]
	}
	pa.Deps = deps
	return pa
}

// Includes reports whether the snapshot's action sa is one of actions.
func (sa *SnapshotAction) Includes(actions map[string]bool) bool {
	return actions[sa.identity()]
}

// Identities names actions as SnapshotAction.identity does.
func Identities(actions []*Action) map[string]bool {
	m := make(map[string]bool, len(actions))
	for _, a := range actions {
		sa := SnapshotAction{Owner: a.Owner, Mnemonic: a.Mnemonic}
		if len(a.Outputs) > 0 {
			sa.Outputs = []string{a.Outputs[0].Path}
		}
		m[sa.identity()] = true
	}
	return m
}

// atFDCWD is AT_FDCWD: fstatat ignores the descriptor for an absolute path.
const atFDCWD = -100

func (p *SnapshotPath) unchanged(dirfd int) bool {
	if p.cpath == nil {
		p.cpath = append([]byte(p.Path), 0)
	}
	fd := dirfd
	if filepath.IsAbs(p.Path) {
		fd = atFDCWD
	}
	flags := 0
	if p.Lstat {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	for {
		st, errno := statAt(fd, p.Path, p.cpath, flags)
		switch errno {
		case 0:
			return !p.Missing && st == p.Stat
		case syscall.EINTR:
			continue
		case syscall.ENOENT, syscall.ENOTDIR:
			return p.Missing
		default:
			return false
		}
	}
}

// modeOf is os.FileMode of a raw stat's mode, as os.Stat reports it.
func modeOf(m uint32) uint32 {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return uint32(mode)
}

const snapshotMagic = "pipe-snapshot-2\n"

func appendStr(buf []byte, v string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(v)))
	return append(buf, v...)
}

func appendPaths(buf []byte, ps []SnapshotPath) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(ps)))
	for _, p := range ps {
		buf = appendStr(buf, p.Path)
		buf = append(buf, boolByte(p.Lstat)|boolByte(p.Missing)<<1|boolByte(p.Untrusted)<<2)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Size))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Mtime))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Ctime))
		buf = binary.LittleEndian.AppendUint64(buf, p.Stat.Ino)
		buf = binary.LittleEndian.AppendUint64(buf, p.Stat.Dev)
		buf = binary.LittleEndian.AppendUint32(buf, p.Stat.Mode)
	}
	return buf
}

func appendAction(buf []byte, a *SnapshotAction) []byte {
	buf = appendStr(buf, a.Owner.Pkg)
	buf = appendStr(buf, a.Owner.Name)
	buf = appendStr(buf, a.Mnemonic)
	buf = append(buf, a.Key[:]...)
	buf = binary.AppendUvarint(buf, uint64(a.RanForMs))
	buf = binary.AppendUvarint(buf, uint64(len(a.Outputs)))
	for _, o := range a.Outputs {
		buf = appendStr(buf, o)
	}
	buf = appendPaths(buf, a.Paths)
	buf = binary.AppendUvarint(buf, uint64(len(a.Deps)))
	for _, d := range a.Deps {
		buf = binary.AppendUvarint(buf, uint64(d))
	}
	return buf
}

// Save writes the snapshot atomically to file, and removes the patches
// (SavePart) recorded for the snapshot it replaces.
func (s *Snapshot) Save(file string) error {
	buf := []byte(snapshotMagic)
	start := len(buf)
	buf = appendStr(buf, s.Key)
	buf = binary.AppendUvarint(buf, uint64(len(s.Actions)))
	for i := range s.Actions {
		buf = appendAction(buf, &s.Actions[i])
	}
	buf = binary.AppendUvarint(buf, uint64(len(s.Env)))
	for _, e := range s.Env {
		buf = appendStr(buf, e.Name)
		buf = appendStr(buf, e.Value)
		buf = append(buf, boolByte(e.Set))
	}
	buf = appendPaths(buf, s.Paths)
	sum := sha256.Sum256(buf[start:])
	buf = append(buf, sum[:]...)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("save build snapshot: %w", err)
	}
	if err := files.WriteAtomic(file, buf, 0o644); err != nil {
		return fmt.Errorf("save build snapshot: %w", err)
	}
	s.id, s.size, s.patched = sum, int64(len(buf)), 0
	// The patches name the snapshot they apply to, so one left behind by a
	// failed removal is ignored; removing it keeps the file small.
	if err := os.Remove(patchesFile(file)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("save build snapshot: %w", err)
	}
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// LoadSnapshot reads the snapshot at file if it was recorded for key. A
// missing, damaged or foreign snapshot is no snapshot: it only saves time.
func LoadSnapshot(file, key string) (*Snapshot, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, false
	}
	s, err := decodeSnapshot(b)
	if err != nil || s.Key != key {
		return nil, false
	}
	s.id, s.size = [32]byte(b[len(b)-32:]), int64(len(b))
	p, err := os.ReadFile(patchesFile(file))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if !s.applyPatches(p) {
		return nil, false
	}
	return s, true
}

var errBadSnapshot = errors.New("damaged build snapshot")

func decodeSnapshot(b []byte) (*Snapshot, error) {
	if len(b) < len(snapshotMagic)+32 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errBadSnapshot
	}
	body := b[len(snapshotMagic) : len(b)-32]
	if sha256.Sum256(body) != [32]byte(b[len(b)-32:]) {
		return nil, errBadSnapshot
	}
	return decodeSnapshotBody(body)
}

// decodeSnapshotBody decodes what the checksum covers.
func decodeSnapshotBody(body []byte) (*Snapshot, error) {
	d := snapDecoder{b: body}
	s := &Snapshot{Key: d.str()}
	nact := d.uvarint()
	if nact > uint64(len(body)) {
		return nil, errBadSnapshot
	}
	s.Actions = make([]SnapshotAction, 0, nact)
	for range nact {
		a, ok := d.action(nact)
		if !ok {
			return nil, errBadSnapshot
		}
		s.Actions = append(s.Actions, a)
	}
	nenv := d.uvarint()
	if nenv > uint64(len(body)) {
		return nil, errBadSnapshot
	}
	for range nenv {
		e := SnapshotEnv{Name: d.str(), Value: d.str()}
		e.Set = d.byte() == 1
		s.Env = append(s.Env, e)
	}
	if s.Paths = d.paths(); d.err || len(d.b) != 0 {
		return nil, errBadSnapshot
	}
	return s, nil
}

// action decodes one action of a snapshot of nact actions.
func (d *snapDecoder) action(nact uint64) (SnapshotAction, bool) {
	a := SnapshotAction{Owner: Label{Pkg: d.str(), Name: d.str()}, Mnemonic: d.str()}
	copy(a.Key[:], d.bytes(len(a.Key)))
	a.RanForMs = int64(d.uvarint())
	nout := d.uvarint()
	if nout > uint64(len(d.b)) {
		return a, false
	}
	for range nout {
		a.Outputs = append(a.Outputs, d.str())
	}
	a.Paths = d.paths()
	ndeps := d.uvarint()
	if ndeps > uint64(len(d.b)) {
		return a, false
	}
	for range ndeps {
		if dep := d.uvarint(); dep < nact {
			a.Deps = append(a.Deps, int32(dep))
		} else {
			d.err = true
		}
	}
	return a, !d.err
}

// paths decodes a list of SnapshotPath.
func (d *snapDecoder) paths() []SnapshotPath {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return nil
	}
	var ps []SnapshotPath
	if n > 0 {
		ps = make([]SnapshotPath, 0, n)
	}
	for range n {
		raw := d.bytes(int(d.uvarint()))
		cp := make([]byte, len(raw)+1)
		copy(cp, raw)
		p := SnapshotPath{Path: unsafe.String(&cp[0], len(raw)), cpath: cp}
		fl := d.byte()
		p.Lstat, p.Missing, p.Untrusted = fl&1 != 0, fl&2 != 0, fl&4 != 0
		p.Stat.Size = int64(d.u64())
		p.Stat.Mtime = int64(d.u64())
		p.Stat.Ctime = int64(d.u64())
		p.Stat.Ino = d.u64()
		p.Stat.Dev = d.u64()
		p.Stat.Mode = d.u32()
		if d.err {
			return nil
		}
		ps = append(ps, p)
	}
	return ps
}

// snapDecoder reads the snapshot's fields; past a short read it returns
// zero values and sets err.
type snapDecoder struct {
	b   []byte
	err bool
}

func (d *snapDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *snapDecoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		if n < 0 {
			n = 0
		}
		d.err, d.b = true, nil
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) byte() byte {
	if len(d.b) < 1 {
		d.err = true
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *snapDecoder) u64() uint64 {
	if len(d.b) < 8 {
		d.err, d.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *snapDecoder) u32() uint32 {
	if len(d.b) < 4 {
		d.err, d.b = true, nil
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

// result is the result a's execution or cache hit produced in this build.
func (e *Executor) result(a *Action) (cache.ActionKey, *cache.ActionResult) {
	e.resultsMu.Lock()
	defer e.resultsMu.Unlock()
	k := e.results[a]
	return k.key, k.r
}
