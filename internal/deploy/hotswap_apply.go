package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// PhaseHotswap: Lambda calls of a hotswap were in flight.
const PhaseHotswap Phase = "hotswap"

const (
	// StatusHotswapped: the stack's changes were applied with Lambda
	// calls; the deployed stack differs from its template until it is
	// deployed.
	StatusHotswapped Status = "hotswapped"
	// StatusWouldHotswap: --dry-run of a stack that would be hotswapped.
	StatusWouldHotswap Status = "would hotswap"
)

// maxFunctionUpdates bounds the functions of a stack updated at once.
const maxFunctionUpdates = 8

// applyStack carries out one stack's plan: a hotswap when the plan says
// every change can be hotswapped; otherwise a deployment (saying why not a
// hotswap), after which what earlier hotswaps changed is set back to the
// template.
func (a *applier) applyStack(ctx context.Context, p *StackPlan) (map[string]string, Status, error) {
	s := p.Stack
	if h := p.Hotswap; h != nil {
		switch {
		case h.Refused != nil:
			return nil, StatusFailed, h.Refused
		case h.Hotswappable():
			return a.hotswapStack(ctx, p)
		case h.Mode == HotswapOnly:
			why := make([]string, len(h.Blockers))
			for i, b := range h.Blockers {
				why[i] = b.String()
			}
			return nil, StatusFailed, fmt.Errorf("stack %s: cannot be hotswapped, and --hotswap-fallback=never refuses a change-set deployment:\n  %s", s.Name(), strings.Join(why, "\n  "))
		case h.Mode != HotswapOff:
			a.emit(&StackEvent{Kind: EventHotswapFallback, Stack: s, Fallback: h.Blockers})
		}
	}
	if p.Hotswapped != nil && p.Exists && len(p.Reasons) == 1 && p.Reasons[0] == reasonHotswapped {
		// The template, tags and parameters are the deployed ones: a
		// change set would be empty. Only the functions need setting back.
		a.emit(&StackEvent{Kind: EventDeploying, Stack: s, Reasons: p.Reasons})
		if p.Blocker != nil {
			return nil, StatusFailed, p.Blocker
		}
		if err := a.converge(ctx, p); err != nil {
			return nil, StatusFailed, err
		}
		return p.Outputs, StatusDeployed, nil
	}
	outputs, status, err := a.deployStack(ctx, p)
	if err != nil || p.Hotswapped == nil {
		return outputs, status, err
	}
	if p.Exists {
		if err := a.converge(ctx, p); err != nil {
			return outputs, StatusFailed, fmt.Errorf("%w (the stack itself is deployed)", err)
		}
	} else if err := p.records.remove(p.Account, p.Region, s.StackName); err != nil {
		return outputs, StatusFailed, err
	}
	return outputs, StatusDeployed, nil
}

