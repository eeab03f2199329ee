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
// Analysis that ran a host probe other than a tool's identity (such as an
// interpreter's version) cannot be revalidated by stat: such a build writes
// no snapshot.
type Snapshot struct {
	// Key identifies what was built: pipe's version, the patterns, the
	// cache and the workspace (SnapshotKey).
	Key string
	// Actions are the actions the build ran or found cached, in the order
	// they finished, for the summary and --events.
	Actions []SnapshotAction
	Paths   []SnapshotPath
	Env     []SnapshotEnv
}

// SnapshotPath is one recorded stat. Path is workspace-relative, or
// absolute for a path outside the workspace (a host tool, the cache).
type SnapshotPath struct {
	Path    string
	Lstat   bool // compared without following a final symbolic link
	Missing bool
	Stat    FileStat
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
	// settledNow stats p now and requires it to have settled before the
	// build started.
	var racy string
	settledNow := func(p string, lstat bool) {
		if seen[p] {
			return
		}
		seen[p] = true
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
			if !sp.Stat.Settled(in.Start) && racy == "" {
				racy = p
			}
		}
		s.Paths = append(s.Paths, sp)
	}
	// fromDigests takes the stat the digest cache recorded for p; the
	// digest the build used was taken at that stat.
	fromDigests := func(p string, lstat bool) bool {
		if seen[p] {
			return true
		}
		st, ok := e.Digests.settledStat(p)
		if !ok {
			return false
		}
		seen[p] = true
		s.Paths = append(s.Paths, SnapshotPath{Path: p, Lstat: lstat, Stat: st})
		return true
	}

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
			case InputProbe:
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

	// Sources and outputs.
	for _, a := range in.Executed {
		for _, f := range a.Inputs {
			if f.Generator == nil && !fromDigests(f.Path, false) {
				return nil, noSnapshot("the digest of %s is not settled", f.Path)
			}
		}
		k, r := e.result(a)
		if r == nil {
			return nil, noSnapshot("no result for an action of %s", a.Owner)
		}
		sa := SnapshotAction{Owner: a.Owner, Mnemonic: a.Mnemonic, Key: k, RanForMs: r.DurationMs}
		for _, o := range a.Outputs {
			sa.Outputs = append(sa.Outputs, o.Path)
		}
		s.Actions = append(s.Actions, sa)
		for _, o := range r.Outputs {
			if !fromDigests(o.Path, true) {
				return nil, noSnapshot("the digest of %s is not settled", o.Path)
			}
		}
		for p := range r.Symlinks {
			settledNow(p, true)
			settledNow(path.Dir(p), true)
		}
		for _, d := range r.Dirs {
			settledNow(d, true)
			for _, o := range r.Outputs {
				if strings.HasPrefix(o.Path, d+"/") {
					for q := path.Dir(o.Path); q != d && !seen[q]; q = path.Dir(q) {
						settledNow(q, true)
					}
				}
			}
		}
		if e.Graph != nil {
			for _, d := range ownDirs(a) {
				if !fromDigests(d, true) {
					return nil, noSnapshot("the directory %s was not checked", d)
				}
			}
		}
	}
	if racy != "" {
		return nil, noSnapshot("%s changed within %v of the build's start", racy, time.Duration(RacyWindow))
	}
	return s, nil
}

// Check reports whether every recorded stat and variable is unchanged; if
// not, it names the first difference it found. The stats are taken in
// parallel, relative to a descriptor of the workspace root and without
// allocating: on a large workspace they are the whole cost of a no-op.
func (s *Snapshot) Check(ctx context.Context, root string) (bool, string) {
	for _, e := range s.Env {
		v, ok := os.LookupEnv(e.Name)
		if ok != e.Set || v != e.Value {
			return false, "environment variable " + e.Name + " changed"
		}
	}
	dirfd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Sprintf("open %s: %v", root, err)
	}
	defer syscall.Close(dirfd)
	var (
		bad     atomic.Bool
		mu      sync.Mutex
		why     string
		next    atomic.Int64
		wg      sync.WaitGroup
		workers = min(len(s.Paths)/256+1, 4*runtime.GOMAXPROCS(0))
	)
	const chunk = 256
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !bad.Load() && ctx.Err() == nil {
				lo := int(next.Add(chunk)) - chunk
				if lo >= len(s.Paths) {
					return
				}
				for i := lo; i < min(lo+chunk, len(s.Paths)); i++ {
					p := &s.Paths[i]
					if !p.unchanged(dirfd) {
						if !bad.Swap(true) {
							mu.Lock()
							why = p.Path + " changed"
							mu.Unlock()
						}
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return false, err.Error()
	}
	if bad.Load() {
		return false, why
	}
	return true, ""
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
	var st syscall.Stat_t
	for {
		_, _, errno := syscall.Syscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(&p.cpath[0])), uintptr(unsafe.Pointer(&st)), uintptr(flags), 0, 0)
		switch errno {
		case 0:
			return !p.Missing && statOfSys(&st) == p.Stat
		case syscall.EINTR:
			continue
		case syscall.ENOENT, syscall.ENOTDIR:
			return p.Missing
		default:
			return false
		}
	}
}

