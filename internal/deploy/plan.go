package deploy

import (
	"context"
	"fmt"
	"os"
	"sync"

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

// PlanState is what deploying would do to a stack.
type PlanState string

const (
	StateUpToDate PlanState = "up to date"
	StateNew      PlanState = "new"
	StateUpdate   PlanState = "needs update"
	// StateRecreate: the stack's creation failed (ROLLBACK_COMPLETE);
	// deploying deletes it and creates it again.
	StateRecreate PlanState = "needs re-creation"
	// StateUnknown: the deployed stack could not be read (StackPlan.Err).
	StateUnknown PlanState = "unknown"
)

// PlanOptions tune Plan.
type PlanOptions struct {
	// Force plans stacks that are up to date as updates.
	Force bool
	// Approval is the --require-approval policy (default broadening);
	// it decides StackPlan.ApprovalNeeded.
	Approval Approval
	// DiffOnly skips what only deploying needs: the account (STS, but for
	// a stack with a hotswap record in Records), the bootstrap version, the assets S3 lacks, and the values behind
	// SSM-typed parameters (so Reasons miss an SSM value that moved). pipe
	// diff sets it: it reads CloudFormation only. A plan made with it
	// cannot be applied.
	DiffOnly bool
	// TemplateS3Base overrides the endpoint of template URLs handed to
	// CloudFormation; default AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION.
	TemplateS3Base string
	// Hotswap asks, for each stack that needs deploying, whether its
	// changes can be applied with Lambda calls (StackPlan.Hotswap).
	Hotswap HotswapMode
	// Records are where hotswaps are recorded; a stack with a record is
	// planned for deployment even when its template matches
	// (StackPlan.Hotswapped); with DiffOnly the record is only read, for
	// pipe diff to report. Nil: no records are read or written.
	Records *HotswapRecords
}

// StackPlan is what deploying one stack would do, found with read calls
// only. pipe diff and pipe deploy --dry-run show plans; Apply carries them
// out.
type StackPlan struct {
	Stack *Stack
	State PlanState
	// Reasons say why the stack needs deploying ("new stack", "template
	// differs", "tags differ", "--force"…); none when it is up to date.
	Reasons []string
	// Exists says CloudFormation has the stack; DeployedStatus is its
	// status and Outputs its outputs.
	Exists         bool
	DeployedStatus string
	Outputs        map[string]string

	// Template, Tags and Parameters are how the local stack differs from
	// the deployed one. TemplateErr says why the templates could not be
	// compared (a YAML template), leaving Template empty.
	Template    []TemplateChange
	TemplateErr error
	Tags        []MapChange
	// Parameters compares the values the assembly gives with the
	// deployed ones; only for a deployed stack.
	Parameters []MapChange
	// Broadening lists the IAM grants and ingress rules the change adds.
	Broadening []string
	// ApprovalNeeded is the policy under which a person must approve the
	// change before it executes; "" when none must.
	ApprovalNeeded Approval

	// What follows is known only for a stack that needs deploying, and
	// not with PlanOptions.DiffOnly.

	// Account and Region are the environment the stack deploys to.
	Account, Region string
	// Assets are the stack's file assets with their destinations, and
	// whether S3 has them already.
	Assets []*AssetPlan
	// TemplateURL is where CloudFormation reads a template too large to
	// pass inline ("" when it goes inline).
	TemplateURL string
	// Blocker is why deploying would fail before changing anything: the
	// environment is not bootstrapped (or too old), the credentials are
	// for another account, the template is too large for the assembly.
	Blocker error

	// Err says why the deployed stack could not be read; the rest of the
	// plan is unknown.
	Err error

	// Hotswap, with PlanOptions.Hotswap, says how the stack's changes
	// would be hotswapped, or why not; nil for a stack left alone.
	Hotswap *HotswapPlan
	// Hotswapped is the record of hotswaps since the stack's last
	// deployment: the deployed functions differ from the template, and
	// deploying sets them back.
	Hotswapped *HotswapRecord

	cur      *deployed
	diffOnly bool
	records  *HotswapRecords
}

// AssetPlan is one asset of a stack and where it goes.
type AssetPlan struct {
	Asset *FileAsset
	// Bucket, Key and Region are the destination, placeholders resolved.
	Bucket, Key, Region string
	// Present says S3 has the object already (asset keys are content
	// hashes, so it is the same bytes); Checked is false when asking S3
	// failed (CheckErr), and Apply asks again.
	Present  bool
	Checked  bool
	CheckErr error
}

// UpToDate reports a stack that deploying would leave alone.
func (p *StackPlan) UpToDate() bool { return p.Err == nil && p.State == StateUpToDate }

// Differs reports whether the template, tags or parameter values differ
// from the deployed stack's: what pipe diff reports.
func (p *StackPlan) Differs() bool {
	return len(p.Template) > 0 || len(p.Tags) > 0 || len(p.Parameters) > 0
}

// Uploads counts the assets S3 was found not to have, which deploying
// uploads. Assets that could not be checked are not counted: Apply checks
// them again.
func (p *StackPlan) Uploads() int {
	n := 0
	for _, a := range p.Assets {
		if a.Checked && !a.Present {
			n++
		}
	}
	return n
}

// maxPlanReads bounds the stacks read at once.
const maxPlanReads = 16

// Plan finds what deploying the stacks would do, with read calls only:
// DescribeStacks and GetTemplate for each stack, in parallel; then, for
// those needing a deployment, the account (STS), the bootstrap version
// (SSM) and which assets S3 lacks (HeadObject). The plans come in the
// stacks' order. A stack that cannot be read gets a plan with Err; the
// error is for what stops every stack (a container image asset pipe
// cannot publish).
func Plan(ctx context.Context, cfg aws.Config, stacks []*Stack, opt PlanOptions) ([]*StackPlan, error) {
	if opt.Approval == "" {
		opt.Approval = ApproveBroadening
	}
	if opt.TemplateS3Base == "" {
		opt.TemplateS3Base = os.Getenv("AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION")
	}
	if !opt.DiffOnly {
		for _, s := range stacks {
			if s.DockerImages > 0 {
				return nil, fmt.Errorf("stack %s has %d container image asset(s); pipe deploy publishes file assets only: deploy it with the CDK CLI", s.Name(), s.DockerImages)
			}
		}
	}
	pl := &planner{opt: opt, env: newAWSEnv(cfg), assetSem: make(chan struct{}, 8), present: map[string]*presence{}}
	plans := make([]*StackPlan, len(stacks))
	sem := make(chan struct{}, maxPlanReads)
	var wg sync.WaitGroup
	for i, s := range stacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				plans[i] = &StackPlan{Stack: s, State: StateUnknown, Err: ctx.Err(), diffOnly: opt.DiffOnly}
				return
			}
			defer func() { <-sem }()
			plans[i] = pl.plan(ctx, s)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return plans, err
	}
	return plans, nil
}

