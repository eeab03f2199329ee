package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pipebuild/pipe/internal/deploy"
)

// deployUI prints pipe deploy's progress, one whole block per event so the
// lines of concurrent stacks never interleave, and records the events for
// --events.
type deployUI struct {
	mu    sync.Mutex
	w     io.Writer
	rec   *ui // nil: nothing records
	start time.Time
	// quiet leaves out the lines of stacks with no changes (pipe watch
	// deploys every cycle).
	quiet bool
	// driftSaid is set once the note that hotswapped stacks differ from
	// their templates was printed: once per process is enough.
	driftSaid *bool
}

func newDeployUI(w io.Writer, rec *ui, start time.Time) *deployUI {
	return &deployUI{w: w, rec: rec, start: start, driftSaid: new(bool)}
}

// driftNote follows the first hotswapped stack.
const driftNote = "  note: hotswapped stacks differ from their templates until deployed without --hotswap (pipe records them in .pipe/hotswap/); the next pipe deploy deploys them and sets the functions back to the templates\n"

// StackEvent prints the event and records it.
func (d *deployUI) StackEvent(ev *deploy.StackEvent) {
	var b strings.Builder
	if !(d.quiet && ev.Kind == deploy.EventDone && ev.Status == deploy.StatusUnchanged) {
		writeStackEvent(&b, ev)
	}
	d.mu.Lock()
	if ev.Kind == deploy.EventDone && ev.Status == deploy.StatusHotswapped && !*d.driftSaid {
		*d.driftSaid = true
		b.WriteString(driftNote)
	}
	io.WriteString(d.w, b.String())
	d.mu.Unlock()
	if d.rec != nil {
		d.rec.addStackEvent(newStackEventRecord(ev, d.start))
	}
}

// withoutStack drops the "stack X: " an error starts with, for a line that
// names the stack already.
func withoutStack(s *deploy.Stack, err error) string {
	return strings.TrimPrefix(err.Error(), "stack "+s.Name()+": ")
}

func writeStackEvent(b *strings.Builder, ev *deploy.StackEvent) {
	name := ev.Stack.DisplayName
	line := func(format string, args ...any) {
		fmt.Fprintf(b, format+"\n", args...)
	}
	switch ev.Kind {
	case deploy.EventDeploying:
		line("%s: deploying (%s)", name, strings.Join(ev.Reasons, ", "))
	case deploy.EventHotswapping:
		line("%s: hotswapping (%s)", name, strings.Join(ev.Reasons, ", "))
	case deploy.EventHotswapFallback:
		line("%s: cannot hotswap, deploying with a change set:", name)
		for _, f := range ev.Fallback {
			line("  %s", f)
		}
	case deploy.EventHotswapped, deploy.EventReset:
		h := ev.Hotswap
		verb := "hotswapped"
		if ev.Kind == deploy.EventReset {
			verb = "set back to the template"
		}
		line("%s: %s %s (%s): %s (%s)", name, verb, h.LogicalID, h.PhysicalName, strings.Join(h.Changed, ", "), formatDuration(ev.Duration))
	case deploy.EventWaiting:
		line("%s: waiting for the stack's current operation (%s) to finish", name, ev.StackStatus)
	case deploy.EventRecreating:
		line("%s: deleting the stack left by a failed creation (%s) before creating it again", name, ev.StackStatus)
	case deploy.EventPublished:
		line("%s: uploaded %d asset%s", name, ev.Uploaded, plural(ev.Uploaded))
	case deploy.EventChangeSet:
		// The summary and the broadening are one block, so a concurrent
		// stack's lines cannot split what a reviewer reads.
		writeChangeSummary(b, name, ev.Changes)
		if len(ev.Broadening) > 0 {
			line("%s: IAM changes that broaden permissions:", name)
			for _, g := range ev.Broadening {
				line("  + %s", g)
			}
		}
	case deploy.EventResource:
		r := ev.Resource
		s := fmt.Sprintf("%s | %s | %s | %s", name, r.Status, r.Type, r.LogicalID)
		if r.Reason != "" && strings.HasSuffix(r.Status, "FAILED") {
			s += " | " + r.Reason
		}
		line("%s", s)
	case deploy.EventInterrupted:
		switch ev.Phase {
		case deploy.PhasePrepare:
			line("! %s: interrupted before any change to the stack (assets already uploaded stay; they are content-addressed)", name)
		case deploy.PhaseChangeSet:
			if ev.Err != nil {
				line("! %s: interrupted before executing; change set %s could not be deleted: %v", name, ev.ChangeSet, ev.Err)
			} else {
				line("! %s: interrupted before executing; change set deleted, the stack is unchanged", name)
			}
		case deploy.PhaseHotswap:
			line("! %s: interrupted while hotswapping: some functions may run the new code already; the stack stays recorded as hotswapped, and pipe deploy sets it right", name)
		case deploy.PhaseExecuting:
			if ev.Err != nil {
				line("! %s: interrupted while CloudFormation executes the change; its state could not be read: %v", name, ev.Err)
			} else {
				line("! %s: interrupted while CloudFormation executes the change: the stack is %s and CloudFormation carries on; pipe deploy again shows the result", name, ev.StackStatus)
			}
		}
	case deploy.EventDestroying:
		line("%s: deleting (%s)", name, ev.StackStatus)
	case deploy.EventDone:
		switch ev.Status {
		case deploy.StatusDestroyed:
			line("✓ %s (deleted, %.1fs)", name, ev.Duration.Seconds())
		case deploy.StatusAbsent:
			line("✓ %s (not deployed)", name)
		case deploy.StatusKept:
			line("- %s kept: %s", name, strings.TrimPrefix(withoutStack(ev.Stack, ev.Err), "not deleted: "))
		case deploy.StatusUnchanged:
			line("✓ %s (no changes)", name)
		case deploy.StatusDeployed:
			line("✓ %s (deployed, %.1fs)", name, ev.Duration.Seconds())
		case deploy.StatusHotswapped:
			line("✓ %s (hotswapped, %.1fs)", name, ev.Duration.Seconds())
		case deploy.StatusSkipped:
			dep := "a dependency"
			if ev.Dependency != nil {
				dep = ev.Dependency.DisplayName
			}
			line("- %s skipped: its dependency %s was not deployed", name, dep)
		case deploy.StatusFailed:
			// An interrupted stack said what it left behind.
			if !errors.Is(ev.Err, context.Canceled) {
				line("✗ %s: %s", name, withoutStack(ev.Stack, ev.Err))
			}
		}
	}
}

