package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/dominikbraun/graph"

	"github.com/pipebuild/pipe/internal/dag"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Concurrency bounds the stacks deploying at once (default 4).
	Concurrency int
	// AssetConcurrency bounds the uploads in flight (default 8).
	AssetConcurrency int
	// Prompt asks a person a yes/no question; nil when nobody can answer
	// (no terminal), in which case changes needing approval are refused.
	// Questions never overlap.
	Prompt func(question string) (bool, error)
	// Zips are directories the build already zipped.
	Zips []PrebuiltZip
}

// Status is how a stack's deployment ended.
type Status string

const (
	StatusUnchanged  Status = "unchanged"
	StatusDeployed   Status = "deployed"
	StatusWould      Status = "would deploy" // --dry-run
	StatusFailed     Status = "failed"
	StatusSkipped    Status = "skipped" // a dependency was not deployed
	StatusNotStarted Status = "not started"
	StatusDestroyed  Status = "destroyed"    // pipe destroy
	StatusAbsent     Status = "not deployed" // pipe destroy: nothing to delete
	StatusKept       Status = "kept"         // pipe destroy: a dependent was not deleted
)

// Result is one stack's outcome.
type Result struct {
	Stack      *Stack
	Status     Status
	Outputs    map[string]string
	Err        error
	Start, End time.Time
}

// ErrRefused marks a deployment a person (or the lack of one) declined.
var ErrRefused = errors.New("not approved")

// Apply deploys the planned stacks, each after the stacks it depends on,
// independent ones concurrently, reporting each step to r. A stack the
// plan found up to date is reported unchanged at once, with no call at
// all. It returns every stack's result in the plans' order; the error is
// non-nil when a stack failed, or ctx's error when it was cancelled (no
// new stack starts; those in flight report what they leave behind).
func Apply(ctx context.Context, cfg aws.Config, plans []*StackPlan, opt ApplyOptions, r Reporter) ([]*Result, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 4
	}
	if r == nil {
		r = ReporterFunc(func(*StackEvent) {})
	}
	for _, p := range plans {
		if p.diffOnly {
			return nil, fmt.Errorf("stack %s: the plan was made for pipe diff (PlanOptions.DiffOnly) and cannot be applied", p.Stack.Name())
		}
	}
	a := &applier{opt: opt, env: newAWSEnv(cfg), r: r}
	a.pub = newPublisher(a.env, opt.AssetConcurrency, opt.Zips)

	results := make([]*Result, len(plans))
	for i, p := range plans {
		results[i] = &Result{Stack: p.Stack}
	}
	g, err := applyGraph(plans)
	if err != nil {
		return nil, err
	}
	// Up-to-date stacks are done before anything starts.
	for i, p := range plans {
		if p.UpToDate() {
			now := time.Now()
			res := results[i]
			res.Status, res.Outputs, res.Start, res.End = StatusUnchanged, p.Outputs, now, now
			a.emit(&StackEvent{Kind: EventDone, Stack: p.Stack, Status: StatusUnchanged, Outputs: p.Outputs})
		}
	}
	skipped := func(i int, reason error) {
		p, res := plans[i], results[i]
		now := time.Now()
		res.Start, res.End = now, now
		ev := &StackEvent{Kind: EventDone, Stack: p.Stack}
		var de *dag.DependencyError[int]
		if errors.As(reason, &de) {
			dep := plans[de.Dep].Stack
			res.Status = StatusSkipped
			res.Err = fmt.Errorf("stack %s: not deployed: its dependency %s was not deployed", p.Stack.Name(), dep.DisplayName)
			ev.Dependency = dep
		} else {
			res.Status = StatusNotStarted
		}
		ev.Status, ev.Err = res.Status, res.Err
		a.emit(ev)
	}
	walkErr := dag.Walk(ctx, g, dag.Options[int]{
		Concurrency: opt.Concurrency,
		KeepGoing:   true,
		Skipped:     skipped,
		Less:        func(x, y int) bool { return x < y },
	}, func(ctx context.Context, i int) error {
		p, res := plans[i], results[i]
		if p.UpToDate() {
			return nil
		}
		res.Start = time.Now()
		if p.Err != nil {
			res.Status, res.Err = StatusFailed, p.Err
		} else {
			res.Outputs, res.Status, res.Err = a.applyStack(ctx, p)
		}
		res.End = time.Now()
		a.emit(&StackEvent{Kind: EventDone, Stack: p.Stack, Status: res.Status, Err: res.Err, Outputs: res.Outputs, Duration: res.End.Sub(res.Start)})
		if res.Status == StatusFailed {
			return res.Err
		}
		return nil
	})
	if ctx.Err() != nil {
		return results, ctx.Err()
	}
	if walkErr != nil && !anyFailed(results) {
		return results, walkErr // the walk itself failed (a cycle)
	}
	var errs []error
	for _, res := range results {
		if res.Status == StatusFailed {
			errs = append(errs, res.Err)
		}
	}
	return results, errors.Join(errs...)
}

