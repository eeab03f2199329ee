package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The watcher speaks to inotify directly rather than through fsnotify,
// because the journal's guarantee rests on three things fsnotify hides:
//
//   - ordering: a cookie file's event must come after every event that
//     happened before it was created. One inotify descriptor has one
//     queue, in order; fsnotify delivers a queue overflow on a separate
//     channel, unordered against the events;
//   - which directory an event came from after a rename: fsnotify names
//     events in a moved directory by its old path;
//   - the flags of each event (IN_ISDIR, IN_Q_OVERFLOW, IN_IGNORED).

// dirMask is what the watcher asks to hear about each directory.
const dirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// Skipped are the directory names the watcher does not descend into,
// anywhere in the workspace: version-control data, installed packages
// and pipe's state churn much and hold no sources. Paths below them are
// reported Unwatched, so a build stats them as it would without a server.
var skipped = map[string]bool{".git": true, ".hg": true, ".svn": true, ".pipe": true, "node_modules": true, ".venv": true}

// Watcher keeps a journal of one workspace's changes.
type Watcher struct {
	root string
	// given is the root as the caller named it, perhaps through a
	// symbolic link that may be re-pointed later.
	given string
	// rootID is the root directory's device and inode: a root that has
	// another identity (removed, replaced, or an ancestor renamed) is no
	// longer the one watched.
	rootID [2]uint64
	j      *journal

	mu     sync.Mutex // guards the fields below and the inotify descriptor's watches
	fd     int
	file   *os.File
	byWD   map[int32]string // watched directory by descriptor
	byPath map[string]int32
	// children lists each watched directory's watched subdirectories, so
	// forgetting a removed tree costs its size, not the workspace's.
	children map[string]map[string]struct{}
	cookie   int32 // the cookie directory's watch
	waiters  map[string]chan struct{}
	next     int
	// fatal is why the watcher stopped vouching for anything; the
	// server exits when it is set.
	fatal chan string

	// names holds the workspace paths of each regular file, by device
	// and inode, and ids the other way: a write is reported under the
	// name it was made through only, and is applied to the file's other
	// names here (written). Only the goroutine applying events (and the
	// start before it) touches them.
	names map[fileID][]string
	ids   map[string]fileID
	// links is each file's link count when last seen, for the files
	// with more than one.
	links map[fileID]uint64
	// walking defers the judgement of files with several names (judge)
	// to the end of the start's walk, which may not have met them all.
	walking bool
}

// fileID names a file by device and inode.
type fileID struct{ dev, ino uint64 }

// Watch starts watching the workspace at root. It returns once every
// directory is watched, when the journal hands out tokens.
func Watch(ctx context.Context, root string) (*Watcher, error) {
	if why := unsupportedFS(root); why != "" {
		return nil, &errNoWatch{why}
	}
	w, err := newWatcher(root)
	if err != nil {
		return nil, err
	}
	if err := w.start(); err != nil {
		// The watches made so far count against the user's limit until
		// their descriptor is closed.
		w.mu.Lock()
		if w.file != nil {
			w.file.Close()
		}
		w.mu.Unlock()
		return nil, err
	}
	go w.loop(ctx)
	go w.guardRoot(ctx)
	return w, nil
}

// newWatcher makes a watcher of the workspace at root, not yet started.
// The root is resolved first: inotify does not follow a symbolic link to
// the root (IN_DONT_FOLLOW), and the events name paths below the real
// directory.
func newWatcher(root string) (*Watcher, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("journal: workspace root: %w", err)
	}
	w := &Watcher{root: real, given: root, j: newJournal(), fatal: make(chan string, 1)}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, fmt.Errorf("journal: workspace root %s: %w", real, err)
	}
	w.rootID = [2]uint64{uint64(st.Dev), st.Ino}
	return w, nil
}

// checkRoot fails the watcher when the root directory is no longer the one
// watched. Its removal is not always an event: while a file below it is
// open (the server's lock and socket are), the kernel reports the root's
// deletion only once the last of them is closed; and the rename of an
// ancestor is no event at all, but every path the watcher resolves is
// then wrong.
func (w *Watcher) checkRoot() error {
	same := func(p string) bool {
		var st unix.Stat_t
		return unix.Stat(p, &st) == nil && [2]uint64{uint64(st.Dev), st.Ino} == w.rootID
	}
	if same(w.root) && (w.given == "" || same(w.given)) {
		return nil
	}
	why := "the workspace root " + w.given + " was removed, replaced, moved or re-pointed"
	w.fail(why)
	return errors.New(why)
}

