package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
)

// liveStacks lists the region's stacks that are not deleted.
func liveStacks(t *testing.T, r *awsRegion) map[string]bool {
	t.Helper()
	c := cloudformation.NewFromConfig(r.aws())
	out, err := c.ListStacks(context.Background(), &cloudformation.ListStacksInput{})
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, s := range out.StackSummaries {
		if s.StackStatus != types.StackStatusDeleteComplete {
			live[aws.ToString(s.StackName)] = true
		}
	}
	return live
}

func TestDestroy(t *testing.T) {
	r := newAWSRegion(t, "eu-south-1", true)
	ws := appWorkspace(t)
	if _, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--require-approval", "never"); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, stderr)
	}
	if live := liveStacks(t, r); !live["ApiStack"] || !live["DepStack"] {
		t.Fatalf("deployed stacks %v", live)
	}

	// Not on a terminal, destroy needs --force.
	_, stderr, code := r.pipe(t, ws, "destroy", "--app", "cdk.out")
	if code != 2 || !strings.Contains(stderr, "--force") {
		t.Errorf("destroy without --force and without a terminal: exit %d, want 2 naming --force\n%s", code, stderr)
	}

	// Naming ApiStack takes DepStack, which imports its output, with it,
	// and deletes DepStack first.
	_, stderr, code = r.pipe(t, ws, "destroy", "--app", "cdk.out", "--stacks", "ApiStack", "--force")
	if code != 0 {
		t.Fatalf("destroy --stacks ApiStack: exit %d\n%s", code, stderr)
	}
	if dep, api := strings.Index(stderr, "✓ DepStack (deleted"), strings.Index(stderr, "✓ ApiStack (deleted"); dep < 0 || api < 0 || dep > api {
		t.Errorf("want DepStack deleted before ApiStack:\n%s", stderr)
	}
	if !strings.Contains(stderr, "2 stacks: 2 destroyed") {
		t.Errorf("summary:\n%s", stderr)
	}
	live := liveStacks(t, r)
	if live["ApiStack"] || live["DepStack"] || !live["IndStack"] {
		t.Errorf("after destroying ApiStack: live stacks %v; want IndStack kept, ApiStack and DepStack gone", live)
	}

	// The rest; the two already gone are reported as not deployed, with
	// no write call.
	_, stderr, code = r.pipe(t, ws, "destroy", "--app", "cdk.out", "-f")
	if code != 0 {
		t.Fatalf("destroy all: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "✓ ApiStack (not deployed)") || !strings.Contains(stderr, "2 destroyed, 2 not deployed") {
		t.Errorf("second destroy:\n%s", stderr)
	}
	if live := liveStacks(t, r); len(live) != 0 {
		t.Errorf("stacks left: %v", live)
	}
}
