package tfdeploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/tfcli"
)

// A plan of the AWS provider's resources, in the JSON terraform show
// -json writes: the counts, and the access-granting changes flagged.
func TestSummarize(t *testing.T) {
	b, err := os.ReadFile("testdata/plan-aws.json")
	if err != nil {
		t.Fatal(err)
	}
	p := &Plan{}
	if err := p.summarize(b); err != nil {
		t.Fatal(err)
	}
	if add, change, destroy := p.Counts(); add != 3 || change != 2 || destroy != 2 {
		t.Errorf("counts %d/%d/%d, want 3 to add, 2 to change, 2 to destroy", add, change, destroy)
	}
	var addrs []string
	for _, c := range p.Changes {
		addrs = append(addrs, c.Address+":"+string(c.Action))
	}
	want := "aws_iam_role.handler:create aws_iam_role_policy.old:delete aws_lambda_function.handler:update aws_lambda_permission.api:replace aws_security_group_rule.in:update aws_security_group_rule.out:create data.aws_region.current:read"
	if strings.Join(addrs, " ") != want {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(addrs, " "), want)
	}
	wantB := []string{
		"aws_iam_role.handler (create): role trust policy",
		"aws_lambda_permission.api (replace): Lambda resource policy",
		"aws_security_group_rule.in (update): security group rule",
	}
	if strings.Join(p.Broadening, "\n") != strings.Join(wantB, "\n") {
		t.Errorf("broadening:\n%s\nwant:\n%s", strings.Join(p.Broadening, "\n"), strings.Join(wantB, "\n"))
	}
	if len(p.Outputs) != 1 || p.Outputs[0].Name != "api_url" {
		t.Errorf("output changes %v, want api_url only", p.Outputs)
	}
	for policy, want := range map[deploy.Approval]deploy.Approval{
		deploy.ApproveBroadening: deploy.ApproveBroadening,
		"":                       deploy.ApproveBroadening,
		deploy.ApproveAnyChange:  deploy.ApproveAnyChange,
		deploy.ApproveNever:      "",
	} {
		p.decideApproval(policy)
		if p.ApprovalNeeded != want {
			t.Errorf("--require-approval %q: approval %q, want %q", policy, p.ApprovalNeeded, want)
		}
	}
	// Without broadening changes, the default asks nobody.
	p.Broadening = nil
	p.decideApproval(deploy.ApproveBroadening)
	if p.ApprovalNeeded != "" {
		t.Errorf("no broadening: approval %q", p.ApprovalNeeded)
	}
}

// A plan that needs approval is refused without a prompt, or when the
// person says no, before any terraform process runs (the binary here
// does not exist: running it would be another error).
func TestApplyRefuses(t *testing.T) {
	dir := t.TempDir()
	r := &Root{Name: "//infra:infra", Dir: dir, StateDir: filepath.Join(dir, ".state"), CLI: tfcli.CLI{Path: filepath.Join(dir, "no-terraform"), CacheDir: dir}}
	p := &Plan{Root: r, Changes: []Change{{Address: "aws_iam_role.x", Action: Create}}, Broadening: []string{"aws_iam_role.x (create): role trust policy"}, ApprovalNeeded: deploy.ApproveBroadening, planFile: filepath.Join(dir, "plan")}
	_, err := Apply(context.Background(), p, nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "broadens IAM permissions") || !strings.Contains(err.Error(), "--require-approval never") {
		t.Errorf("no prompt: %v", err)
	}
	asked := ""
	_, err = Apply(context.Background(), p, func(q string) (bool, error) { asked = q; return false, nil })
	if !errors.Is(err, ErrRefused) || asked != "Apply //infra:infra? [y/N] " {
		t.Errorf("answered no to %q: %v", asked, err)
	}
}

func TestReadBackend(t *testing.T) {
	for name, tc := range map[string]struct {
		src    string
		remote bool
		path   string
		err    string
	}{
		"none":       {src: "output \"x\" {\n  value = 1\n}\n", path: "terraform.tfstate"},
		"local path": {src: "terraform {\n  backend \"local\" {\n    path = \"state/x.tfstate\"\n  }\n}\n", path: "state/x.tfstate"},
		"s3":         {src: "terraform {\n  backend \"s3\" {}\n}\n", remote: true, path: "terraform.tfstate"},
		"computed":   {src: "terraform {\n  backend \"local\" {\n    path = var.p\n  }\n}\n", err: "must be a literal string"},
		"broken":     {src: "terraform {\n", err: "main.tf:"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := readBackend(dir)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || b.remote != tc.remote || b.path != tc.path {
				t.Errorf("got %+v, %v; want remote=%v path=%s", b, err, tc.remote, tc.path)
			}
		})
	}
}

func TestParseOutputs(t *testing.T) {
	out, err := parseOutputs([]byte(`{"url":{"sensitive":false,"type":"string","value":"https://x/"},"n":{"sensitive":false,"type":"number","value":3},"secret":{"sensitive":true,"type":"string","value":"pw"},"m":{"sensitive":false,"value":{"a":[1,2]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"url": "https://x/", "n": "3", "secret": "(sensitive)", "m": `{"a":[1,2]}`}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %q, want %q", k, out[k], v)
		}
	}
}

// FuzzSummarize: any bytes terraform show -json might be make a summary
// or an error, never a panic.
func FuzzSummarize(f *testing.F) {
	if b, err := os.ReadFile("testdata/plan-aws.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"format_version":"1.2","resource_changes":[{"address":"a","type":"aws_security_group","change":{"actions":["update"],"after":{"ingress":[{}]}}}]}`))
	f.Add([]byte(`{"format_version":"1.2","resource_changes":[null,{"change":null}],"output_changes":{"x":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &Plan{}
		if p.summarize(b) == nil {
			p.Counts()
			p.decideApproval(deploy.ApproveBroadening)
		}
	})
}

// FuzzParseOutputs: terraform output -json of any shape.
func FuzzParseOutputs(f *testing.F) {
	f.Add([]byte(`{"a":{"sensitive":false,"value":"x"}}`))
	f.Add([]byte(`{"a":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseOutputs(b)
	})
}

// FuzzReadBackend: any root module source finds a backend or fails with
// the file's position, never a panic.
func FuzzReadBackend(f *testing.F) {
	f.Add("terraform {\n  backend \"local\" {\n    path = \"x\"\n  }\n}\n")
	f.Add("terraform {\n  backend \"s3\" {}\n}\n")
	f.Add("terraform {\n  backend {}\n}\n")
	f.Fuzz(func(t *testing.T, src string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		readBackend(dir)
	})
}
