package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/pipebuild/pipe/internal/dag"
)

// Destroy deletes the stacks, each after every selected stack that depends
// on it (the reverse of the deploy order), independent ones concurrently,
// reporting to r. A stack that does not exist is reported StatusAbsent
// without a write call. A stack with termination protection is refused, as
// the CDK CLI refuses it: the protection exists to stop exactly this.
// Results come in the stacks' order.
func Destroy(ctx context.Context, cfg aws.Config, stacks []*Stack, opt DestroyOptions, r Reporter) ([]*Result, error) {
	env := newAWSEnv(cfg)
	emit := func(ev *StackEvent) {
		if ev.Time.IsZero() {
			ev.Time = time.Now()
		}
		r.StackEvent(ev)
	}
	index := make(map[*Stack]int, len(stacks))
	for i, s := range stacks {
		index[s] = i
	}
	// dependents[i] are the selected stacks that depend on stack i: they
	// must be gone before it goes.
	dependents := make([][]int, len(stacks))
	for i, s := range stacks {
		for _, d := range s.Deps {
			if j, ok := index[d]; ok {
				dependents[j] = append(dependents[j], i)
			}
		}
	}
	results := make([]*Result, len(stacks))
	for i, s := range stacks {
		results[i] = &Result{Stack: s}
	}
	vertices := make([]int, len(stacks))
	for i := range vertices {
		vertices[i] = i
	}
	concurrency := opt.Concurrency
	if concurrency < 1 {
		concurrency = 1
	}
	err := dag.WalkVertices(ctx, vertices, func(i int) []int { return dependents[i] }, dag.Options[int]{
		Concurrency: concurrency,
		KeepGoing:   true,
		Less:        func(x, y int) bool { return x < y },
		Skipped: func(i int, reason error) {
			res := results[i]
			res.Start, res.End = time.Now(), time.Now()
			var de *dag.DependencyError[int]
			if errors.As(reason, &de) {
				dep := stacks[de.Dep]
				res.Status = StatusKept
				res.Err = fmt.Errorf("stack %s: not deleted: %s, which depends on it, was not deleted", stacks[i].Name(), dep.DisplayName)
				emit(&StackEvent{Kind: EventDone, Stack: stacks[i], Status: res.Status, Err: res.Err, Dependency: dep})
				return
			}
			res.Status = StatusNotStarted
			emit(&StackEvent{Kind: EventDone, Stack: stacks[i], Status: res.Status})
		},
	}, func(ctx context.Context, i int) error {
		s, res := stacks[i], results[i]
		res.Start = time.Now()
		res.Status, res.Err = destroyStack(ctx, env, s, emit)
		res.End = time.Now()
		emit(&StackEvent{Kind: EventDone, Stack: s, Status: res.Status, Err: res.Err, Duration: res.End.Sub(res.Start)})
		if res.Status == StatusFailed {
			return res.Err
		}
		return nil
	})
	return results, err
}

// DestroyOptions tunes Destroy.
type DestroyOptions struct {
	// Concurrency bounds how many stacks are deleted at once.
	Concurrency int
}

// destroyStack deletes one stack and waits until CloudFormation has.
func destroyStack(ctx context.Context, env *awsEnv, s *Stack, emit func(*StackEvent)) (Status, error) {
	rc, err := env.clients(s.Region)
	if err != nil {
		return StatusFailed, fmt.Errorf("stack %s: %w", s.Name(), err)
	}
	d, err := waitStable(ctx, rc, s, func(ev *StackEvent) { ev.Stack = s; emit(ev) })
	if err != nil {
		return StatusFailed, fmt.Errorf("stack %s: %w", s.Name(), brief(err))
	}
	if !d.exists || d.status == "DELETE_COMPLETE" {
		return StatusAbsent, nil
	}
	out, err := rc.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(s.StackName)})
	if err == nil && len(out.Stacks) > 0 && aws.ToBool(out.Stacks[0].EnableTerminationProtection) {
		return StatusFailed, fmt.Errorf("stack %s has termination protection: turn it off (terminationProtection: false in the app, then pipe deploy) before destroying it", s.Name())
	}
	emit(&StackEvent{Kind: EventDestroying, Stack: s, StackStatus: d.status})
	if _, err := rc.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(s.StackName)}); err != nil {
		return StatusFailed, fmt.Errorf("stack %s: delete: %w", s.Name(), brief(err))
	}
	poll := newPoller()
	for {
		d, err := describeStack(ctx, rc, s.StackName)
		if err != nil {
			return StatusFailed, fmt.Errorf("stack %s: %w", s.Name(), brief(err))
		}
		switch {
		case !d.exists || d.status == "DELETE_COMPLETE":
			return StatusDestroyed, nil
		case d.status == "DELETE_FAILED":
			return StatusFailed, fmt.Errorf("stack %s: DELETE_FAILED: %s; fix the resource named there (a non-empty bucket, a resource in use) and run pipe destroy again", s.Name(), d.reason)
		}
		if err := poll.wait(ctx); err != nil {
			return StatusFailed, fmt.Errorf("stack %s: interrupted while CloudFormation deletes it (%s); it goes on without pipe", s.Name(), d.status)
		}
	}
}

// SelectWithDependents returns the stacks whose display name or stack name
// matches one of the globs, with the stacks that depend on them: deleting
// a stack whose outputs another stack imports fails, so its dependents go
// first. No globs selects all. The order is the input's.
func SelectWithDependents(stacks []*Stack, globs []string) ([]*Stack, error) {
	if len(globs) == 0 {
		return stacks, nil
	}
	matched, err := Select(stacks, globs) // validates the globs
	if err != nil {
		return nil, err
	}
	want := map[*Stack]bool{}
	for _, s := range matched {
		for _, g := range globs {
			m1, _ := path.Match(g, s.DisplayName)
			m2, _ := path.Match(g, s.StackName)
			if m1 || m2 {
				want[s] = true
			}
		}
	}
	// Add dependents until nothing changes; assemblies are small.
	for changed := true; changed; {
		changed = false
		for _, s := range stacks {
			if want[s] {
				continue
			}
			for _, d := range s.Deps {
				if want[d] {
					want[s], changed = true, true
					break
				}
			}
		}
	}
	var out []*Stack
	for _, s := range stacks {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}
