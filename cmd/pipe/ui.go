package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// ui reports build progress: a live display on a terminal, plain lines
// otherwise (CI logs), and the --events and --profile files.
//
// The live display is a status line and, when the terminal has room, one
// line per running action with its elapsed time (else the longest-running
// one on the status line). It is redrawn on every event and on a timer, so
// a long action's time keeps counting and the display never shows a state
// an event has since changed.
type ui struct {
	g     *globalFlags
	w     io.Writer
	live  bool // redraw the display in place
	color bool
	// size is the terminal's width and height; ok is false when unknown.
	size  func() (width, height int, ok bool)
	total int

	mu      sync.Mutex
	done    int
	cached  int
	running map[*engine.Action]*runningAction
	drawn   int // lines of the live display on screen now
	last    time.Time
	events  []*engine.ActionEvent
	// stackEvents are pipe deploy's, recorded after the build's actions.
	stackEvents []stackEventRecord
	// remote is appended to the summary line when a remote cache is used.
	remote string

	// The redraw timer runs from the first started action to finish.
	tick     time.Duration
	stopTick chan struct{}
	tickDone chan struct{}
}

// runningAction is an executing action as the display shows it.
type runningAction struct {
	start    time.Time
	progress string
}

// redrawEvery is how often the live display is redrawn without events:
// often enough for elapsed times to count in tenths of a second.
const redrawEvery = 100 * time.Millisecond

func newUI(g *globalFlags, w io.Writer, total int) (*ui, error) {
	u := &ui{g: g, w: w, total: total, running: map[*engine.Action]*runningAction{}, tick: redrawEvery}
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		tty = true
		u.size = func() (int, int, bool) {
			width, height, err := term.GetSize(int(f.Fd()))
			return width, height, err == nil && width > 0 && height > 0
		}
	}
	switch g.color {
	case "auto":
		u.color = tty && os.Getenv("NO_COLOR") == ""
		u.live = tty
	case "always":
		u.color, u.live = true, tty
	case "never":
		u.color, u.live = false, false
	default:
		return nil, engine.Usagef("--color %q: want auto, always or never", g.color)
	}
	return u, nil
}

func (u *ui) paint(code, s string) string {
	if !u.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// clearLine erases the live display before other output.
func (u *ui) clearLine() {
	if u.live && u.drawn > 0 {
		fmt.Fprint(u.w, eraseLines(u.drawn))
		u.drawn = 0
	}
}

// eraseLines moves from the end of the last of n drawn lines to the start
// of the first and clears everything below.
func eraseLines(n int) string {
	s := "\r"
	if n > 1 {
		s += fmt.Sprintf("\x1b[%dA", n-1)
	}
	return s + "\x1b[J"
}

// draw redraws the live display; unless force, at most every 40ms, since
// the timer catches up with whatever a skipped draw would have shown.
func (u *ui) draw(force bool) {
	if !u.live {
		return
	}
	now := time.Now()
	if !force && now.Sub(u.last) < 40*time.Millisecond {
		return
	}
	u.last = now
	width, height, ok := 0, 0, false
	if u.size != nil {
		width, height, ok = u.size()
	}
	lines := u.frame(now, width, height, ok)
	out := ""
	if u.drawn > 0 {
		out = eraseLines(u.drawn)
	}
	fmt.Fprint(u.w, out+strings.Join(lines, "\n"))
	u.drawn = len(lines)
}

// frame is the live display at now: the status line, then one line per
// running action, longest-running first, when the terminal has room for
// them (height known, and a line to spare); else the status line names the
// longest-running action. Every line fits the width.
func (u *ui) frame(now time.Time, width, height int, sized bool) []string {
	type entry struct {
		a *engine.Action
		r *runningAction
	}
	var rs []entry
	for a, r := range u.running {
		rs = append(rs, entry{a, r})
	}
	sort.Slice(rs, func(i, j int) bool {
		if !rs[i].r.start.Equal(rs[j].r.start) {
			return rs[i].r.start.Before(rs[j].r.start)
		}
		return rs[i].a.Owner.Less(rs[j].a.Owner)
	})
	label := func(e entry) string {
		s := describe(e.a)
		if e.r.progress != "" {
			s += " (" + e.r.progress + ")"
		}
		return s + " " + formatElapsed(now.Sub(e.r.start))
	}
	status := fmt.Sprintf("[%d/%d] %d running · %d cached", u.done, u.total, len(rs), u.cached)
	lines := []string{status}
	if sized && len(rs) > 0 && len(rs)+2 <= height {
		for _, e := range rs {
			lines = append(lines, "  "+label(e))
		}
	} else if len(rs) > 0 {
		lines[0] += " · " + label(rs[0])
		if len(rs) > 1 {
			lines[0] += fmt.Sprintf(" (+%d more)", len(rs)-1)
		}
	}
	if sized && width > 10 {
		for i, l := range lines {
			lines[i] = fit(l, width-1)
		}
	}
	return lines
}

// fit cuts s to at most n runes, marking the cut.
func fit(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// formatElapsed is a running action's time so far: tenths of a second,
// then minutes.
func formatElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// startTimer redraws the display every u.tick until finish; mu is held.
func (u *ui) startTimer() {
	if !u.live || u.stopTick != nil {
		return
	}
	u.stopTick, u.tickDone = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(u.tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				u.mu.Lock()
				u.draw(true)
				u.mu.Unlock()
			}
		}
	}(u.stopTick, u.tickDone)
}

