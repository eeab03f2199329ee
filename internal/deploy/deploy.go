package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Approval says which changes need a person's yes before they execute.
type Approval string

const (
	ApproveNever      Approval = "never"
	ApproveAnyChange  Approval = "any-change"
	ApproveBroadening Approval = "broadening"
)

// ParseApproval checks a --require-approval value.
func ParseApproval(s string) (Approval, error) {
	switch a := Approval(s); a {
	case ApproveNever, ApproveAnyChange, ApproveBroadening:
		return a, nil
	}
	return "", fmt.Errorf("--require-approval %q: want never, any-change or broadening", s)
}

// Options tune a deployment.
type Options struct {
	// Out receives progress, one whole line at a time.
	Out io.Writer
	// Concurrency bounds the stacks deploying at once (default 4).
	Concurrency int
	// AssetConcurrency bounds the uploads in flight (default 8).
	AssetConcurrency int
	Approval         Approval
	// Prompt asks a yes/no question of a person; nil when nobody can
	// answer (no terminal), in which case changes needing approval are
	// refused.
	Prompt func(question string) (bool, error)
	// DryRun reports what would be deployed with read calls only.
	DryRun bool
	// Force deploys stacks that are up to date too.
	Force bool
	// Zips are directories the build already zipped.
	Zips []PrebuiltZip
	// TemplateS3Base overrides the endpoint of template URLs handed to
	// CloudFormation; default AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION.
	TemplateS3Base string
}

// Status is how a stack's deployment ended.
type Status string

const (
	StatusUnchanged  Status = "unchanged"
	StatusDeployed   Status = "deployed"
	StatusWould      Status = "would deploy"
	StatusFailed     Status = "failed"
	StatusSkipped    Status = "skipped" // a dependency failed or Ctrl-C came first
	StatusNotStarted Status = "not started"
)

// Result is one stack's outcome.
type Result struct {
	Stack      *Stack
	Status     Status
	Outputs    map[string]string
	Err        error
	Start, End time.Time
}

// printer serialises lines from concurrent stacks so they never interleave.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) linef(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	p.mu.Lock()
	io.WriteString(p.w, s)
	p.mu.Unlock()
}

func (p *printer) block(b []byte) {
	p.mu.Lock()
	p.w.Write(b)
	p.mu.Unlock()
}

// ErrRefused marks a deployment a person (or the lack of one) declined.
var ErrRefused = errors.New("not approved")

// Deploy deploys the stacks (in the order LoadAssemblies returns), each
// after its dependencies, independent ones concurrently. It returns every
// stack's result; the error is non-nil when any stack failed, or ctx's
// error when it was cancelled.
func Deploy(ctx context.Context, cfg aws.Config, stacks []*Stack, opt Options) ([]*Result, error) {
	if opt.Concurrency < 1 {
		opt.Concurrency = 4
	}
	if opt.Approval == "" {
		opt.Approval = ApproveBroadening
	}
	if opt.TemplateS3Base == "" {
		opt.TemplateS3Base = os.Getenv("AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION")
	}
	d := &deployer{
		opt:   opt,
		out:   &printer{w: opt.Out},
		env:   newAWSEnv(cfg),
		sem:   make(chan struct{}, opt.Concurrency),
		check: make(chan struct{}, 16),
	}
	if d.out.w == nil {
		d.out.w = io.Discard
	}
	d.pub = newPublisher(d.env, opt.AssetConcurrency, opt.Zips)
	for _, s := range stacks {
		if s.DockerImages > 0 {
			return nil, fmt.Errorf("stack %s has %d container image asset(s); pipe deploy publishes file assets only: deploy it with the CDK CLI", s.Name(), s.DockerImages)
		}
	}

	results := make(map[*Stack]*Result, len(stacks))
	done := make(map[*Stack]chan struct{}, len(stacks))
	for _, s := range stacks {
		results[s] = &Result{Stack: s}
		done[s] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, s := range stacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[s])
			d.run(ctx, s, results[s], results, done)
		}()
	}
	wg.Wait()

	out := make([]*Result, len(stacks))
	var errs []error
	for i, s := range stacks {
		out[i] = results[s]
		if r := results[s]; r.Status == StatusFailed {
			errs = append(errs, r.Err)
		}
	}
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, errors.Join(errs...)
}

type deployer struct {
	opt   Options
	out   *printer
	env   *awsEnv
	pub   *publisher
	sem   chan struct{} // stacks deploying
	check chan struct{} // read-only checks in flight

	promptMu sync.Mutex
}