type planner struct {
	opt      PlanOptions
	env      *awsEnv
	assetSem chan struct{}

	mu sync.Mutex
	// present remembers HeadObject answers, so an asset two stacks share
	// is asked about once.
	present map[string]*presence
}

type presence struct {
	once    sync.Once
	present bool
	err     error
}

func (pl *planner) plan(ctx context.Context, s *Stack) *StackPlan {
	p := &StackPlan{Stack: s, diffOnly: pl.opt.DiffOnly, records: pl.opt.Records}
	fail := func(err error) *StackPlan {
		p.State, p.Err = StateUnknown, err
		return p
	}
	rc, err := pl.env.clients(s.Region)
	if err != nil {
		return fail(fmt.Errorf("stack %s: %w", s.Name(), err))
	}
	cur, err := describe(ctx, rc, s.StackName)
	if err != nil {
		return fail(err)
	}
	p.cur = cur
	p.Exists, p.DeployedStatus, p.Outputs = cur.exists, cur.status, cur.outputs
	why, err := changes(ctx, rc, s, cur, !pl.opt.DiffOnly)
	if err != nil {
		return fail(err)
	}
	// pipe diff reads the record too: the deployed functions differ from
	// the deployed template, which a template comparison cannot show.
	rec, err := pl.record(ctx, rc, s)
	if err != nil {
		return fail(err)
	}
	p.Hotswapped = rec
	if !pl.opt.DiffOnly && rec != nil && cur.exists && updatable[cur.status] {
		why = append(why, reasonHotswapped)
	}
	if pl.opt.Force && len(why) == 0 {
		why = []string{"--force"}
	}
	p.Reasons = why
	switch {
	case !cur.exists || cur.status == "REVIEW_IN_PROGRESS":
		p.State = StateNew
	case cur.status == "ROLLBACK_COMPLETE" || cur.status == "ROLLBACK_FAILED":
		p.State = StateRecreate
	case len(why) == 0:
		p.State = StateUpToDate
	default:
		p.State = StateUpdate
	}

	p.Template, p.TemplateErr = DiffTemplates(cur.template, s.Template)
	if p.TemplateErr != nil {
		p.TemplateErr = fmt.Errorf("stack %s: %w", s.Name(), p.TemplateErr)
	}
	deployedTags := cur.tags
	if !cur.exists {
		deployedTags = nil
	}
	p.Tags = diffMaps(deployedTags, s.Tags)
	if cur.exists && len(s.Parameters) > 0 {
		got := map[string]string{}
		for k, v := range cur.params {
			if _, ok := s.Parameters[k]; ok {
				got[k] = aws.ToString(v.ParameterValue)
			}
		}
		p.Parameters = diffMaps(got, s.Parameters)
	}
	p.Broadening = Broadening(cur.template, s.Template)
	if p.State != StateUpToDate {
		switch {
		case pl.opt.Approval == ApproveAnyChange:
			p.ApprovalNeeded = ApproveAnyChange
		case pl.opt.Approval == ApproveBroadening && len(p.Broadening) > 0:
			p.ApprovalNeeded = ApproveBroadening
		}
	}
	if pl.opt.DiffOnly || p.State == StateUpToDate || onlyTermProt(why) {
		return p
	}
	pl.prepare(ctx, p)
	if pl.opt.Hotswap != HotswapOff {
		pl.planHotswap(ctx, rc, p)
	}
	return p
}

