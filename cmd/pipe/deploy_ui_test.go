package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pipebuild/pipe/internal/deploy"
)

// The template diff reads as it did when the deploy package printed it.
func TestDeployUITemplateDiff(t *testing.T) {
	old := []byte(`{"Resources": {
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "a.zip"}, "Environment": {"Variables": {"A": "1"}}, "Layers": ["l1"]}},
  "Gone": {"Type": "AWS::SQS::Queue"}},
 "Outputs": {"Url": {"Value": "x"}},
 "Description": "v1"}`)
	new := []byte(`{"Resources": {
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "b.zip"}, "Environment": {"Variables": {"A": "1", "B": "2"}}, "Layers": ["l1", {"Ref": "L2"}]}},
  "New": {"Type": "AWS::SNS::Topic"}},
 "Outputs": {"Url": {"Value": "y"}},
 "Description": "v2"}`)
	changes, err := deploy.DiffTemplates(old, new)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	writeTemplateChanges(&b, changes)
	want := `  Resources
  [~] AWS::Lambda::Function Fn
       Properties.Code.S3Key: "a.zip" → "b.zip"
       + Properties.Environment.Variables.B: "2"
       + Properties.Layers[1]: {"Ref":"L2"}
  [-] AWS::SQS::Queue Gone
  [+] AWS::SNS::Topic New
  Outputs
  [~] Url
       Value: "x" → "y"
  Description: "v1" → "v2"
`
	if b.String() != want {
		t.Errorf("diff:\n%s\nwant:\n%s", b.String(), want)
	}
}

// pipe diff and --dry-run render plans; the lines are those pipe printed
// before plans existed.
func TestDeployUIPlans(t *testing.T) {
	api := &deploy.Stack{DisplayName: "Prod/Api", StackName: "Prod-Api"}
	ind := &deploy.Stack{DisplayName: "Ind", StackName: "Ind"}
	bad := &deploy.Stack{DisplayName: "Bad", StackName: "Bad"}
	plans := []*deploy.StackPlan{
		{
			Stack: api, State: deploy.StateUpdate, Exists: true, Reasons: []string{"template differs", "tags differ"},
			Template: []deploy.TemplateChange{{Section: "Resources", Name: "Role", Type: "AWS::IAM::Role", Kind: deploy.Added}},
			Tags:     []deploy.MapChange{{Key: "team", Kind: deploy.Modified, Old: "a", New: "b"}},
			Parameters: []deploy.MapChange{
				{Key: "Stage", Kind: deploy.Added, New: "prod"},
			},
			Broadening: []string{"AWS::IAM::Role Role: Allow s3:* on *"},
			Assets:     []*deploy.AssetPlan{{Present: true, Checked: true}, {Checked: true}, {Checked: true}, {CheckErr: errors.New("timeout")}},
		},
		{Stack: ind, State: deploy.StateUpToDate, Exists: true},
		{Stack: bad, State: deploy.StateUnknown, Err: errors.New("stack Bad: describe: AccessDenied")},
	}
	var out strings.Builder
	differs, err := renderDiff(&out, plans)
	if !differs || err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("renderDiff: differs %t, err %v", differs, err)
	}
	wantDiff := `Stack Prod/Api
  Resources
  [+] AWS::IAM::Role Role
  Tags
  [~] team: a → b
  Parameter values
  [+] Stage = prod
  IAM changes that broaden permissions (deploying asks for approval):
  [+] AWS::IAM::Role Role: Allow s3:* on *

Stack Ind
  There were no differences

`
	if out.String() != wantDiff {
		t.Errorf("pipe diff:\n%s\nwant:\n%s", out.String(), wantDiff)
	}

	var dry strings.Builder
	results, err := newDeployUI(&dry, nil, time.Now()).dryRun(plans)
	if err == nil || len(results) != 3 || results[0].Status != deploy.StatusWould || results[1].Status != deploy.StatusUnchanged || results[2].Status != deploy.StatusFailed {
		t.Errorf("dry run: %v %+v", err, results)
	}
	wantDry := `• Prod/Api would be deployed (template differs, tags differ)
  Resources
  [+] AWS::IAM::Role Role
  IAM broadening: AWS::IAM::Role Role: Allow s3:* on *
  would upload 2 assets
✓ Ind (no changes)
✗ Bad: describe: AccessDenied
`
	if dry.String() != wantDry {
		t.Errorf("--dry-run:\n%s\nwant:\n%s", dry.String(), wantDry)
	}
}