// stopTimer ends the redraw timer; mu must not be held.
func (u *ui) stopTimer() {
	u.mu.Lock()
	stop, done := u.stopTick, u.tickDone
	u.stopTick = nil
	u.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// warn prints a warning that is not about one action (the remote cache's)
// above the live display.
func (u *ui) warn(msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLine()
	fmt.Fprintf(u.w, "pipe: warning: %s\n", msg)
	u.draw(true)
}

func (u *ui) ActionStarted(a *engine.Action, worker int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running[a] = &runningAction{start: time.Now()}
	u.startTimer()
	u.draw(false)
}

func (u *ui) ActionProgress(a *engine.Action, msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r, ok := u.running[a]; ok {
		r.progress = msg
	}
	u.draw(false)
}

func (u *ui) ActionFinished(ev *engine.ActionEvent) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.running, ev.Action)
	u.events = append(u.events, ev)
	u.done++
	if ev.Status == engine.StatusCached {
		u.cached++
	}
	a := ev.Action
	dur := ev.End.Sub(ev.Start)
	if ev.Warning != "" {
		u.clearLine()
		fmt.Fprintf(u.w, "%s %s: %s\n", u.paint("1;33", "WARNING:"), a.Owner, ev.Warning)
	}
	switch ev.Status {
	case engine.StatusFailed:
		u.clearLine()
		u.printFailure(ev)
	case engine.StatusExecuted:
		if !u.live || u.g.verbose || ev.Explain != "" {
			u.clearLine()
			fmt.Fprintf(u.w, "[%d/%d] %s (%s)\n", u.done, u.total, describe(a), formatDuration(dur))
		}
		if u.g.verbose {
			u.printCommand(a, true)
		}
		if ev.Explain != "" {
			fmt.Fprintf(u.w, "  %s %s\n", u.paint("36", "why:"), ev.Explain)
		}
		if out := strings.TrimRight(ev.Output, "\n"); out != "" {
			u.clearLine()
			fmt.Fprintf(u.w, "%s %s:\n%s\n", u.paint("1;32", "INFO: From"), describe(a), indent(out))
		}
	case engine.StatusCached:
		if u.g.verbose {
			u.clearLine()
			note := ""
			if ev.Restored > 0 {
				note = fmt.Sprintf(", %d outputs restored", ev.Restored)
			}
			fmt.Fprintf(u.w, "[%d/%d] cached %s %s%s\n", u.done, u.total, a.Mnemonic, a.Owner, note)
		}
	}
	u.draw(true)
}

// printFailure shows what failed and how to look into it: the error, the
// command (whole with --verbose, else its first line), what the action
// printed, and the kept scratch directory (--sandbox-debug) or how to
// keep it.
func (u *ui) printFailure(ev *engine.ActionEvent) {
	a := ev.Action
	fmt.Fprintf(u.w, "%s %s (%s): %v\n", u.paint("1;31", "FAIL"), a.Owner, a.Mnemonic, ev.Err)
	u.printCommand(a, u.g.verbose)
	if out := strings.TrimRight(ev.Output, "\n"); out != "" {
		fmt.Fprintln(u.w, indent(out))
	}
	var kept *engine.KeptScratchError
	switch {
	case errors.As(ev.Err, &kept):
		fmt.Fprintf(u.w, "  scratch directory kept: %s (the next build removes it)\n", kept.Dir)
		if a.Argv != nil {
			fmt.Fprintf(u.w, "  run the command there by hand:\n    cd %s && %s\n", shellQuote(kept.Dir), handCommand(a))
		}
	case a.Argv != nil:
		fmt.Fprintf(u.w, "  (--sandbox-debug keeps the scratch directory and shows how to run the command there by hand)\n")
	}
}