// guardRoot checks the root now and then, so that a server whose
// workspace went away exits without waiting for a question.
func (w *Watcher) guardRoot(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.checkRoot() != nil {
				return
			}
		}
	}
}

// Fatal delivers the reason the watcher stopped vouching for anything.
func (w *Watcher) Fatal() <-chan string { return w.fatal }

// start opens an inotify descriptor and watches the whole workspace; the
// journal is ready when it returns. Called once, and again after a queue
// overflow with a fresh journal instance.
func (w *Watcher) start() error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	w.mu.Lock()
	w.fd = fd
	// A non-blocking descriptor in an *os.File reads through Go's poller,
	// so Close wakes the reader.
	w.file = os.NewFile(uintptr(fd), "inotify")
	w.byWD = map[int32]string{}
	w.byPath = map[string]int32{}
	w.children = map[string]map[string]struct{}{}
	w.names = map[fileID][]string{}
	w.links = map[fileID]uint64{}
	w.ids = map[string]fileID{}
	if w.waiters == nil {
		w.waiters = map[string]chan struct{}{}
	}
	w.cookie = -1
	w.mu.Unlock()
	if err := w.watchCookieDir(); err != nil {
		return err
	}
	w.walking = true
	err = w.watchTree(".")
	w.walking = false
	if err != nil {
		return err
	}
	for id := range w.links {
		w.judge(id)
	}
	// A question that came during a restart may have made its cookie
	// before the cookie watch was back, and would wait for it in vain.
	// Wake it now, while the journal is not ready: it is answered
	// incomplete, and its token (from before the restart) says nothing
	// here anyway.
	w.mu.Lock()
	for name, ch := range w.waiters {
		close(ch)
		delete(w.waiters, name)
	}
	w.mu.Unlock()
	w.j.mu.Lock()
	w.j.ready = true
	w.j.mu.Unlock()
	return nil
}

func (w *Watcher) abs(rel string) string {
	if rel == "." {
		return w.root
	}
	return filepath.Join(w.root, filepath.FromSlash(rel))
}

func (w *Watcher) watchCookieDir() error {
	dir := w.abs(cookieDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := unix.InotifyAddWatch(w.fd, dir, unix.IN_CREATE|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW)
	if err != nil {
		return w.watchErr(dir, err)
	}
	w.cookie = int32(wd)
	return nil
}

func (w *Watcher) watchErr(dir string, err error) error {
	if errors.Is(err, unix.ENOSPC) {
		limit, _ := os.ReadFile("/proc/sys/fs/inotify/max_user_watches")
		return &errNoWatch{fmt.Sprintf("inotify watch limit reached at %s (fs.inotify.max_user_watches=%s, %d directories watched): raise it, e.g. sudo sysctl fs.inotify.max_user_watches=524288",
			dir, strings.TrimSpace(string(limit)), len(w.byWD))}
	}
	return fmt.Errorf("watch %s: %w", dir, err)
}

// watchTree watches rel and every directory below it, and notes the
// skipped directories and symbolic links it finds. The watch on a
// directory is added before it is listed, so an entry made meanwhile is
// either listed or reported.
func (w *Watcher) watchTree(rel string) error {
	abs := w.abs(rel)
	w.mu.Lock()
	wd, err := unix.InotifyAddWatch(w.fd, abs, dirMask)
	if err == nil {
		if old, ok := w.byPath[rel]; ok && old != int32(wd) {
			delete(w.byWD, old)
		}
		if prev, ok := w.byWD[int32(wd)]; ok && prev != rel {
			// The kernel hands back the watch a directory already has: it
			// was watched at prev and has moved here, unseen (the
			// directory it moved into was not watched yet). Forget prev,
			// or the move's event there would take this watch away.
			delete(w.byPath, prev)
			if prev != "." {
				delete(w.children[path.Dir(prev)], prev)
			}
		}
		w.byWD[int32(wd)] = rel
		w.byPath[rel] = int32(wd)
		if rel != "." {
			parent := path.Dir(rel)
			if w.children[parent] == nil {
				w.children[parent] = map[string]struct{}{}
			}
			w.children[parent][rel] = struct{}{}
		}
	}
	w.mu.Unlock()
	if err != nil {
		if rel == "." {
			return w.watchErr(abs, err)
		}
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // gone already: its removal is an event of its own
		}
		if errors.Is(err, unix.EACCES) {
			w.j.setUnwatched(rel, true)
			return nil
		}
		return w.watchErr(abs, err)
	}
	entries, dirfd, err := readDir(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		w.j.setUnwatched(rel, true)
		return nil
	}
	var subdirs []string
	for _, e := range entries {
		child := join(rel, e.Name())
		switch t := e.Type(); {
		case t&os.ModeSymlink != 0:
			w.j.setUnwatched(child, true)
		case t.IsRegular():
			// Stat'ed relative to the directory: cheaper than by path.
			var st unix.Stat_t
			if unix.Fstatat(int(dirfd.Fd()), e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				w.file1(child, &st)
			}
		case t.IsDir():
			if skipped[e.Name()] {
				w.j.setUnwatched(child, true)
				continue
			}
			subdirs = append(subdirs, child)
		}
	}
	// Closed before descending, so a deep tree holds one descriptor.
	dirfd.Close()
	for _, child := range subdirs {
		if err := w.watchTree(child); err != nil {
			return err
		}
	}
	return nil
}