// writeChangeSummary prints what a change set does, one resource a line.
func writeChangeSummary(b *strings.Builder, name string, changes []deploy.ResourceChange) {
	fmt.Fprintf(b, "%s: %d change%s:\n", name, len(changes), plural(len(changes)))
	w := 0
	for _, c := range changes {
		w = max(w, len(c.Type))
	}
	for _, c := range changes {
		sym := "~"
		switch c.Action {
		case "Add":
			sym = "+"
		case "Remove":
			sym = "-"
		case "Import":
			sym = "←"
		}
		note := ""
		switch c.Replacement {
		case "True":
			note = "  (replacement)"
		case "Conditional":
			note = "  (may be replaced)"
		}
		fmt.Fprintf(b, "  %s %-*s %s%s\n", sym, w, c.Type, c.LogicalID, note)
	}
}

// dryRun prints what deploying the plans would do and returns what the
// summary line counts; the error joins the stacks that could not be read.
func (d *deployUI) dryRun(plans []*deploy.StackPlan) ([]*deploy.Result, error) {
	var results []*deploy.Result
	var errs []error
	for _, p := range plans {
		s := p.Stack
		r := &deploy.Result{Stack: s, Status: deploy.StatusWould, Outputs: p.Outputs}
		var b strings.Builder
		switch {
		case p.Err != nil:
			r.Status, r.Err = deploy.StatusFailed, p.Err
			errs = append(errs, p.Err)
			fmt.Fprintf(&b, "✗ %s: %s\n", s.DisplayName, withoutStack(s, p.Err))
		case p.UpToDate():
			r.Status = deploy.StatusUnchanged
			fmt.Fprintf(&b, "✓ %s (no changes)\n", s.DisplayName)
		case p.Hotswap != nil && p.Hotswap.Refused != nil:
			r.Status, r.Err = deploy.StatusFailed, p.Hotswap.Refused
			errs = append(errs, r.Err)
			fmt.Fprintf(&b, "✗ %s: %s\n", s.DisplayName, withoutStack(s, r.Err))
		case p.Hotswap.Hotswappable():
			r.Status = deploy.StatusWouldHotswap
			fmt.Fprintf(&b, "• %s would be hotswapped (%s)\n", s.DisplayName, strings.Join(p.Reasons, ", "))
			for _, l := range p.Hotswap.Layers {
				fmt.Fprintf(&b, "  layer %s: new version from s3://%s/%s\n", l.LogicalID, l.Content.Bucket, l.Content.Key)
			}
			for _, u := range p.Hotswap.Functions {
				fmt.Fprintf(&b, "  function %s (%s): %s\n", u.LogicalID, u.FunctionName, strings.Join(u.Changed(), ", "))
			}
			for _, a := range p.Hotswap.Aliases {
				fmt.Fprintf(&b, "  alias %s (%s): back to version %s\n", a.LogicalID, a.Name, a.Version)
			}
			if len(p.Hotswap.Layers)+len(p.Hotswap.Functions)+len(p.Hotswap.Aliases) == 0 {
				b.WriteString("  nothing to update: the functions have the template's values already\n")
			}
		default:
			fmt.Fprintf(&b, "• %s would be deployed (%s)\n", s.DisplayName, strings.Join(p.Reasons, ", "))
			if p.TemplateErr != nil {
				fmt.Fprintf(&b, "  (%s)\n", withoutStack(s, p.TemplateErr))
			} else {
				writeTemplateChanges(&b, p.Template)
			}
			for _, g := range p.Broadening {
				fmt.Fprintf(&b, "  IAM broadening: %s\n", g)
			}
			if h := p.Hotswap; h != nil {
				what := "deploy it with a change set"
				if h.Mode == deploy.HotswapOnly {
					what = "would refuse it (--hotswap-fallback=never)"
					r.Status, r.Err = deploy.StatusFailed, fmt.Errorf("stack %s cannot be hotswapped", s.Name())
					errs = append(errs, r.Err)
				}
				fmt.Fprintf(&b, "  cannot hotswap, %s:\n", what)
				for _, f := range h.Blockers {
					fmt.Fprintf(&b, "    %s\n", f)
				}
			}
			if p.Blocker != nil {
				fmt.Fprintf(&b, "  would fail: %v\n", p.Blocker)
			} else if n := p.Uploads(); n > 0 {
				fmt.Fprintf(&b, "  would upload %d asset%s\n", n, plural(n))
			}
		}
		results = append(results, r)
		d.mu.Lock()
		io.WriteString(d.w, b.String())
		d.mu.Unlock()
	}
	return results, errors.Join(errs...)
}