// statOfSys is StatOf for a raw stat: the mode is os.FileMode's, as
// os.Stat reports it.
func statOfSys(st *syscall.Stat_t) FileStat {
	mode := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & syscall.S_IFMT {
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
	if st.Mode&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if st.Mode&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if st.Mode&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return FileStat{
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		Ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:   st.Ino,
		Dev:   st.Dev,
		Mode:  uint32(mode),
	}
}

const snapshotMagic = "pipe-snapshot-1\n"

// Save writes the snapshot atomically to file.
func (s *Snapshot) Save(file string) error {
	buf := []byte(snapshotMagic)
	start := len(buf)
	str := func(v string) {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	str(s.Key)
	buf = binary.AppendUvarint(buf, uint64(len(s.Actions)))
	for _, a := range s.Actions {
		str(a.Owner.Pkg)
		str(a.Owner.Name)
		str(a.Mnemonic)
		buf = append(buf, a.Key[:]...)
		buf = binary.AppendUvarint(buf, uint64(a.RanForMs))
		buf = binary.AppendUvarint(buf, uint64(len(a.Outputs)))
		for _, o := range a.Outputs {
			str(o)
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(s.Env)))
	for _, e := range s.Env {
		str(e.Name)
		str(e.Value)
		buf = append(buf, boolByte(e.Set))
	}
	buf = binary.AppendUvarint(buf, uint64(len(s.Paths)))
	for _, p := range s.Paths {
		str(p.Path)
		buf = append(buf, boolByte(p.Lstat)|boolByte(p.Missing)<<1)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Size))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Mtime))
		buf = binary.LittleEndian.AppendUint64(buf, uint64(p.Stat.Ctime))
		buf = binary.LittleEndian.AppendUint64(buf, p.Stat.Ino)
		buf = binary.LittleEndian.AppendUint64(buf, p.Stat.Dev)
		buf = binary.LittleEndian.AppendUint32(buf, p.Stat.Mode)
	}
	sum := sha256.Sum256(buf[start:])
	buf = append(buf, sum[:]...)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("save build snapshot: %w", err)
	}
	if err := files.WriteAtomic(file, buf, 0o644); err != nil {
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
		a := SnapshotAction{Owner: Label{Pkg: d.str(), Name: d.str()}, Mnemonic: d.str()}
		copy(a.Key[:], d.bytes(len(a.Key)))
		a.RanForMs = int64(d.uvarint())
		nout := d.uvarint()
		if nout > uint64(len(d.b)) {
			return nil, errBadSnapshot
		}
		for range nout {
			a.Outputs = append(a.Outputs, d.str())
		}
		if d.err {
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
	npaths := d.uvarint()
	if npaths > uint64(len(body)) {
		return nil, errBadSnapshot
	}
	s.Paths = make([]SnapshotPath, 0, npaths)
	for range npaths {
		raw := d.bytes(int(d.uvarint()))
		cp := make([]byte, len(raw)+1)
		copy(cp, raw)
		p := SnapshotPath{Path: unsafe.String(&cp[0], len(raw)), cpath: cp}
		fl := d.byte()
		p.Lstat, p.Missing = fl&1 != 0, fl&2 != 0
		p.Stat.Size = int64(d.u64())
		p.Stat.Mtime = int64(d.u64())
		p.Stat.Ctime = int64(d.u64())
		p.Stat.Ino = d.u64()
		p.Stat.Dev = d.u64()
		p.Stat.Mode = d.u32()
		if d.err {
			return nil, errBadSnapshot
		}
		s.Paths = append(s.Paths, p)
	}
	if d.err || len(d.b) != 0 {
		return nil, errBadSnapshot
	}
	return s, nil
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