func anyFailed(results []*Result) bool {
	for _, r := range results {
		if r.Status == StatusFailed {
			return true
		}
	}
	return false
}

// applyGraph is the order of deployment: an edge from each stack to each
// stack it needs deployed first. An up-to-date stack needs nothing done,
// so it waits for nothing; a stack depending on it waits instead for the
// stacks it depends on that do change, so the order among changing stacks
// is the assembly's.
func applyGraph(plans []*StackPlan) (graph.Graph[int, int], error) {
	index := make(map[*Stack]int, len(plans))
	for i, p := range plans {
		index[p.Stack] = i
	}
	g := graph.New(graph.IntHash, graph.Directed())
	for i := range plans {
		_ = g.AddVertex(i)
	}
	// changing returns the stacks i must wait for: its dependencies that
	// change, looking through those that do not. LoadAssemblies refuses
	// cycles; onPath only keeps a malformed input from recursing forever.
	memo := map[int][]int{}
	onPath := map[int]bool{}
	var changing func(i int) []int
	changing = func(i int) []int {
		if got, ok := memo[i]; ok {
			return got
		}
		onPath[i] = true
		defer delete(onPath, i)
		var out []int
		for _, d := range plans[i].Stack.Deps {
			j, ok := index[d]
			if !ok || onPath[j] {
				continue // not selected
			}
			if plans[j].UpToDate() {
				out = append(out, changing(j)...)
			} else {
				out = append(out, j)
			}
		}
		memo[i] = out
		return out
	}
	for i, p := range plans {
		if p.UpToDate() {
			continue
		}
		for _, j := range changing(i) {
			if err := g.AddEdge(i, j); err != nil && !errors.Is(err, graph.ErrEdgeAlreadyExists) {
				return nil, fmt.Errorf("stack order: %w", err)
			}
		}
	}
	return g, nil
}

type applier struct {
	opt ApplyOptions
	env *awsEnv
	pub *publisher
	r   Reporter

	promptMu sync.Mutex
}

func (a *applier) emit(ev *StackEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	a.r.StackEvent(ev)
}

// stackEnv is the environment the plan resolved, with this run's clients.
func (a *applier) stackEnv(p *StackPlan) (*stackEnv, error) {
	region := p.Region
	if region == "" {
		region = p.Stack.Region
	}
	rc, err := a.env.clients(region)
	if err != nil {
		return nil, fmt.Errorf("stack %s: %w", p.Stack.Name(), err)
	}
	return &stackEnv{regionClients: rc, account: p.Account, partition: partitionOf(rc.region)}, nil
}

// deployStack carries out one stack's plan: settle the stack, publish its
// assets, create a change set, ask for approval, execute it and wait.
func (a *applier) deployStack(ctx context.Context, p *StackPlan) (outputs map[string]string, status Status, err error) {
	s, cur := p.Stack, p.cur
	se, err := a.stackEnv(p)
	if err != nil {
		return nil, StatusFailed, err
	}
	a.emit(&StackEvent{Kind: EventDeploying, Stack: s, Reasons: p.Reasons})
	if p.Blocker != nil {
		return nil, StatusFailed, p.Blocker
	}
	ph := PhasePrepare
	var cs *changeSet
	defer func() {
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			return
		}
		a.reportInterrupted(ctx, se, s, ph, cs)
		status = StatusFailed
	}()
	emit := func(ev *StackEvent) {
		ev.Stack = s
		a.emit(ev)
	}

	// A stack busy with another operation is waited for; one whose
	// creation failed must be deleted before it can be created again.
	if cur.exists && strings.HasSuffix(cur.status, "_IN_PROGRESS") && cur.status != "REVIEW_IN_PROGRESS" {
		if cur, err = waitStable(ctx, se.regionClients, s, emit); err != nil {
			return nil, StatusFailed, err
		}
	}
	if cur.status == "ROLLBACK_COMPLETE" || cur.status == "ROLLBACK_FAILED" {
		if err := deleteFailedCreation(ctx, se.regionClients, s, cur.status, emit); err != nil {
			return nil, StatusFailed, err
		}
		cur = &deployed{}
	}
	if onlyTermProt(p.Reasons) {
		if err := updateTerminationProtection(ctx, se.regionClients, s); err != nil {
			return nil, StatusFailed, err
		}
		return cur.outputs, StatusDeployed, nil
	}

	if len(p.Assets) > 0 {
		n, err := a.pub.publish(ctx, s, p.Assets)
		if err != nil {
			return nil, StatusFailed, err
		}
		if n > 0 {
			emit(&StackEvent{Kind: EventPublished, Uploaded: n})
		}
	}

	ph = PhaseChangeSet
	cs = &changeSet{name: "pipe-deploy-" + time.Now().UTC().Format("20060102T150405Z")}
	created, err := createChangeSet(ctx, se, s, cur, p.TemplateURL, cs.name)
	if created != nil {
		cs = created
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			if derr := deleteChangeSet(ctx, se, s, cs); derr != nil {
				err = errors.Join(err, derr)
			}
		}
		return nil, StatusFailed, err
	}
	if cs.empty {
		if err := deleteChangeSet(ctx, se, s, cs); err != nil {
			return nil, StatusFailed, err
		}
		if s.TerminationProtection != cur.termProt && cur.exists {
			if err := updateTerminationProtection(ctx, se.regionClients, s); err != nil {
				return nil, StatusFailed, err
			}
		}
		return cur.outputs, StatusUnchanged, nil
	}
	emit(&StackEvent{Kind: EventChangeSet, ChangeSet: cs.name, Changes: resourceChanges(cs.changes), Broadening: p.Broadening})
	if err := a.approve(p); err != nil {
		if derr := deleteChangeSet(ctx, se, s, cs); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, StatusFailed, err
	}

	ph = PhaseExecuting
	ex, err := execute(ctx, se, s, cs, emit)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			// An execution that did not start leaves its change set; one
			// that failed to report leaves nothing to clean but is named.
			if derr := deleteChangeSet(ctx, se, s, cs); derr != nil {
				err = errors.Join(err, derr)
			}
			if st, serr := describeStack(context.WithoutCancel(ctx), se.regionClients, s.StackName); serr == nil && st.exists {
				err = fmt.Errorf("%w (stack status: %s)", err, st.status)
			}
		}
		return nil, StatusFailed, err
	}
	if _, ok := terminal(ex.final.status); !ok {
		var msg strings.Builder
		fmt.Fprintf(&msg, "stack %s: deployment failed, stack is %s", s.Name(), ex.final.status)
		if ex.final.reason != "" {
			fmt.Fprintf(&msg, " (%s)", ex.final.reason)
		}
		for _, f := range ex.failures {
			fmt.Fprintf(&msg, "\n  %s (%s): %s", aws.ToString(f.LogicalResourceId), aws.ToString(f.ResourceType), aws.ToString(f.ResourceStatusReason))
		}
		if derr := deleteChangeSet(ctx, se, s, cs); derr != nil {
			msg.WriteString("\n  " + derr.Error())
		}
		return nil, StatusFailed, errors.New(msg.String())
	}
	if s.TerminationProtection != ex.final.termProt {
		if err := updateTerminationProtection(ctx, se.regionClients, s); err != nil {
			return ex.final.outputs, StatusFailed, err
		}
	}
	return ex.final.outputs, StatusDeployed, nil
}