// renderDiff prints pipe diff: for each stack, how its template, tags and
// parameter values differ from the deployed stack's. It reports whether
// any differ; the error joins the stacks that could not be compared.
func renderDiff(w io.Writer, plans []*deploy.StackPlan) (bool, error) {
	found := false
	var errs []error
	for _, p := range plans {
		if p.Err != nil || p.TemplateErr != nil {
			errs = append(errs, errors.Join(p.Err, p.TemplateErr))
			continue
		}
		var b strings.Builder
		b.WriteString("Stack " + p.Stack.DisplayName)
		if !p.Exists {
			b.WriteString(" (not deployed)")
		}
		b.WriteString("\n")
		if drift := hotswapDrift(p.Hotswapped); drift != "" {
			found = true
			b.WriteString(drift)
		}
		if !p.Differs() {
			if p.Hotswapped == nil {
				b.WriteString("  There were no differences\n")
			}
		} else {
			found = true
			writeTemplateChanges(&b, p.Template)
			writeMapChanges(&b, "Tags", p.Tags)
			writeMapChanges(&b, "Parameter values", p.Parameters)
			if len(p.Broadening) > 0 {
				b.WriteString("  IAM changes that broaden permissions (deploying asks for approval):\n")
				for _, g := range p.Broadening {
					fmt.Fprintf(&b, "  [+] %s\n", g)
				}
			}
		}
		b.WriteString("\n")
		io.WriteString(w, b.String())
	}
	return found, errors.Join(errs...)
}

// hotswapDrift says what hotswaps changed behind CloudFormation's back on
// a stack (its record), function by function; "" without a record.
func hotswapDrift(rec *deploy.HotswapRecord) string {
	if rec == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  Hotswapped since its last deployment (last at %s): the deployed resources differ from the deployed template; pipe deploy sets them back\n", rec.Last.Local().Format("2006-01-02 15:04:05"))
	ids := make([]string, 0, len(rec.Functions))
	for id := range rec.Functions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := rec.Functions[id]
		var what []string
		if f.Code != nil {
			what = append(what, "code (s3://"+f.Code.Bucket+"/"+f.Code.Key+")")
		}
		if len(f.Environment) > 0 {
			names := make([]string, 0, len(f.Environment))
			for k := range f.Environment {
				names = append(names, k)
			}
			sort.Strings(names)
			what = append(what, "environment ("+strings.Join(names, ", ")+")")
		}
		if f.Description != nil {
			what = append(what, "description")
		}
		if f.Layers != nil {
			what = append(what, "layers")
		}
		fmt.Fprintf(&b, "  [~] AWS::Lambda::Function %s: %s\n", id, strings.Join(what, ", "))
	}
	aliases := make([]string, 0, len(rec.Aliases))
	for a := range rec.Aliases {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, a := range aliases {
		fmt.Fprintf(&b, "  [~] AWS::Lambda::Alias %s: moved to version %s\n", a, rec.Aliases[a])
	}
	return b.String()
}