// hotswapStack applies the stack's changes with Lambda calls: records the
// drift, publishes the assets, publishes new layer versions, updates the
// functions (code, then configuration, each waited for), publishes their
// new versions and moves the aliases.
func (a *applier) hotswapStack(ctx context.Context, p *StackPlan) (outputs map[string]string, status Status, err error) {
	s, h := p.Stack, p.Hotswap
	if h.empty() && !h.settles {
		// The functions have what the template says already (an earlier
		// hotswap set it): nothing to call. The stack stays recorded.
		return p.Outputs, StatusUnchanged, nil
	}
	a.emit(&StackEvent{Kind: EventHotswapping, Stack: s, Reasons: p.Reasons})
	if p.Blocker != nil {
		return nil, StatusFailed, p.Blocker
	}
	se, err := a.stackEnv(p)
	if err != nil {
		return nil, StatusFailed, err
	}
	lc := a.env.lambdaClient(se.regionClients)
	ph := PhasePrepare
	defer func() {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			a.emit(&StackEvent{Kind: EventInterrupted, Stack: s, Phase: ph})
			status = StatusFailed
		}
	}()

	// --require-approval any-change asks before a hotswap too.
	if err := a.approve(p); err != nil {
		return nil, StatusFailed, err
	}
	// The record goes first: an interrupted hotswap leaves drift too.
	if !h.settles {
		if err := p.records.add(p.Account, p.Region, s.StackName, h, nil, time.Now()); err != nil {
			return nil, StatusFailed, fmt.Errorf("stack %s: %w; not hotswapped", s.Name(), err)
		}
	}
	if len(p.Assets) > 0 {
		n, err := a.pub.publish(ctx, s, p.Assets)
		if err != nil {
			return nil, StatusFailed, err
		}
		if n > 0 {
			a.emit(&StackEvent{Kind: EventPublished, Stack: s, Uploaded: n})
		}
	}
	ph = PhaseHotswap
	arns, err := a.publishLayers(ctx, lc, s, h.Layers)
	if err != nil {
		return nil, StatusFailed, err
	}
	// A stack whose template is the deployed one, hotswapped earlier, is
	// set back to it: afterwards it matches its template again.
	kind := EventHotswapped
	if h.settles {
		kind = EventReset
	}
	ferr := a.updateFunctions(ctx, lc, s, h.Functions, arns, kind)
	if err := errors.Join(ferr, a.resetAliases(ctx, lc, s, h.Aliases)); err != nil {
		return nil, StatusFailed, err
	}
	if h.settles {
		if err := p.records.remove(p.Account, p.Region, s.StackName); err != nil {
			return nil, StatusFailed, err
		}
		return p.Outputs, StatusDeployed, nil
	}
	// Now with the published layer versions and function versions.
	if err := p.records.add(p.Account, p.Region, s.StackName, h, arns, time.Now()); err != nil {
		return nil, StatusFailed, err
	}
	return p.Outputs, StatusHotswapped, nil
}

// empty reports a plan without a call to make.
func (h *HotswapPlan) empty() bool {
	return len(h.Layers) == 0 && len(h.Functions) == 0 && len(h.Aliases) == 0
}

// publishLayers publishes the layers' new versions, in parallel, and
// returns their ARNs.
func (a *applier) publishLayers(ctx context.Context, lc *lambda.Client, s *Stack, layers []*LayerUpdate) (map[*LayerUpdate]string, error) {
	arns := map[*LayerUpdate]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(layers))
	for i, l := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			in := &lambda.PublishLayerVersionInput{
				LayerName: aws.String(l.LayerName),
				Content:   &lambdatypes.LayerVersionContentInput{S3Bucket: aws.String(l.Content.Bucket), S3Key: aws.String(l.Content.Key)},
			}
			if l.Content.ObjectVersion != "" {
				in.Content.S3ObjectVersion = aws.String(l.Content.ObjectVersion)
			}
			if l.Description != "" {
				in.Description = aws.String(l.Description)
			}
			if l.LicenseInfo != "" {
				in.LicenseInfo = aws.String(l.LicenseInfo)
			}
			for _, r := range l.CompatibleRuntimes {
				in.CompatibleRuntimes = append(in.CompatibleRuntimes, lambdatypes.Runtime(r))
			}
			for _, r := range l.CompatibleArchitectures {
				in.CompatibleArchitectures = append(in.CompatibleArchitectures, lambdatypes.Architecture(r))
			}
			out, err := lc.PublishLayerVersion(ctx, in)
			if err != nil {
				errs[i] = fmt.Errorf("stack %s: layer %s (%s): publish a version from s3://%s/%s: %w", s.Name(), l.LogicalID, l.LayerName, l.Content.Bucket, l.Content.Key, brief(err))
				return
			}
			arn := aws.ToString(out.LayerVersionArn)
			mu.Lock()
			arns[l] = arn
			mu.Unlock()
			a.emit(&StackEvent{Kind: EventHotswapped, Stack: s, Duration: time.Since(start), Hotswap: &HotswapEvent{
				LogicalID: l.LogicalID, Type: "AWS::Lambda::LayerVersion", PhysicalName: arn,
				Changed: []string{fmt.Sprintf("version %d published", out.Version)},
			}})
		}()
	}
	wg.Wait()
	return arns, errors.Join(errs...)
}

