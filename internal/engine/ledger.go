package engine

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// The ledger is pipe's record of what it wrote into the workspace, per
// target: every output path an action of the target produced, and for files
// in the source tree (api_metadata's metadata.gen.ts) the digest pipe wrote.
// pipe owns exactly these files. Before each build the ledger is reconciled
// with the targets as they are declared now:
//
//   - a target that no longer exists (its package was loaded and does not
//     declare it, or its BUILD.star is gone) loses everything it wrote;
//   - a target that still exists loses what it no longer declares (a renamed
//     output, a moved `out`);
//   - a file in the source tree is removed only while it still holds the
//     bytes pipe wrote: a file the user has since written is theirs.
//
// The ledger lives in .pipe/outputs, one line per output:
// "<package>\t<name>\t<path>\t<digest or ->".

// Ledger records the outputs pipe wrote, by owning target.
type Ledger struct {
	path string

	mu    sync.Mutex
	m     map[Label]map[string]cache.Digest // path → digest (zero for dist/)
	dirty bool
	stats int // BUILD.star files Reconcile statted
}

// Stats returns how many BUILD.star files reconciling statted to learn
// whether a package not loaded by the build still exists.
func (l *Ledger) Stats() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

const ledgerMagic = "pipe-outputs-2\n"

// LoadLedger reads the ledger at file; a missing or unreadable ledger is
// empty (pipe then knows of no earlier outputs, as after pipe clean).
func LoadLedger(file string) *Ledger {
	l := &Ledger{path: file, m: map[Label]map[string]cache.Digest{}}
	b, err := os.ReadFile(file)
	if err != nil || !bytes.HasPrefix(b, []byte(ledgerMagic)) {
		return l
	}
	// One line per output: package, name, path, digest or "-". Lines are
	// taken as written (pipe wrote them); a damaged line is skipped. Most
	// targets have one output: the map is sized for one per line.
	l.m = make(map[Label]map[string]cache.Digest, bytes.Count(b, []byte{'\n'}))
	for _, line := range strings.Split(string(b[len(ledgerMagic):]), "\n") {
		pkg, rest, ok1 := strings.Cut(line, "\t")
		name, rest, ok2 := strings.Cut(rest, "\t")
		p, dg, ok3 := strings.Cut(rest, "\t")
		if !ok1 || !ok2 || !ok3 || name == "" || p == "" {
			continue
		}
		var d cache.Digest
		if dg != "-" {
			if d, err = cache.ParseDigest(dg); err != nil {
				continue
			}
		}
		l.set(Label{Pkg: pkg, Name: name}, p, d)
	}
	l.dirty = false
	return l
}

func (l *Ledger) set(owner Label, p string, d cache.Digest) {
	outs := l.m[owner]
	if outs == nil {
		outs = make(map[string]cache.Digest, 1)
		l.m[owner] = outs
	}
	if old, ok := outs[p]; !ok || old != d {
		outs[p] = d
		l.dirty = true
	}
}

// Record notes the outputs of a, which just succeeded with result r.
func (l *Ledger) Record(a *Action, r *cache.ActionResult) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range a.Outputs {
		var d cache.Digest
		if !inDist(o.Path) && !o.Dir {
			// A source-tree output: keep the bytes pipe wrote (rare, so a
			// scan is cheaper than an index of every result).
			for _, ro := range r.Outputs {
				if ro.Path == o.Path {
					d = ro.Digest
					break
				}
			}
		}
		l.set(a.Owner, o.Path, d)
	}
}

func inDist(p string) bool { return p == "dist" || strings.HasPrefix(p, "dist/") }

// Reconcile removes what the ledger says pipe wrote for targets that no
// longer exist, and for existing analysed targets what they no longer
// declare. It returns the workspace paths it removed.
func (l *Ledger) Reconcile(ws *Workspace, tg *TargetGraph, ag *ActionGraph, digests *FileDigests) ([]string, error) {
	return l.reconcile(ws, tg, ag, digests, false)
}

// ReconcilePart is Reconcile for a build of part of a graph whose packages
// are known to be as they were when the ledger was last reconciled with
// all of it (the build snapshot checked every BUILD.star and .star file):
// targets of packages the build did not load exist, so it need not stat
// 10,000 BUILD.star files to learn it.
func (l *Ledger) ReconcilePart(ws *Workspace, tg *TargetGraph, ag *ActionGraph, digests *FileDigests) ([]string, error) {
	return l.reconcile(ws, tg, ag, digests, true)
}