// readDir lists the directory at abs and returns it open, for stats
// relative to it; the caller closes it.
func readDir(abs string) ([]os.DirEntry, *os.File, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, nil, err
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return entries, f, nil
}

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// unwatchTree forgets the watches at and below rel, which was removed or
// renamed away; the kernel keeps a renamed directory's watch, so it is
// removed here.
func (w *Watcher) unwatchTree(rel string) {
	w.mu.Lock()
	if rel != "." {
		delete(w.children[path.Dir(rel)], rel)
	}
	w.unwatchLocked(rel)
	w.mu.Unlock()
	w.j.forgetUnwatchedBelow(rel)
}

func (w *Watcher) unwatchLocked(rel string) {
	for c := range w.children[rel] {
		w.unwatchLocked(c)
	}
	delete(w.children, rel)
	if wd, ok := w.byPath[rel]; ok {
		delete(w.byPath, rel)
		delete(w.byWD, wd)
		// A removed directory's watch is gone already (EINVAL); a renamed
		// one's stays with the directory unless removed.
		unix.InotifyRmWatch(w.fd, uint32(wd))
	}
}

// loop reads events until ctx is done or the watcher fails.
func (w *Watcher) loop(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		w.file.Close()
		w.mu.Unlock()
	}()
	buf := make([]byte, 256<<10)
	for {
		w.mu.Lock()
		f := w.file
		w.mu.Unlock()
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.fail("reading inotify events: " + err.Error())
			return
		}
		if !w.apply(buf[:n]) {
			if err := w.restart(f); err != nil {
				w.fail(err.Error())
				return
			}
		}
	}
}

// restart follows a queue overflow (events were lost): every token is
// void. It starts over with a fresh descriptor and instance; the questions
// waiting are answered (incomplete) at once. f is the descriptor's file
// the loop was reading.
func (w *Watcher) restart(f *os.File) error {
	// The journal is voided before the questions waiting are woken: one
	// woken first would be answered from the journal that lost events.
	w.j.mu.Lock()
	w.j.reset()
	w.j.mu.Unlock()
	w.mu.Lock()
	f.Close()
	for name, ch := range w.waiters {
		close(ch)
		delete(w.waiters, name)
	}
	w.mu.Unlock()
	return w.start()
}

func (w *Watcher) fail(why string) {
	w.j.mu.Lock()
	if w.j.broken == "" {
		w.j.broken = why
	}
	w.j.mu.Unlock()
	select {
	case w.fatal <- why:
	default:
	}
}

// apply applies a buffer of events, in order. It reports false when the
// journal must start over (event).
func (w *Watcher) apply(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return true
		}
		name := ""
		if ev.Len > 0 {
			raw := b[unix.SizeofInotifyEvent:end]
			for i, c := range raw {
				if c == 0 {
					raw = raw[:i]
					break
				}
			}
			name = string(raw)
		}
		b = b[end:]
		if !w.event(ev.Wd, ev.Mask, name) {
			return false
		}
	}
	return true
}