// record finds the hotswap record of the stack in the account of the
// credentials. Only a stack with a record in some account costs the STS
// call that tells the account.
func (pl *planner) record(ctx context.Context, rc *regionClients, s *Stack) (*HotswapRecord, error) {
	recs, err := pl.opt.Records.find(rc.region, s.StackName)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	acct, err := pl.env.accountID(ctx)
	if err != nil {
		return nil, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	for _, r := range recs {
		if r.Account == acct {
			return r, nil
		}
	}
	return nil, nil
}

// prepare finds what deploying needs beyond the template: the account, the
// bootstrap version, the assets' destinations and whether S3 has them.
func (pl *planner) prepare(ctx context.Context, p *StackPlan) {
	s := p.Stack
	se, err := pl.env.resolveEnv(ctx, s)
	if err != nil {
		p.Blocker = fmt.Errorf("stack %s: %w", s.Name(), err)
		return
	}
	p.Account, p.Region = se.account, se.region
	if err := checkBootstrap(ctx, se, s); err != nil {
		p.Blocker = err
		return
	}
	// The template is an asset too, but it goes to S3 only when it is too
	// big to pass inline, which saves an upload per deployed stack.
	big := len(s.Template) > maxTemplateBody
	if big {
		if s.TemplateURL == "" {
			p.Blocker = fmt.Errorf("stack %s: the template is %d bytes, over CloudFormation's %d-byte limit for inline templates, and the assembly names no S3 location for it (use the CDK's default stack synthesizer)", s.Name(), len(s.Template), maxTemplateBody)
			return
		}
		if p.TemplateURL, err = se.templateURL(s.TemplateURL, pl.opt.TemplateS3Base); err != nil {
			p.Blocker = fmt.Errorf("stack %s: %w", s.Name(), err)
			return
		}
	}
	for _, a := range s.Assets {
		if a.Source == s.TemplateFile && !big {
			continue
		}
		ap := &AssetPlan{Asset: a, Bucket: se.resolve(a.Bucket), Key: se.resolve(a.Key), Region: se.region}
		if a.Region != "" {
			ap.Region = se.resolve(a.Region)
		}
		p.Assets = append(p.Assets, ap)
	}
	var wg sync.WaitGroup
	for _, ap := range p.Assets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ap.Present, ap.CheckErr = pl.exists(ctx, ap)
			ap.Checked = ap.CheckErr == nil
		}()
	}
	wg.Wait()
}

// exists asks S3 once per run whether an asset's object is there.
func (pl *planner) exists(ctx context.Context, ap *AssetPlan) (bool, error) {
	k := ap.Region + "/" + ap.Bucket + "/" + ap.Key
	pl.mu.Lock()
	pr := pl.present[k]
	if pr == nil {
		pr = &presence{}
		pl.present[k] = pr
	}
	pl.mu.Unlock()
	pr.once.Do(func() {
		select {
		case pl.assetSem <- struct{}{}:
		case <-ctx.Done():
			pr.err = ctx.Err()
			return
		}
		defer func() { <-pl.assetSem }()
		rc, err := pl.env.clients(ap.Region)
		if err != nil {
			pr.err = err
			return
		}
		pr.present, pr.err = objectExists(ctx, rc, ap.Bucket, ap.Key)
	})
	return pr.present, pr.err
}

func onlyTermProt(why []string) bool {
	return len(why) == 1 && why[0] == "termination protection differs"
}