func (l *Ledger) reconcile(ws *Workspace, tg *TargetGraph, ag *ActionGraph, digests *FileDigests, part bool) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	declared := map[Label]map[string]bool{}
	for _, a := range ag.Actions {
		outs := declared[a.Owner]
		if outs == nil {
			outs = map[string]bool{}
			declared[a.Owner] = outs
		}
		for _, o := range a.Outputs {
			outs[o.Path] = true
		}
	}
	gone := map[string]bool{} // packages whose BUILD.star is gone
	exists := func(owner Label) bool {
		if pkg, ok := tg.Packages[owner.Pkg]; ok {
			_, declared := pkg.Targets[owner.Name]
			return declared
		}
		if g, ok := gone[owner.Pkg]; ok {
			return !g
		}
		if part {
			return true
		}
		l.stats++
		_, err := os.Stat(ws.Abs(path.Join(owner.Pkg, "BUILD.star")))
		gone[owner.Pkg] = os.IsNotExist(err)
		return !gone[owner.Pkg]
	}
	var removed []string
	var errs []string
	for owner, outs := range l.m {
		alive := exists(owner)
		now, analysed := declared[owner]
		if alive && !analysed {
			continue // declared but not part of this build: leave it be
		}
		for p := range outs {
			if alive && now[p] {
				continue
			}
			want := outs[p]
			delete(outs, p)
			l.dirty = true
			output, ancestor := ag.declaredKind(p)
			if output || ancestor {
				// Another target declares this path (or outputs inside it)
				// now: it is theirs.
				continue
			}
			ok, err := removeOwned(ws, p, want, digests)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s (written for %s): %v", p, owner, err))
				continue
			}
			if ok {
				removed = append(removed, p)
			}
		}
		if len(outs) == 0 {
			delete(l.m, owner)
			l.dirty = true
		}
	}
	sort.Strings(removed)
	sort.Strings(errs)
	if len(errs) > 0 {
		return removed, fmt.Errorf("removing outputs no target declares any more:\n  %s\nremove them by hand", strings.Join(errs, "\n  "))
	}
	return removed, nil
}

// removeOwned removes the output at p that pipe wrote. A file outside
// dist/ goes only while it still holds want, the digest pipe wrote: if the
// user has written it since, it is theirs. In dist/, directories left empty
// go too, so dist/ looks as a clean build leaves it; in the source tree
// directories are left alone.
func removeOwned(ws *Workspace, p string, want cache.Digest, digests *FileDigests) (bool, error) {
	abs := ws.Abs(p)
	fi, err := os.Lstat(abs)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !inDist(p) {
		if !fi.Mode().IsRegular() {
			return false, nil
		}
		got, _, err := digests.Digest(p, abs)
		if err != nil {
			return false, err
		}
		if got != want {
			return false, nil
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		return false, err
	}
	digests.Forget(p)
	if inDist(p) {
		for d := path.Dir(p); d != "." && d != "dist"; d = path.Dir(d) {
			if os.Remove(ws.Abs(d)) != nil {
				break
			}
		}
	}
	return true, nil
}

// Save writes the ledger if it changed.
func (l *Ledger) Save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return nil
	}
	var b bytes.Buffer
	b.WriteString(ledgerMagic)
	owners := make([]Label, 0, len(l.m))
	for o := range l.m {
		owners = append(owners, o)
	}
	sort.Slice(owners, func(i, j int) bool {
		if owners[i].Pkg != owners[j].Pkg {
			return owners[i].Pkg < owners[j].Pkg
		}
		return owners[i].Name < owners[j].Name
	})
	for _, o := range owners {
		paths := make([]string, 0, len(l.m[o]))
		for p := range l.m[o] {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			d := "-"
			if dg := l.m[o][p]; !dg.IsZero() {
				d = dg.String()
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", o.Pkg, o.Name, p, d)
		}
	}
	if err := files.WriteAtomic(l.path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("save the output ledger: %w", err)
	}
	l.dirty = false
	return nil
}