func resourceChanges(cs []cfntypes.ResourceChange) []ResourceChange {
	out := make([]ResourceChange, len(cs))
	for i, c := range cs {
		out[i] = ResourceChange{
			Action:      string(c.Action),
			Type:        aws.ToString(c.ResourceType),
			LogicalID:   aws.ToString(c.LogicalResourceId),
			Replacement: string(c.Replacement),
		}
	}
	return out
}

// approve asks for a person's yes when the plan says the --require-approval
// policy wants one, and refuses when nobody can answer.
func (a *applier) approve(p *StackPlan) error {
	s := p.Stack
	if p.ApprovalNeeded == "" || p.ApprovalNeeded == ApproveNever {
		return nil
	}
	if a.opt.Prompt == nil {
		what := "this change needs approval (--require-approval any-change)"
		if p.ApprovalNeeded == ApproveBroadening {
			what = "this change broadens IAM permissions (see above) and needs approval (--require-approval broadening)"
		}
		return fmt.Errorf("stack %s: %s, but there is no terminal to ask; review it (pipe diff) and rerun with --require-approval never to deploy without asking: %w", s.Name(), what, ErrRefused)
	}
	a.promptMu.Lock()
	defer a.promptMu.Unlock()
	ok, err := a.opt.Prompt(fmt.Sprintf("Deploy %s? [y/N] ", s.DisplayName))
	if err != nil {
		return fmt.Errorf("stack %s: ask for approval: %w", s.Name(), err)
	}
	if !ok {
		return fmt.Errorf("stack %s: %w", s.Name(), ErrRefused)
	}
	return nil
}

// reportInterrupted tells what Ctrl-C left behind for a stack that was in
// flight, and deletes a change set that will not be executed.
func (a *applier) reportInterrupted(ctx context.Context, se *stackEnv, s *Stack, ph Phase, cs *changeSet) {
	ev := &StackEvent{Kind: EventInterrupted, Stack: s, Phase: ph}
	switch ph {
	case PhaseChangeSet:
		ev.ChangeSet = cs.name
		ev.Err = deleteChangeSet(ctx, se, s, cs)
	case PhaseExecuting:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		st, err := describeStack(cctx, se.regionClients, s.StackName)
		if err != nil {
			ev.Err = err
		} else {
			ev.StackStatus = st.status
		}
	}
	a.emit(ev)
}

// SortedOutputs lists the results' outputs as "Stack.Key = value" lines.
func SortedOutputs(results []*Result) []string {
	var lines []string
	for _, r := range results {
		keys := make([]string, 0, len(r.Outputs))
		for k := range r.Outputs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			lines = append(lines, fmt.Sprintf("%s.%s = %s", r.Stack.StackName, k, r.Outputs[k]))
		}
	}
	return lines
}
