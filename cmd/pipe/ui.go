package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// ui reports build progress: a live line on a terminal, plain lines
// otherwise (CI logs), and the --events and --profile files.
type ui struct {
	g       *globalFlags
	w       io.Writer
	live    bool // redraw a progress line in place
	color   bool
	total   int
	mu      sync.Mutex
	done    int
	cached  int
	running map[*engine.Action]time.Time
	current string
	drawn   bool
	last    time.Time
	events  []*engine.ActionEvent
	starts  map[*engine.Action]int
	// stackEvents are pipe deploy's, recorded after the build's actions.
	stackEvents []stackEventRecord
	// remote is appended to the summary line when a remote cache is used.
	remote string
}

func newUI(g *globalFlags, w io.Writer, total int) (*ui, error) {
	u := &ui{g: g, w: w, total: total, running: map[*engine.Action]time.Time{}}
	tty := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		tty = true
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

// clearLine erases the live progress line before other output.
func (u *ui) clearLine() {
	if u.live && u.drawn {
		fmt.Fprint(u.w, "\r\x1b[K")
		u.drawn = false
	}
}

func (u *ui) draw(force bool) {
	if !u.live {
		return
	}
	now := time.Now()
	if !force && now.Sub(u.last) < 40*time.Millisecond {
		return
	}
	u.last = now
	line := fmt.Sprintf("[%d/%d] %d running · %d cached", u.done, u.total, len(u.running), u.cached)
	if u.current != "" {
		line += " · " + u.current
	}
	if width, _, err := term.GetSize(int(u.w.(*os.File).Fd())); err == nil && width > 10 && len(line) > width-1 {
		line = line[:width-2] + "…"
	}
	fmt.Fprint(u.w, "\r\x1b[K"+line)
	u.drawn = true
}

func (u *ui) ActionStarted(a *engine.Action, worker int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.running[a] = time.Now()
	u.current = a.Owner.String()
	u.draw(false)
}

func (u *ui) ActionProgress(a *engine.Action, msg string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.current = a.Owner.String() + " " + msg
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
		fmt.Fprintf(u.w, "%s %s (%s): %v\n", u.paint("1;31", "FAIL"), a.Owner, a.Mnemonic, ev.Err)
		if out := strings.TrimRight(ev.Output, "\n"); out != "" {
			fmt.Fprintln(u.w, indent(out))
		}
	case engine.StatusExecuted:
		if !u.live || u.g.verbose || ev.Explain != "" {
			u.clearLine()
			fmt.Fprintf(u.w, "[%d/%d] %s (%s)\n", u.done, u.total, describe(a), formatDuration(dur))
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
	if len(u.running) > 0 {
		for r := range u.running {
			u.current = r.Owner.String()
			break
		}
	}
	u.draw(false)
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
		var b strings.Builder
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
		if err := files.WriteAtomic(u.g.events, []byte(b.String()), 0o644); err != nil {
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