// updateFunctions updates the functions, a bounded number at once, and
// reports each as an event of kind.
func (a *applier) updateFunctions(ctx context.Context, lc *lambda.Client, s *Stack, fns []*FunctionUpdate, layers map[*LayerUpdate]string, kind EventKind) error {
	sem := make(chan struct{}, maxFunctionUpdates)
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i, u := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			start := time.Now()
			changed, err := updateFunction(ctx, lc, u, layers)
			if err != nil {
				errs[i] = fmt.Errorf("stack %s: function %s (%s): %w", s.Name(), u.LogicalID, u.FunctionName, err)
				return
			}
			a.emit(&StackEvent{Kind: kind, Stack: s, Duration: time.Since(start), Hotswap: &HotswapEvent{
				LogicalID: u.LogicalID, Type: "AWS::Lambda::Function", PhysicalName: u.FunctionName, Changed: changed,
			}})
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// updateFunction makes one function's calls and says what changed.
func updateFunction(ctx context.Context, lc *lambda.Client, u *FunctionUpdate, layers map[*LayerUpdate]string) ([]string, error) {
	changed := u.Changed()
	name := aws.String(u.FunctionName)
	// env is the function's environment as Lambda last reported it.
	var env map[string]string
	envKnown := false
	if u.Code != nil {
		in := &lambda.UpdateFunctionCodeInput{FunctionName: name, S3Bucket: aws.String(u.Code.Bucket), S3Key: aws.String(u.Code.Key)}
		if u.Code.ObjectVersion != "" {
			in.S3ObjectVersion = aws.String(u.Code.ObjectVersion)
		}
		out, err := lc.UpdateFunctionCode(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("update the code from s3://%s/%s: %w", u.Code.Bucket, u.Code.Key, brief(err))
		}
		if out.LastUpdateStatus == lambdatypes.LastUpdateStatusInProgress {
			if err := waitUpdated(ctx, lc, u.FunctionName); err != nil {
				return nil, err
			}
		} else if out.LastUpdateStatus == lambdatypes.LastUpdateStatusFailed {
			return nil, fmt.Errorf("update the code: %s", aws.ToString(out.LastUpdateStatusReason))
		}
		if out.Environment != nil {
			env = out.Environment.Variables
		}
		envKnown = true
	}
	if u.Env != nil || u.Description != nil || u.Layers != nil {
		in := &lambda.UpdateFunctionConfigurationInput{FunctionName: name, Description: u.Description}
		if u.Env != nil {
			if !envKnown {
				out, err := lc.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: name})
				if err != nil {
					return nil, fmt.Errorf("read the configuration: %w", brief(err))
				}
				if out.LastUpdateStatus == lambdatypes.LastUpdateStatusInProgress {
					if err := waitUpdated(ctx, lc, u.FunctionName); err != nil {
						return nil, err
					}
				}
				if out.Environment != nil {
					env = out.Environment.Variables
				}
			}
			vars := maps.Clone(env)
			if vars == nil {
				vars = map[string]string{}
			}
			for _, k := range u.Env.Remove {
				delete(vars, k)
			}
			maps.Copy(vars, u.Env.Set)
			in.Environment = &lambdatypes.Environment{Variables: vars}
		}
		if u.Layers != nil {
			in.Layers = []string{}
			for _, l := range u.Layers {
				if l.Layer != nil {
					in.Layers = append(in.Layers, layers[l.Layer])
				} else {
					in.Layers = append(in.Layers, l.ARN)
				}
			}
		}
		out, err := lc.UpdateFunctionConfiguration(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("update the configuration: %w", brief(err))
		}
		if out.LastUpdateStatus == lambdatypes.LastUpdateStatusInProgress {
			if err := waitUpdated(ctx, lc, u.FunctionName); err != nil {
				return nil, err
			}
		} else if out.LastUpdateStatus == lambdatypes.LastUpdateStatusFailed {
			return nil, fmt.Errorf("update the configuration: %s", aws.ToString(out.LastUpdateStatusReason))
		}
	}
	for _, v := range u.Versions {
		in := &lambda.PublishVersionInput{FunctionName: name}
		if v.Description != "" {
			in.Description = aws.String(v.Description)
		}
		out, err := lc.PublishVersion(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("publish version %s: %w", v.LogicalID, brief(err))
		}
		version := aws.ToString(out.Version)
		v.published = version
		changed = append(changed, "version "+version)
		for _, al := range v.Aliases {
			if _, err := lc.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: name, Name: aws.String(al.Name), FunctionVersion: aws.String(version)}); err != nil {
				return nil, fmt.Errorf("move alias %s to version %s: %w", al.Name, version, brief(err))
			}
			changed = append(changed, "alias "+al.Name+" → "+version)
		}
	}
	return changed, nil
}

