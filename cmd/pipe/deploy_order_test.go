package main

import (
	"regexp"
	"strings"
	"testing"
)

// Regression: the output of a deploy varied between runs. Stacks that need
// no deploy are reported in dependency order, the same every time.
func TestDeployOutputDeterministic(t *testing.T) {
	r := newAWSRegion(t, "ap-northeast-1", true)
	ws := appWorkspace(t)
	if _, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--require-approval", "never"); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, stderr)
	}
	durations := regexp.MustCompile(`\(\d+\.\d+s\)|\d+ms|\d+\.\d+s`)
	var first string
	for i := 0; i < 4; i++ {
		_, stderr, code := r.pipe(t, ws, "deploy", "--app", "cdk.out", "--concurrency", "4")
		if code != 0 {
			t.Fatalf("no-change deploy: exit %d\n%s", code, stderr)
		}
		got := durations.ReplaceAllString(stderr, "(T)")
		if i == 0 {
			first = got
			// Dependencies first: DepStack imports an ApiStack output.
			if a, d := strings.Index(got, "ApiStack"), strings.Index(got, "DepStack"); a < 0 || d < 0 || a > d {
				t.Errorf("stacks not in dependency order:\n%s", got)
			}
			continue
		}
		if got != first {
			t.Fatalf("no-change deploy %d printed\n%s\nthe first printed\n%s", i+1, got, first)
		}
	}
}