// event applies one event; false means the journal must start over: the
// queue overflowed.
func (w *Watcher) event(wd int32, mask uint32, name string) bool {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		return false
	}
	w.mu.Lock()
	if wd == w.cookie {
		if ch, ok := w.waiters[name]; ok {
			delete(w.waiters, name)
			close(ch)
		}
		if mask&unix.IN_IGNORED != 0 {
			w.cookie = -1
		}
		w.mu.Unlock()
		return true
	}
	dir, ok := w.byWD[wd]
	if ok && mask&unix.IN_IGNORED != 0 {
		delete(w.byWD, wd)
		if w.byPath[dir] == wd {
			delete(w.byPath, dir)
		}
		w.mu.Unlock()
		return true
	}
	w.mu.Unlock()
	if !ok {
		// A directory already forgotten (removed or renamed away): its
		// events were covered when it was.
		return true
	}
	if name == "" {
		// The directory itself.
		switch {
		case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 && dir == ".":
			w.fail("the workspace root was removed or renamed")
		case mask&unix.IN_ATTRIB != 0:
			w.j.changed(dir)
		}
		return true
	}
	p := join(dir, name)
	switch {
	case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		w.j.changed(dir)
		w.j.changedTree(p)
		w.added(p, name)
	case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		w.j.changed(dir)
		w.j.changedTree(p)
		if mask&unix.IN_ISDIR != 0 {
			w.unwatchTree(p)
			if mask&unix.IN_MOVED_FROM != 0 {
				// Its files took their names with them, perhaps out
				// of the workspace: a file with another name here may
				// now have one the watcher does not hear. (A removed
				// directory's files were removed first, each with its
				// event.)
				w.forgetBelow(p)
			}
		} else {
			w.j.setUnwatched(p, false)
			// The file may have other names here, and this one may
			// have gone where the watcher does not hear it (below
			// node_modules, out of the workspace): judge them again.
			id, ok := w.ids[p]
			w.forget(p)
			if ok {
				w.judge(id)
			}
		}
	case mask&(unix.IN_MODIFY|unix.IN_ATTRIB|unix.IN_CLOSE_WRITE) != 0:
		w.j.changed(p)
		if mask&unix.IN_ISDIR == 0 {
			// Its other names changed too. Those noted before the write
			// are in the index; a name made since came with its own
			// event.
			w.written(p)
			var st unix.Stat_t
			if unix.Lstat(w.abs(p), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				w.file1(p, &st)
			}
		}
	}
	return true
}

// file1 notes the regular file p, with stat st, as the walk or an event
// found it. A write through one of a file's workspace names is applied to
// all of them (written); whether the file has a name the watcher does not
// hear is judge's to say.
func (w *Watcher) file1(p string, st *unix.Stat_t) {
	id := fileID{uint64(st.Dev), uint64(st.Ino)}
	w.forget(p)
	w.names[id] = append(w.names[id], p)
	w.ids[p] = id
	if st.Nlink < 2 {
		if _, ok := w.links[id]; ok {
			delete(w.links, id)
			w.judge1(id, true)
		}
		return
	}
	w.links[id] = uint64(st.Nlink)
	if !w.walking {
		w.judge(id)
	}
}

// judge decides whether the journal can vouch for the names of the file
// id: only if every one of its names is a workspace name the watcher
// hears (outside the workspace, or below node_modules, a write goes
// unheard). When the answer changes, its names are reported changed.
func (w *Watcher) judge(id fileID) {
	n, ok := w.links[id]
	if !ok {
		return
	}
	heard := w.live(id)
	w.judge1(id, uint64(len(heard)) >= n)
}

// judge1 holds the names of the file id unwatched (vouch false) or not,
// and reports each name whose state it changes as changed.
func (w *Watcher) judge1(id fileID, vouch bool) {
	for _, q := range w.names[id] {
		if w.j.isUnwatched(q) == vouch {
			w.j.setUnwatched(q, !vouch)
			w.j.changed(q)
		}
	}
}

// written applies a write or chmod reported under p to p's file's other
// workspace names.
func (w *Watcher) written(p string) {
	for _, q := range w.others(p) {
		w.j.changed(q)
	}
}

