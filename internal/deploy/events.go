package deploy

import (
	"strings"
	"time"
)

// EventKind is what a StackEvent reports.
type EventKind string

const (
	// EventDeploying: the stack's deployment starts; Reasons say why.
	EventDeploying EventKind = "deploying"
	// EventWaiting: the stack is busy with another operation
	// (StackStatus), which the deployment waits for.
	EventWaiting EventKind = "waiting"
	// EventRecreating: a stack whose creation failed (StackStatus) is
	// deleted before it is created again.
	EventRecreating EventKind = "recreating"
	// EventPublished: Uploaded assets went to S3 (those already there are
	// not counted).
	EventPublished EventKind = "published"
	// EventChangeSet: the change set is ready; Changes lists what it does
	// and Broadening the IAM grants it adds. Approval, if needed, follows.
	EventChangeSet EventKind = "change set"
	// EventResource: CloudFormation reported a resource's progress
	// (Resource) while executing the change set.
	EventResource EventKind = "resource"
	// EventInterrupted: the context was cancelled while the stack was in
	// Phase; ChangeSet was deleted unless Err says why not, StackStatus is
	// the stack's state when executing.
	EventInterrupted EventKind = "interrupted"
	// EventHotswapping: the stack's changes are hotswapped (Lambda calls,
	// no change set) instead of deployed; Reasons say why it changes.
	EventHotswapping EventKind = "hotswapping"
	// EventHotswapFallback: the stack's changes cannot all be hotswapped
	// (Fallback lists the ones that cannot), so it is deployed with a
	// change set.
	EventHotswapFallback EventKind = "hotswap fallback"
	// EventHotswapped: one resource was updated directly (Hotswap says
	// which and how) in Duration.
	EventHotswapped EventKind = "hotswapped"
	// EventReset: a resource an earlier hotswap changed was set back to
	// what the template says (Hotswap), after the stack was deployed.
	EventReset EventKind = "reset"
	// EventDone: the stack's deployment ended with Status; Err says why
	// it failed or was skipped (Dependency is the stack it waited for),
	// Outputs are the stack's outputs, Duration the deployment's time.
	EventDone EventKind = "done"
	// EventDestroying: pipe destroy deletes the stack (StackStatus is its
	// state before).
	EventDestroying EventKind = "destroying"
)

// Phase is how far a stack's deployment got.
type Phase string

const (
	PhasePrepare   Phase = "prepare"    // nothing changed on the stack yet
	PhaseChangeSet Phase = "change set" // a change set exists, not executed
	PhaseExecuting Phase = "executing"  // CloudFormation executes the change
)

// StackEvent is one step of a stack's deployment, for a Reporter. Only the
// fields its Kind names are set.
type StackEvent struct {
	Kind  EventKind
	Stack *Stack
	Time  time.Time

	Reasons     []string
	StackStatus string
	Uploaded    int
	Changes     []ResourceChange
	Broadening  []string
	Resource    *ResourceEvent
	Phase       Phase
	ChangeSet   string
	Status      Status
	Err         error
	Dependency  *Stack
	Outputs     map[string]string
	Duration    time.Duration
	Hotswap     *HotswapEvent
	Fallback    []HotswapBlocker
}

// HotswapEvent is one resource a hotswap updated.
type HotswapEvent struct {
	LogicalID, Type string
	// PhysicalName is the function's name or the layer's ARN.
	PhysicalName string
	// Changed says what changed: "code", "environment (STAGE)",
	// "description", "layers", "version 3", "alias live → 3", "version 4
	// published".
	Changed []string
}

// ResourceChange is one resource a change set adds, modifies or removes.
type ResourceChange struct {
	// Action is CloudFormation's: Add, Modify, Remove, Import, Dynamic.
	Action    string
	Type      string
	LogicalID string
	// Replacement is True, False or Conditional for a modification.
	Replacement string
}

// ResourceEvent is one CloudFormation stack event of an execution.
type ResourceEvent struct {
	Status    string // CREATE_IN_PROGRESS, UPDATE_FAILED…
	Type      string
	LogicalID string
	Reason    string
}

// Failed reports a resource event that failed with a reason.
func (e *ResourceEvent) Failed() bool {
	return strings.HasSuffix(e.Status, "_FAILED")
}

// Reporter receives the events of Apply. Calls come from the goroutines of
// concurrent stacks, one event at a time per stack; a Reporter that
// prints must serialise its writes itself.
type Reporter interface {
	StackEvent(ev *StackEvent)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ev *StackEvent)

// StackEvent calls f.
func (f ReporterFunc) StackEvent(ev *StackEvent) { f(ev) }