// run is one stack's life: the read-only check (right away, concurrently
// with every other stack's, since a dependency's deployment does not change
// this stack's template), then waiting for its dependencies, then the
// deployment proper.
func (d *deployer) run(ctx context.Context, s *Stack, r *Result, all map[*Stack]*Result, done map[*Stack]chan struct{}) {
	r.Start = time.Now()
	defer func() { r.End = time.Now() }()
	cur, why, checkErr := d.checkStack(ctx, s)

	for _, dep := range s.Deps {
		select {
		case <-done[dep]:
		case <-ctx.Done():
		}
	}
	if checkErr == nil && len(why) == 0 {
		r.Status, r.Outputs = StatusUnchanged, cur.outputs
		d.out.linef("✓ %s (no changes)", s.DisplayName)
		return
	}
	if ctx.Err() != nil {
		r.Status = StatusNotStarted
		return
	}
	for _, dep := range s.Deps {
		if st := all[dep].Status; st == StatusFailed || st == StatusSkipped || st == StatusNotStarted {
			r.Status = StatusSkipped
			r.Err = fmt.Errorf("stack %s: not deployed: its dependency %s was not deployed", s.Name(), dep.DisplayName)
			d.out.linef("- %s skipped: its dependency %s was not deployed", s.DisplayName, dep.DisplayName)
			return
		}
	}
	if checkErr != nil {
		r.Status, r.Err = StatusFailed, checkErr
		d.out.linef("✗ %s: %s", s.DisplayName, withoutStack(s, checkErr))
		return
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		r.Status = StatusNotStarted
		return
	}
	defer func() { <-d.sem }()
	r.Start = time.Now()
	if d.opt.DryRun {
		d.dryRun(ctx, s, cur, why, r)
		return
	}
	outputs, status, err := d.deployStack(ctx, s, cur, why)
	r.Status, r.Outputs, r.Err = status, outputs, err
	switch {
	case status == StatusUnchanged:
		d.out.linef("✓ %s (no changes)", s.DisplayName)
	case err == nil:
		d.out.linef("✓ %s (deployed, %.1fs)", s.DisplayName, time.Since(r.Start).Seconds())
	case errors.Is(err, context.Canceled):
		// deployStack reported the stack's state.
	default:
		d.out.linef("✗ %s: %s", s.DisplayName, withoutStack(s, err))
	}
}

// withoutStack drops the "stack X: " an error starts with when the line
// already names the stack.
func withoutStack(s *Stack, err error) string {
	return strings.TrimPrefix(err.Error(), "stack "+s.Name()+": ")
}