// Each event kind prints the line pipe deploy always printed for it.
func TestDeployUIEvents(t *testing.T) {
	s := &deploy.Stack{DisplayName: "Prod/Api", StackName: "Prod-Api"}
	dep := &deploy.Stack{DisplayName: "Shared", StackName: "Shared"}
	for _, c := range []struct {
		ev   deploy.StackEvent
		want string
	}{
		{deploy.StackEvent{Kind: deploy.EventDeploying, Reasons: []string{"new stack"}}, "Prod/Api: deploying (new stack)\n"},
		{deploy.StackEvent{Kind: deploy.EventWaiting, StackStatus: "UPDATE_IN_PROGRESS"}, "Prod/Api: waiting for the stack's current operation (UPDATE_IN_PROGRESS) to finish\n"},
		{deploy.StackEvent{Kind: deploy.EventRecreating, StackStatus: "ROLLBACK_COMPLETE"}, "Prod/Api: deleting the stack left by a failed creation (ROLLBACK_COMPLETE) before creating it again\n"},
		{deploy.StackEvent{Kind: deploy.EventPublished, Uploaded: 1}, "Prod/Api: uploaded 1 asset\n"},
		{deploy.StackEvent{Kind: deploy.EventChangeSet, Changes: []deploy.ResourceChange{
			{Action: "Add", Type: "AWS::IAM::Role", LogicalID: "Role"},
			{Action: "Modify", Type: "AWS::Lambda::Function", LogicalID: "Fn", Replacement: "Conditional"},
		}, Broadening: []string{"AWS::IAM::Role Role: Allow s3:* on *"}},
			"Prod/Api: 2 changes:\n  + AWS::IAM::Role        Role\n  ~ AWS::Lambda::Function Fn  (may be replaced)\nProd/Api: IAM changes that broaden permissions:\n  + AWS::IAM::Role Role: Allow s3:* on *\n"},
		{deploy.StackEvent{Kind: deploy.EventResource, Resource: &deploy.ResourceEvent{Status: "CREATE_FAILED", Type: "AWS::S3::Bucket", LogicalID: "B", Reason: "taken"}}, "Prod/Api | CREATE_FAILED | AWS::S3::Bucket | B | taken\n"},
		{deploy.StackEvent{Kind: deploy.EventResource, Resource: &deploy.ResourceEvent{Status: "CREATE_IN_PROGRESS", Type: "AWS::S3::Bucket", LogicalID: "B", Reason: "User Initiated"}}, "Prod/Api | CREATE_IN_PROGRESS | AWS::S3::Bucket | B\n"},
		{deploy.StackEvent{Kind: deploy.EventInterrupted, Phase: deploy.PhaseChangeSet, ChangeSet: "cs"}, "! Prod/Api: interrupted before executing; change set deleted, the stack is unchanged\n"},
		{deploy.StackEvent{Kind: deploy.EventInterrupted, Phase: deploy.PhaseExecuting, StackStatus: "UPDATE_IN_PROGRESS"}, "! Prod/Api: interrupted while CloudFormation executes the change: the stack is UPDATE_IN_PROGRESS and CloudFormation carries on; pipe deploy again shows the result\n"},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusDeployed, Duration: 1500 * time.Millisecond}, "✓ Prod/Api (deployed, 1.5s)\n"},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusUnchanged}, "✓ Prod/Api (no changes)\n"},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusSkipped, Dependency: dep}, "- Prod/Api skipped: its dependency Shared was not deployed\n"},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusFailed, Err: errors.New("stack Prod/Api (Prod-Api): change set failed: boom")}, "✗ Prod/Api: change set failed: boom\n"},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusFailed, Err: context.Canceled}, ""},
		{deploy.StackEvent{Kind: deploy.EventDone, Status: deploy.StatusNotStarted}, ""},
	} {
		ev := c.ev
		ev.Stack = s
		var b strings.Builder
		writeStackEvent(&b, &ev)
		if b.String() != c.want {
			t.Errorf("%s event:\n got %q\nwant %q", ev.Kind, b.String(), c.want)
		}
	}
}

// Hotswap events read as one line per resource, with the timing; the note
// that hotswapped stacks differ from their templates comes once.
func TestDeployUIHotswap(t *testing.T) {
	api := &deploy.Stack{DisplayName: "Api", StackName: "Api"}
	other := &deploy.Stack{DisplayName: "Other", StackName: "Other"}
	var out strings.Builder
	d := newDeployUI(&out, nil, time.Now())
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventHotswapFallback, Stack: other, Fallback: []deploy.HotswapBlocker{
		{Section: "Resources", LogicalID: "Role", Type: "AWS::IAM::Role", Property: "Properties.Policies[0]", Reason: "changed"},
		{Section: "Outputs", LogicalID: "Url", Reason: "changed"},
		{Reason: "tags differ"},
	}})
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventHotswapping, Stack: api, Reasons: []string{"template differs"}})
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventHotswapped, Stack: api, Duration: 310 * time.Millisecond,
		Hotswap: &deploy.HotswapEvent{LogicalID: "Handler", Type: "AWS::Lambda::Function", PhysicalName: "Api-Handler-1", Changed: []string{"code", "environment (STAGE)", "version 3", "alias live → 3"}}})
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventDone, Stack: api, Status: deploy.StatusHotswapped, Duration: 400 * time.Millisecond})
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventDone, Stack: other, Status: deploy.StatusHotswapped, Duration: 400 * time.Millisecond})
	d.StackEvent(&deploy.StackEvent{Kind: deploy.EventReset, Stack: api, Duration: 20 * time.Millisecond,
		Hotswap: &deploy.HotswapEvent{LogicalID: "Handler", PhysicalName: "Api-Handler-1", Changed: []string{"code"}}})
	want := `Other: cannot hotswap, deploying with a change set:
  Role (AWS::IAM::Role) Properties.Policies[0]: changed
  output Url: changed
  tags differ
Api: hotswapping (template differs)
Api: hotswapped Handler (Api-Handler-1): code, environment (STAGE), version 3, alias live → 3 (0.31s)
✓ Api (hotswapped, 0.4s)
` + driftNote + `✓ Other (hotswapped, 0.4s)
Api: set back to the template Handler (Api-Handler-1): code (0.02s)
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