// newLambdaPoller polls a function's update: from 20 ms, backing off to
// 250 ms at most. A code update takes about a second on Lambda, and a
// 3 s interval (CloudFormation's) would add up to 2 s of waiting to it;
// GetFunctionConfiguration four times a second per function stays far
// below Lambda's rate limit for control-plane reads.
func newLambdaPoller() *poller {
	return &poller{d: 20 * time.Millisecond, limit: lambdaPollLimit}
}

const lambdaPollLimit = 250 * time.Millisecond

// waitUpdated waits for a function's update to finish: Lambda refuses the
// next change to a function while one is in progress.
func waitUpdated(ctx context.Context, lc *lambda.Client, name string) error {
	poll := newLambdaPoller()
	for {
		if err := poll.wait(ctx); err != nil {
			return err
		}
		out, err := lc.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("wait for the update: %w", brief(err))
		}
		switch out.LastUpdateStatus {
		case lambdatypes.LastUpdateStatusInProgress:
			continue
		case lambdatypes.LastUpdateStatusFailed:
			return fmt.Errorf("the update failed: %s (%s)", aws.ToString(out.LastUpdateStatusReason), out.LastUpdateStatusReasonCode)
		}
		return nil
	}
}

// resetAliases moves aliases back to the versions the template names.
func (a *applier) resetAliases(ctx context.Context, lc *lambda.Client, s *Stack, aliases []*AliasReset) error {
	var errs []error
	for _, r := range aliases {
		start := time.Now()
		_, err := lc.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String(r.FunctionName), Name: aws.String(r.Name), FunctionVersion: aws.String(r.Version)})
		if err != nil {
			errs = append(errs, fmt.Errorf("stack %s: alias %s (%s): move back to version %s: %w", s.Name(), r.LogicalID, r.Name, r.Version, brief(err)))
			continue
		}
		a.emit(&StackEvent{Kind: EventReset, Stack: s, Duration: time.Since(start), Hotswap: &HotswapEvent{
			LogicalID: r.LogicalID, Type: "AWS::Lambda::Alias", PhysicalName: r.Name, Changed: []string{"alias " + r.Name + " → " + r.Version},
		}})
	}
	return errors.Join(errs...)
}

// converge sets what earlier hotswaps changed back to the template, once
// the stack is deployed, and forgets the record. CloudFormation updates
// only what its templates differ in, so a function whose template did not
// change since the hotswap would keep the hotswapped code or variables.
func (a *applier) converge(ctx context.Context, p *StackPlan) error {
	s := p.Stack
	se, err := a.stackEnv(p)
	if err != nil {
		return err
	}
	cur, err := describeStack(ctx, se.regionClients, s.StackName)
	if err != nil {
		return err
	}
	physical, types, err := stackResources(ctx, se.regionClients, s.StackName)
	if err != nil {
		return err
	}
	ct, err := decodeTpl(s.Template)
	if err != nil {
		return fmt.Errorf("stack %s: template: %w", s.Name(), err)
	}
	d := newDraft()
	d.addRecord(p.Hotswapped, ct)
	h := d.resolve(tpl{}, ct, newEvaluator(s, cur, se.account, se.region, physical, types))
	h.dropApplied(p.Hotswapped)
	if len(h.Blockers) > 0 {
		why := make([]string, len(h.Blockers))
		for i, b := range h.Blockers {
			why[i] = b.String()
		}
		return fmt.Errorf("stack %s: what an earlier hotswap changed cannot be set back to the template:\n  %s\nfix the function by hand; then delete %s", s.Name(), strings.Join(why, "\n  "), p.records.path(se.account, se.region, s.StackName))
	}
	lc := a.env.lambdaClient(se.regionClients)
	if err := a.updateFunctions(ctx, lc, s, h.Functions, nil, EventReset); err != nil {
		return err
	}
	if err := a.resetAliases(ctx, lc, s, h.Aliases); err != nil {
		return err
	}
	return p.records.remove(se.account, se.region, s.StackName)
}