// writeTemplateChanges prints template differences section by section,
// resource by resource, with the changed properties' paths.
func writeTemplateChanges(b *strings.Builder, changes []deploy.TemplateChange) {
	section := ""
	for _, c := range changes {
		if c.Section == "" {
			for _, v := range c.Values {
				fmt.Fprintf(b, "  %s\n", valueChange(v))
			}
			continue
		}
		if c.Section != section {
			fmt.Fprintf(b, "  %s\n", c.Section)
			section = c.Section
		}
		kind := ""
		if c.Section == "Resources" {
			kind = c.Type + " "
		}
		switch c.Kind {
		case deploy.Added:
			fmt.Fprintf(b, "  [+] %s%s\n", kind, c.Name)
		case deploy.Removed:
			fmt.Fprintf(b, "  [-] %s%s\n", kind, c.Name)
		default:
			note := ""
			if c.OldType != "" {
				note = fmt.Sprintf(" (type %s → %s: replaced)", c.OldType, c.Type)
			}
			fmt.Fprintf(b, "  [~] %s%s%s\n", kind, c.Name, note)
			for _, v := range c.Values {
				fmt.Fprintf(b, "       %s\n", valueChange(v))
			}
		}
	}
}

func valueChange(v deploy.ValueChange) string {
	switch v.Kind {
	case deploy.Added:
		return fmt.Sprintf("+ %s: %s", v.Path, v.New)
	case deploy.Removed:
		return fmt.Sprintf("- %s: %s", v.Path, v.Old)
	}
	return fmt.Sprintf("%s: %s → %s", v.Path, v.Old, v.New)
}

// writeMapChanges prints the differences of tags or parameter values.
func writeMapChanges(b *strings.Builder, what string, changes []deploy.MapChange) {
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(b, "  %s\n", what)
	for _, c := range changes {
		switch c.Kind {
		case deploy.Added:
			fmt.Fprintf(b, "  [+] %s = %s\n", c.Key, c.New)
		case deploy.Removed:
			fmt.Fprintf(b, "  [-] %s = %s\n", c.Key, c.Old)
		default:
			fmt.Fprintf(b, "  [~] %s: %s → %s\n", c.Key, c.Old, c.New)
		}
	}
}

// stackEventRecord is one line of --events for a deploy event. Action
// lines have no "kind"; these have "kind": "stack".
type stackEventRecord struct {
	Kind       string   `json:"kind"`
	Stack      string   `json:"stack"`
	StackName  string   `json:"stack_name"`
	Event      string   `json:"event"`
	Status     string   `json:"status,omitempty"`
	TimeMs     float64  `json:"time_ms"`
	DurationMs float64  `json:"duration_ms,omitempty"`
	Reasons    []string `json:"reasons,omitempty"`
	Uploaded   int      `json:"uploaded,omitempty"`
	Changes    int      `json:"changes,omitempty"`
	Broadening []string `json:"broadening,omitempty"`
	Resource   string   `json:"resource,omitempty"`
	Type       string   `json:"type,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Phase      string   `json:"phase,omitempty"`
	Dependency string   `json:"dependency,omitempty"`
	Error      string   `json:"error,omitempty"`
	// Physical and Changed describe a hotswapped (or reset) resource;
	// Fallback lists why a stack could not be hotswapped.
	Physical string   `json:"physical,omitempty"`
	Changed  []string `json:"changed,omitempty"`
	Fallback []string `json:"fallback,omitempty"`
}

func newStackEventRecord(ev *deploy.StackEvent, start time.Time) stackEventRecord {
	rec := stackEventRecord{
		Kind:       "stack",
		Stack:      ev.Stack.DisplayName,
		StackName:  ev.Stack.StackName,
		Event:      string(ev.Kind),
		Status:     string(ev.Status),
		TimeMs:     float64(ev.Time.Sub(start).Microseconds()) / 1000,
		DurationMs: float64(ev.Duration.Microseconds()) / 1000,
		Reasons:    ev.Reasons,
		Uploaded:   ev.Uploaded,
		Changes:    len(ev.Changes),
		Broadening: ev.Broadening,
		Phase:      string(ev.Phase),
	}
	switch ev.Kind {
	case deploy.EventResource:
		rec.Status, rec.Resource, rec.Type, rec.Reason = ev.Resource.Status, ev.Resource.LogicalID, ev.Resource.Type, ev.Resource.Reason
	case deploy.EventWaiting, deploy.EventRecreating, deploy.EventInterrupted:
		if ev.StackStatus != "" {
			rec.Status = ev.StackStatus
		}
	}
	if ev.Dependency != nil {
		rec.Dependency = ev.Dependency.DisplayName
	}
	if h := ev.Hotswap; h != nil {
		rec.Resource, rec.Type, rec.Physical, rec.Changed = h.LogicalID, h.Type, h.PhysicalName, h.Changed
	}
	for _, f := range ev.Fallback {
		rec.Fallback = append(rec.Fallback, f.String())
	}
	if ev.Err != nil {
		rec.Error = ev.Err.Error()
	}
	return rec
}
