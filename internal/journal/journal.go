package journal

import (
	"crypto/rand"
	"sort"
	"strings"
	"sync"
)

// journal is the record of what changed, by event sequence number. The
// watcher applies events to it; queries read it. It never forgets a change
// within an instance: a path's entry holds the sequence number of its last
// change, so "changed since seq" is every entry above seq.
type journal struct {
	mu   sync.Mutex
	inst [16]byte
	seq  uint64
	// ready is false until the watches are all in place: no token is
	// handed out before, since a change in a directory not yet watched
	// would go unreported.
	ready bool
	// broken, when set, says why nothing can be vouched for any more.
	broken string
	paths  map[string]uint64
	trees  map[string]uint64
	// unwatched holds the directories the watcher skips, the symbolic
	// links it found and the files with a name it does not hear, as they
	// are now: the watcher's state, not history.
	unwatched map[string]struct{}
	// limit bounds paths and trees (maxEntries).
	limit int
}

// maxEntries bounds the journal's memory: past it the journal starts a new
// instance, and builds holding older tokens stat everything once.
const maxEntries = 1 << 20

func newJournal() *journal {
	j := &journal{limit: maxEntries}
	j.reset()
	return j
}

// reset starts a new instance: every token handed out so far is void.
// Called with mu held, or before the journal is shared.
func (j *journal) reset() {
	if _, err := rand.Read(j.inst[:]); err != nil {
		panic("journal: no randomness: " + err.Error())
	}
	j.seq = 0
	j.ready = false
	j.paths = map[string]uint64{}
	j.trees = map[string]uint64{}
	j.unwatched = map[string]struct{}{}
}

// changed records that p itself changed.
func (j *journal) changed(p string) { j.record(p, false) }

// changedTree records that p and everything below it may have changed.
func (j *journal) changedTree(p string) { j.record(p, true) }

func (j *journal) record(p string, tree bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	if tree {
		j.trees[p] = j.seq
	} else {
		j.paths[p] = j.seq
	}
	if len(j.paths)+len(j.trees) > j.limit {
		// Rather than grow without bound, void every token: the next
		// build stats everything, as with no server. What is unwatched
		// now stays so: the watcher found it and will not again.
		ready, unwatched := j.ready, j.unwatched
		j.reset()
		j.ready, j.unwatched = ready, unwatched
	}
}

// setUnwatched records whether p is a path the journal cannot vouch for.
func (j *journal) setUnwatched(p string, on bool) {
	j.mu.Lock()
	if on {
		j.unwatched[p] = struct{}{}
	} else {
		delete(j.unwatched, p)
	}
	j.mu.Unlock()
}

// isUnwatched reports whether p is held unwatched itself.
func (j *journal) isUnwatched(p string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.unwatched[p]
	return ok
}

// forgetUnwatchedBelow drops the unwatched entries at or below p, which was
// removed.
func (j *journal) forgetUnwatchedBelow(p string) {
	j.mu.Lock()
	for q := range j.unwatched {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(j.unwatched, q)
		}
	}
	j.mu.Unlock()
}

// since answers what changed after tok. The caller has made sure every
// event that happened before the question was applied (Watcher.sync).
func (j *journal) since(tok Token) *Changes {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := &Changes{Now: Token{Instance: j.inst, Seq: j.seq}}
	switch {
	case j.broken != "":
		c.Why = j.broken
		c.Now = Token{}
		return c
	case !j.ready:
		c.Why = "the server is still setting up its watches"
		c.Now = Token{}
		return c
	case tok.IsZero():
		c.Why = "the last build had no token from this server"
		return c
	case tok.Instance != j.inst || tok.Seq > j.seq:
		c.Why = "the token is from another server instance (it restarted, or its queue overflowed)"
		return c
	}
	c.Complete = true
	for p, s := range j.paths {
		if s > tok.Seq {
			c.Paths = append(c.Paths, p)
		}
	}
	for p, s := range j.trees {
		if s > tok.Seq {
			c.Trees = append(c.Trees, p)
		}
	}
	for p := range j.unwatched {
		c.Unwatched = append(c.Unwatched, p)
	}
	sort.Strings(c.Paths)
	sort.Strings(c.Trees)
	sort.Strings(c.Unwatched)
	return c
}

// errNoWatch says the workspace cannot be watched (the watch limit, a
// network file system): the server says so to every build, which stats.
type errNoWatch struct{ msg string }

func (e *errNoWatch) Error() string { return e.msg }