// printCommand prints the command an action ran, if it ran one: all of it,
// or its first line and how many more there are.
func (u *ui) printCommand(a *engine.Action, whole bool) {
	cmd := commandText(a)
	if cmd == "" {
		return
	}
	lines := strings.Split(strings.TrimRight(cmd, "\n"), "\n")
	if !whole && len(lines) > 1 {
		fmt.Fprintf(u.w, "  $ %s\n    … %d more line%s (--verbose prints the whole command)\n", lines[0], len(lines)-1, plural(len(lines)-1))
		return
	}
	fmt.Fprintf(u.w, "  $ %s\n", strings.Join(lines, "\n    "))
}

// commandText is the command a shell action runs (a genrule's expanded
// cmd), or the argv of any other command; "" for in-process steps.
func commandText(a *engine.Action) string {
	n := len(a.Argv)
	if n == 0 {
		return ""
	}
	if n >= 3 && a.Argv[n-2] == "-c" {
		switch filepath.Base(a.Argv[0]) {
		case "bash", "sh":
			return a.Argv[n-1]
		}
	}
	return shellJoin(a.Argv)
}

// handCommand is the action's command line with exactly its environment,
// for a shell.
func handCommand(a *engine.Action) string {
	keys := make([]string, 0, len(a.Env))
	for k := range a.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{"env", "-i"}
	for _, k := range keys {
		parts = append(parts, shellQuote(k+"="+a.Env[k]))
	}
	return strings.Join(parts, " ") + " " + shellJoin(a.Argv)
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, s := range argv {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for a shell when it needs it. A string with line
// breaks or other control characters gets bash's $'...' form, so a
// multi-line genrule command stays on the one line a user copies.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@%") == "" {
		return s
	}
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func describe(a *engine.Action) string {
	if a.Description != "" {
		return a.Description
	}
	return a.Mnemonic + " " + a.Owner.String()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func formatDuration(d time.Duration) string {
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// finish prints the summary line every build ends with.
func (u *ui) finish(sum engine.Summary, err error) {
	u.stopTimer()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLine()
	var bf *engine.BuildFailedError
	if errors.As(err, &bf) && len(bf.Failed) > 0 {
		// A target with several failed actions (--keep-going) is one
		// failure to fix: name it once.
		var labels []string
		seen := map[engine.Label]bool{}
		for _, f := range bf.Failed {
			if !seen[f.Action.Owner] {
				seen[f.Action.Owner] = true
				labels = append(labels, f.Action.Owner.String())
			}
		}
		fmt.Fprintf(u.w, "%s %s\n", u.paint("1;31", "failed:"), strings.Join(labels, " "))
	}
	if sum.Skipped > 0 {
		fmt.Fprintf(u.w, "%d actions not run: a dependency failed or the build stopped\n", sum.Skipped)
	}
	line := fmt.Sprintf("%d actions: %d executed, %d cached, %d failed (%s)", sum.Total, sum.Executed, sum.Cached, sum.Failed, formatDuration(sum.Duration))
	if u.remote != "" {
		line += "; " + u.remote
	}
	if sum.Failed > 0 {
		line = u.paint("31", line)
	} else if u.color {
		line = u.paint("32", line)
	}
	fmt.Fprintln(u.w, line)
}

// eventRecord is one line of --events.
type eventRecord struct {
	Label      string   `json:"label"`
	Mnemonic   string   `json:"mnemonic"`
	Key        string   `json:"key,omitempty"`
	Status     string   `json:"status"`
	Cached     bool     `json:"cached"`
	DurationMs float64  `json:"duration_ms"`
	StartMs    float64  `json:"start_ms"`
	Restored   int      `json:"restored,omitempty"`
	Outputs    []string `json:"outputs"`
	Error      string   `json:"error,omitempty"`
	Explain    string   `json:"explain,omitempty"`
}

// writeFiles writes --events and --profile, each atomically.
func (u *ui) writeFiles(phases []engine.Phase, start time.Time) error {
	if err := u.writeEvents(start); err != nil {
		return err
	}
	if u.g.profile != "" {
		if err := writeTrace(u.g.profile, u.sortedEvents(), phases, start); err != nil {
			return fmt.Errorf("write --profile %s: %w", u.g.profile, err)
		}
	}
	return nil
}

// sortedEvents are the actions' events by start time.
func (u *ui) sortedEvents() []*engine.ActionEvent {
	u.mu.Lock()
	evs := append([]*engine.ActionEvent(nil), u.events...)
	u.mu.Unlock()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Start.Before(evs[j].Start) })
	return evs
}

// addStackEvent records one of pipe deploy's events for --events.
func (u *ui) addStackEvent(rec stackEventRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stackEvents = append(u.stackEvents, rec)
}

// writeEvents writes --events atomically: one line per action, then one
// per deploy event. pipe deploy writes it again when the deployment ends,
// so the file holds both.
func (u *ui) writeEvents(start time.Time) error {
	evs := u.sortedEvents()
	u.mu.Lock()
	stackEvs := append([]stackEventRecord(nil), u.stackEvents...)
	u.mu.Unlock()
	if u.g.events != "" {
		// One line is ~250 bytes: sized once, a build of 10,000 actions
		// does not copy its events as the buffer grows.
		var b bytes.Buffer
		b.Grow(256 * (len(evs) + len(stackEvs)))
		enc := json.NewEncoder(&b)
		for _, ev := range evs {
			rec := eventRecord{
				Label:      ev.Action.Owner.String(),
				Mnemonic:   ev.Action.Mnemonic,
				Status:     string(ev.Status),
				Cached:     ev.Status == engine.StatusCached,
				DurationMs: float64(ev.End.Sub(ev.Start).Microseconds()) / 1000,
				StartMs:    float64(ev.Start.Sub(start).Microseconds()) / 1000,
				Restored:   ev.Restored,
				Outputs:    []string{},
			}
			if !ev.Key.IsZero() {
				rec.Key = ev.Key.String()
			}
			for _, o := range ev.Action.Outputs {
				rec.Outputs = append(rec.Outputs, o.Path)
			}
			if ev.Err != nil {
				rec.Error = ev.Err.Error()
			}
			rec.Explain = ev.Explain
			enc.Encode(rec)
		}
		for _, rec := range stackEvs {
			enc.Encode(rec)
		}
		if err := files.WriteAtomic(u.g.events, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write --events %s: %w", u.g.events, err)
		}
	}
	return nil
}

// traceEvent is a Chrome trace "complete" event (Perfetto reads these).
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat"`
	Ph   string         `json:"ph"`
	Ts   int64          `json:"ts"`
	Dur  int64          `json:"dur"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

func writeTrace(path string, evs []*engine.ActionEvent, phases []engine.Phase, start time.Time) error {
	us := func(t time.Time) int64 { return t.Sub(start).Microseconds() }
	var out []any
	out = append(out,
		map[string]any{"name": "process_name", "ph": "M", "pid": 1, "args": map[string]any{"name": "pipe"}},
		map[string]any{"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": map[string]any{"name": "phases"}},
	)
	for _, p := range phases {
		out = append(out, traceEvent{Name: p.Name, Cat: "phase", Ph: "X", Ts: us(p.Start), Dur: max(1, p.End.Sub(p.Start).Microseconds()), Pid: 1, Tid: 0})
	}
	for _, ev := range evs {
		if ev.Status == engine.StatusSkipped {
			continue
		}
		tid := ev.Worker
		if ev.Status == engine.StatusCached {
			tid = 100 // cache checks get their own track
		}
		args := map[string]any{"status": string(ev.Status), "mnemonic": ev.Action.Mnemonic}
		if !ev.Key.IsZero() {
			args["key"] = ev.Key.String()
		}
		out = append(out, traceEvent{
			Name: ev.Action.Owner.String(), Cat: ev.Action.Mnemonic, Ph: "X",
			Ts: us(ev.Start), Dur: max(1, ev.End.Sub(ev.Start).Microseconds()),
			Pid: 1, Tid: tid, Args: args,
		})
	}
	b, err := json.Marshal(map[string]any{"traceEvents": out, "displayTimeUnit": "ms"})
	if err != nil {
		return err
	}
	return files.WriteAtomic(path, b, 0o644)
}