// others returns the other workspace names of p's file (live).
func (w *Watcher) others(p string) []string {
	id, ok := w.ids[p]
	if !ok || len(w.names[id]) < 2 {
		// One name, p's: no stat for it (every write's event asks,
		// so this is the common case).
		return nil
	}
	var out []string
	for _, q := range w.live(id) {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// live returns the names of the file id that still name it; a name
// renamed away with its directory, or replaced, is forgotten.
func (w *Watcher) live(id fileID) []string {
	var out, stale []string
	for _, q := range w.names[id] {
		var st unix.Stat_t
		if unix.Lstat(w.abs(q), &st) == nil && uint64(st.Dev) == id.dev && uint64(st.Ino) == id.ino {
			out = append(out, q)
		} else {
			stale = append(stale, q)
		}
	}
	for _, q := range stale {
		w.forget(q)
	}
	return out
}

// forgetBelow forgets the names at or below the directory p, and judges
// their files again.
func (w *Watcher) forgetBelow(p string) {
	var ids []fileID
	for q, id := range w.ids {
		if strings.HasPrefix(q, p+"/") {
			w.forget(q)
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		w.judge(id)
	}
}

// forget drops p from the names of files (file1): it was removed, renamed
// away, or is noted again. A directory renamed away leaves its files'
// entries; others checks a name before it trusts it.
func (w *Watcher) forget(p string) {
	id, ok := w.ids[p]
	if !ok {
		return
	}
	delete(w.ids, p)
	g := w.names[id]
	for i, q := range g {
		if q == p {
			g = append(g[:i:i], g[i+1:]...)
			break
		}
	}
	if len(g) == 0 {
		delete(w.names, id)
	} else {
		w.names[id] = g
	}
}

// added handles a new entry p (named name) in a watched directory.
func (w *Watcher) added(p, name string) {
	var st unix.Stat_t
	if err := unix.Lstat(w.abs(p), &st); err != nil {
		// Gone again: its removal is a later event.
		return
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		w.j.setUnwatched(p, true)
	case unix.S_IFDIR:
		w.j.setUnwatched(p, false)
		if skipped[name] {
			w.j.setUnwatched(p, true)
			return
		}
		if err := w.watchTree(p); err != nil {
			w.fail(err.Error())
		}
	case unix.S_IFREG:
		w.j.setUnwatched(p, false)
		w.file1(p, &st)
	default:
		w.j.setUnwatched(p, false)
	}
}

// sync makes sure every event that happened before it was called has been
// applied: it creates a cookie file and waits for the file's own event,
// which the one queue delivers after all earlier ones.
func (w *Watcher) sync(ctx context.Context) error {
	w.mu.Lock()
	cookieGone := w.cookie < 0
	w.mu.Unlock()
	if cookieGone {
		if err := w.watchCookieDir(); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.next++
	name := "cookie-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(w.next)
	ch := make(chan struct{})
	w.waiters[name] = ch
	w.mu.Unlock()
	file := filepath.Join(w.abs(cookieDir), name)
	defer os.Remove(file)
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		w.mu.Lock()
		delete(w.waiters, name)
		w.mu.Unlock()
		if err := w.checkRoot(); err != nil {
			return err
		}
		return fmt.Errorf("journal cookie: %w", err)
	}
	f.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-ch:
		// Every event is in; the root must still be the one they are
		// about.
		return w.checkRoot()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		w.mu.Lock()
		delete(w.waiters, name)
		w.mu.Unlock()
		return errors.New("the journal did not see its own cookie within 5s")
	}
}

// Since answers what changed in the workspace after tok, once every event
// that happened before the call has been applied.
func (w *Watcher) Since(ctx context.Context, tok Token) *Changes {
	if err := w.sync(ctx); err != nil {
		return &Changes{Why: err.Error()}
	}
	return w.j.since(tok)
}

// unsupportedFS names file systems whose changes inotify does not see
// (made by other machines), or "" for a local one.
func unsupportedFS(root string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return "statfs " + root + ": " + err.Error()
	}
	switch uint32(st.Type) {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, 0xFF534D42 /* cifs */, 0xFE534D42, /* smb2 */
		unix.FUSE_SUPER_MAGIC, unix.V9FS_MAGIC, unix.CEPH_SUPER_MAGIC, unix.AFS_SUPER_MAGIC:
		return fmt.Sprintf("the workspace is on a network or FUSE file system (type %#x), whose changes inotify does not report", st.Type)
	}
	return ""
}

// Watched is how many directories the watcher watches.
func (w *Watcher) Watched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byWD)
}
