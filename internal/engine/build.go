package engine

import (
	"context"
	"time"
)

// Phase is one timed step of a command, for --profile.
type Phase struct {
	Name       string
	Start, End time.Time
}

// Plan is a loaded and analysed build: the targets the patterns selected
// and the actions that produce them.
type Plan struct {
	Targets *TargetGraph
	Actions *ActionGraph
	// Needed is the closure of actions of the selected targets, in
	// dependency order.
	Needed []*Action
	Phases []Phase
}

// PlanBuild loads the packages the patterns select and analyses them.
func PlanBuild(ctx context.Context, ws *Workspace, loader Loader, patterns []Pattern) (*Plan, error) {
	p := &Plan{}
	t0 := time.Now()
	tg, err := LoadTargets(ctx, ws, loader, patterns)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	p.Phases = append(p.Phases, Phase{"load", t0, t1})
	ag, err := Analyze(ctx, tg)
	if err != nil {
		return nil, err
	}
	t2 := time.Now()
	p.Phases = append(p.Phases, Phase{"analyze", t1, t2})
	p.Targets, p.Actions = tg, ag
	p.Needed = ag.Closure(tg.Roots)
	return p, nil
}