// checkStack reads the deployed state and says why the stack needs
// deploying; no reasons means it is up to date. --force always deploys.
func (d *deployer) checkStack(ctx context.Context, s *Stack) (*deployed, []string, error) {
	select {
	case d.check <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-d.check }()
	rc, err := d.env.clients(s.Region)
	if err != nil {
		return nil, nil, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	cur, err := describe(ctx, rc, s.StackName)
	if err != nil {
		return nil, nil, err
	}
	why, err := changes(ctx, rc, s, cur)
	if err != nil {
		return nil, nil, err
	}
	if d.opt.Force && len(why) == 0 {
		why = []string{"--force"}
	}
	return cur, why, nil
}

// phase is how far a stack's deployment got, for reporting an interrupt.
type phase int

const (
	phasePrepare phase = iota
	phaseChangeSet
	phaseExecuting
)

func (d *deployer) deployStack(ctx context.Context, s *Stack, cur *deployed, why []string) (outputs map[string]string, status Status, err error) {
	se, err := d.env.resolveEnv(ctx, s)
	if err != nil {
		return nil, StatusFailed, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	d.out.linef("%s: deploying (%s)", s.DisplayName, strings.Join(why, ", "))
	ph := phasePrepare
	var cs *changeSet
	defer func() {
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			return
		}
		d.reportInterrupted(ctx, se, s, ph, cs)
		status = StatusFailed
	}()

	// A stack busy with another operation is waited for; one whose
	// creation failed must be deleted before it can be created again.
	if cur.exists && strings.HasSuffix(cur.status, "_IN_PROGRESS") && cur.status != "REVIEW_IN_PROGRESS" {
		if cur, err = waitStable(ctx, se.regionClients, s, d.out); err != nil {
			return nil, StatusFailed, err
		}
	}
	if cur.status == "ROLLBACK_COMPLETE" || cur.status == "ROLLBACK_FAILED" {
		if err := deleteFailedCreation(ctx, se.regionClients, s, d.out); err != nil {
			return nil, StatusFailed, err
		}
		cur = &deployed{}
	}
	if onlyTermProt(why) {
		if err := updateTerminationProtection(ctx, se.regionClients, s); err != nil {
			return nil, StatusFailed, err
		}
		return cur.outputs, StatusDeployed, nil
	}

	if err := checkBootstrap(ctx, se, s); err != nil {
		return nil, StatusFailed, err
	}
	assets, templateURL, err := d.assetsFor(se, s)
	if err != nil {
		return nil, StatusFailed, err
	}
	if len(assets) > 0 {
		n, err := d.pub.publish(ctx, s, assets)
		if err != nil {
			return nil, StatusFailed, err
		}
		if n > 0 {
			d.out.linef("%s: uploaded %d asset%s", s.DisplayName, n, plural(n))
		}
	}

	ph = phaseChangeSet
	cs = &changeSet{name: "pipe-deploy-" + time.Now().UTC().Format("20060102T150405Z")}
	created, err := createChangeSet(ctx, se, s, cur, templateURL, cs.name)
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
	// Summary and approval print as one block, so a concurrent stack's
	// lines cannot split what a reviewer reads.
	var buf bytes.Buffer
	bp := &printer{w: &buf}
	writeChangeSummary(bp, s, cs)
	broad := Broadening(cur.template, s.Template)
	if len(broad) > 0 {
		bp.linef("%s: IAM changes that broaden permissions:", s.DisplayName)
		for _, b := range broad {
			bp.linef("  + %s", b)
		}
	}
	d.out.block(buf.Bytes())
	if err := d.approve(s, broad); err != nil {
		if derr := deleteChangeSet(ctx, se, s, cs); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, StatusFailed, err
	}

	ph = phaseExecuting
	ex, err := execute(ctx, se, s, cs, d.out)
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

func onlyTermProt(why []string) bool {
	return len(why) == 1 && why[0] == "termination protection differs"
}

// assetsFor resolves the stack's assets. The template is one of them but
// goes to S3 only when it is too big to pass inline, which saves an upload
// per deployed stack.
func (d *deployer) assetsFor(se *stackEnv, s *Stack) ([]*resolvedAsset, string, error) {
	big := len(s.Template) > maxTemplateBody
	var out []*resolvedAsset
	for _, a := range s.Assets {
		if a.Source == s.TemplateFile && !big {
			continue
		}
		ra, err := d.pub.resolve(se, a)
		if err != nil {
			return nil, "", err
		}
		out = append(out, ra)
	}
	if !big {
		return out, "", nil
	}
	if s.TemplateURL == "" {
		return nil, "", fmt.Errorf("stack %s: the template is %d bytes, over CloudFormation's %d-byte limit for inline templates, and the assembly names no S3 location for it (use the CDK's default stack synthesizer)", s.Name(), len(s.Template), maxTemplateBody)
	}
	u, err := se.templateURL(s.TemplateURL, d.opt.TemplateS3Base)
	return out, u, err
}

// approve asks for a person's yes when the --require-approval policy wants
// one, and refuses when nobody can answer.
func (d *deployer) approve(s *Stack, broad []string) error {
	need := ""
	switch d.opt.Approval {
	case ApproveAnyChange:
		need = "changes"
	case ApproveBroadening:
		if len(broad) > 0 {
			need = "broadens IAM permissions"
		}
	}
	if need == "" {
		return nil
	}
	if d.opt.Prompt == nil {
		what := "this change needs approval (--require-approval any-change)"
		if need != "changes" {
			what = "this change broadens IAM permissions (see above) and needs approval (--require-approval broadening)"
		}
		return fmt.Errorf("stack %s: %s, but there is no terminal to ask; review it (pipe diff) and rerun with --require-approval never to deploy without asking: %w", s.Name(), what, ErrRefused)
	}
	d.promptMu.Lock()
	defer d.promptMu.Unlock()
	ok, err := d.opt.Prompt(fmt.Sprintf("Deploy %s? [y/N] ", s.DisplayName))
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
func (d *deployer) reportInterrupted(ctx context.Context, se *stackEnv, s *Stack, ph phase, cs *changeSet) {
	switch ph {
	case phasePrepare:
		d.out.linef("! %s: interrupted before any change to the stack (assets already uploaded stay; they are content-addressed)", s.DisplayName)
	case phaseChangeSet:
		if err := deleteChangeSet(ctx, se, s, cs); err != nil {
			d.out.linef("! %s: interrupted before executing; change set %s could not be deleted: %v", s.DisplayName, cs.name, err)
			return
		}
		d.out.linef("! %s: interrupted before executing; change set deleted, the stack is unchanged", s.DisplayName)
	case phaseExecuting:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		st, err := describeStack(cctx, se.regionClients, s.StackName)
		if err != nil {
			d.out.linef("! %s: interrupted while CloudFormation executes the change; its state could not be read: %v", s.DisplayName, err)
			return
		}
		d.out.linef("! %s: interrupted while CloudFormation executes the change: the stack is %s and CloudFormation carries on; pipe deploy again shows the result", s.DisplayName, st.status)
	}
}

// dryRun reports, with read calls only, what deploying would do.
func (d *deployer) dryRun(ctx context.Context, s *Stack, cur *deployed, why []string, r *Result) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "• %s would be deployed (%s)\n", s.DisplayName, strings.Join(why, ", "))
	if cur.exists || len(s.Template) > 0 {
		if _, err := TemplateDiff(&buf, cur.template, s.Template); err != nil {
			fmt.Fprintf(&buf, "  (%v)\n", err)
		}
	}
	for _, b := range Broadening(cur.template, s.Template) {
		fmt.Fprintf(&buf, "  IAM broadening: %s\n", b)
	}
	r.Status, r.Outputs = StatusWould, cur.outputs
	if se, err := d.env.resolveEnv(ctx, s); err == nil {
		if err := checkBootstrap(ctx, se, s); err != nil {
			fmt.Fprintf(&buf, "  would fail: %v\n", err)
		} else if assets, _, err := d.assetsFor(se, s); err == nil {
			n := 0
			for _, a := range assets {
				if ok, err := d.pub.exists(ctx, a); err == nil && !ok {
					n++
				}
			}
			if n > 0 {
				fmt.Fprintf(&buf, "  would upload %d asset%s\n", n, plural(n))
			}
		}
	}
	d.out.block(buf.Bytes())
}

// Diff writes, for each stack, how the local template, parameters and tags
// differ from the deployed stack, and reports whether any differ.
func Diff(ctx context.Context, cfg aws.Config, stacks []*Stack, w io.Writer) (bool, error) {
	env := newAWSEnv(cfg)
	type res struct {
		buf  bytes.Buffer
		diff bool
		err  error
	}
	rs := make([]*res, len(stacks))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, s := range stacks {
		rs[i] = &res{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := rs[i]
			r.diff, r.err = diffStack(ctx, env, s, &r.buf)
		}()
	}
	wg.Wait()
	found := false
	var errs []error
	for _, r := range rs {
		w.Write(r.buf.Bytes())
		found = found || r.diff
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return found, errors.Join(errs...)
}

func diffStack(ctx context.Context, env *awsEnv, s *Stack, w io.Writer) (bool, error) {
	rc, err := env.clients(s.Region)
	if err != nil {
		return false, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	cur, err := describe(ctx, rc, s.StackName)
	if err != nil {
		return false, err
	}
	var buf bytes.Buffer
	head := "Stack " + s.DisplayName
	if !cur.exists {
		head += " (not deployed)"
	}
	tdiff, err := TemplateDiff(&buf, cur.template, s.Template)
	if err != nil {
		return false, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	deployedTags := cur.tags
	if !cur.exists {
		deployedTags = nil
	}
	tagDiff := mapDiff(&buf, "Tags", deployedTags, s.Tags)
	paramDiff := false
	if cur.exists && len(s.Parameters) > 0 {
		got := map[string]string{}
		for k, p := range cur.params {
			if _, ok := s.Parameters[k]; ok {
				got[k] = aws.ToString(p.ParameterValue)
			}
		}
		paramDiff = mapDiff(&buf, "Parameter values", got, s.Parameters)
	}
	broad := Broadening(cur.template, s.Template)
	if len(broad) > 0 {
		fmt.Fprintf(&buf, "  IAM changes that broaden permissions (deploying asks for approval):\n")
		for _, b := range broad {
			fmt.Fprintf(&buf, "  [+] %s\n", b)
		}
	}
	differs := tdiff || tagDiff || paramDiff
	fmt.Fprintln(w, head)
	if !differs {
		fmt.Fprintln(w, "  There were no differences")
	} else {
		w.Write(buf.Bytes())
	}
	fmt.Fprintln(w)
	return differs, nil
}

// SortedOutputs lists a result's outputs as "Stack.Key = value" lines.
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
