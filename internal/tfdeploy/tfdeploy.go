// Package tfdeploy deploys Terraform (or OpenTofu) root modules: Plan
// reads the state and, unless nothing changed since the last successful
// apply, makes a saved plan (reused while the inputs and the state stay
// as they were) and summarizes it from terraform's JSON; Apply applies
// that saved plan and reads the outputs.
//
// The package prints nothing: the CLI renders the typed plans and
// results. It knows no rule: the CLI hands it each root's directory,
// binary and fingerprint.
package tfdeploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/files"
	"github.com/pipebuild/pipe/internal/tfcli"
)

// Root is one root module to deploy.
type Root struct {
	// Name is how messages name it (the target's label).
	Name string
	// Dir is the module's directory (absolute); terraform runs there.
	Dir string
	// ShowDir is Dir relative to the workspace, for messages.
	ShowDir string
	// StateDir is pipe's private directory for this root (under .pipe):
	// terraform's data directory, the saved plan and the record of the
	// last successful apply.
	StateDir string
	// CLI runs terraform; its DataDir is set from StateDir.
	CLI tfcli.CLI
	// Vars are passed as -var NAME=VALUE to plan.
	Vars map[string]string
	// Backend are passed as -backend-config=KEY=VALUE to init.
	Backend map[string]string
	// Fingerprint covers every input of a plan but the state.
	Fingerprint string
}

// Options are the knobs of a plan.
type Options struct {
	// Approval is the --require-approval policy.
	Approval deploy.Approval
	// Force plans even when nothing changed since the last apply.
	Force bool
	// Destroy plans the destruction of everything in the state.
	Destroy bool
}

// Action is what a plan does to one resource.
type Action string

// The actions of a resource change, as pipe shows them.
const (
	Create  Action = "create"
	Update  Action = "update"
	Replace Action = "replace"
	Delete  Action = "delete"
	Read    Action = "read"
	Forget  Action = "forget"
)

// Change is one resource the plan changes.
type Change struct {
	Address string
	Type    string
	Action  Action
}

// OutputChange is one root output the plan changes.
type OutputChange struct {
	Name   string
	Action Action
}

// Plan is the plan of one root.
type Plan struct {
	Root *Root
	// Skip says nothing changed since the last successful apply: no
	// terraform process ran and nothing is to do.
	Skip bool
	// Cached says the saved plan was reused (same inputs and state).
	Cached bool
	// Changes are the resource changes, by address; no-ops left out.
	Changes []Change
	// Outputs are the root outputs the plan changes.
	Outputs []OutputChange
	// Broadening lists changes that widen IAM permissions or network
	// ingress ("aws_iam_role_policy.x (create)"), as the CDK path flags.
	Broadening []string
	// ApprovalNeeded is the policy under which a person must say yes
	// before the plan is applied, "" when none.
	ApprovalNeeded deploy.Approval
	// Destroy is a plan that destroys everything.
	Destroy bool

	planFile string
	state    stateID
	// drift are the resources whose real state changed outside terraform.
	drift int
}

// Counts returns how many resources the plan adds, changes and destroys
// (a replacement counts as an add and a destroy, as terraform counts).
func (p *Plan) Counts() (add, change, destroy int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			add++
		case Update:
			change++
		case Replace:
			add++
			destroy++
		case Delete:
			destroy++
		}
	}
	return
}

// Empty says applying the plan would change nothing.
func (p *Plan) Empty() bool {
	if p.Skip {
		return true
	}
	for _, c := range p.Changes {
		if c.Action != Read {
			return false
		}
	}
	return len(p.Outputs) == 0
}

// Result is what Apply did.
type Result struct {
	// Outputs are the root module's outputs after the apply, by name:
	// strings as they are, other values as JSON, sensitive ones hidden.
	Outputs map[string]string
	// Applied says terraform applied a plan (false: skipped or empty).
	Applied bool
}

// ErrRefused is returned when a plan that needs approval was not approved.
var ErrRefused = deploy.ErrRefused

// stateID identifies a state: terraform bumps the serial on every write
// and a new state gets a new lineage.
type stateID struct {
	Lineage string `json:"lineage"`
	Serial  int64  `json:"serial"`
}

// applied is the record of the last successful apply of a root.
type applied struct {
	Fingerprint string  `json:"fingerprint"`
	State       stateID `json:"state"`
}

func (r *Root) cli() *tfcli.CLI {
	c := r.CLI
	c.DataDir = filepath.Join(r.StateDir, "data")
	c.ShowDir = r.ShowDir
	return &c
}

func (r *Root) appliedFile() string { return filepath.Join(r.StateDir, "applied.json") }

// PlanRoot plans one root. With nothing changed since the last successful
// apply (same fingerprint, same state) it returns a plan that skips,
// having run no terraform process when the state is local.
func PlanRoot(ctx context.Context, r *Root, opt Options) (*Plan, error) {
	if err := os.MkdirAll(r.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	p := &Plan{Root: r, Destroy: opt.Destroy}
	backend, err := readBackend(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	initDone := false
	ensureInit := func() error {
		if initDone {
			return nil
		}
		initDone = true
		return r.init(ctx)
	}
	p.state, err = r.readState(ctx, backend, ensureInit)
	if err != nil {
		return nil, fmt.Errorf("%s: read the state: %w", r.Name, err)
	}
	if !opt.Force && !opt.Destroy {
		if last, ok := r.lastApplied(); ok && last.Fingerprint == r.Fingerprint && last.State == p.state {
			p.Skip = true
			return p, nil
		}
	}
	if opt.Destroy && p.state.Lineage == "" && !backend.remote {
		// Nothing was ever applied here: nothing to destroy.
		return p, nil
	}
	key := r.planKey(p.state, opt.Destroy)
	p.planFile = filepath.Join(r.StateDir, "plan-"+key[:16]+".tfplan")
	showFile := strings.TrimSuffix(p.planFile, ".tfplan") + ".json"
	show, err := os.ReadFile(showFile)
	if _, serr := os.Stat(p.planFile); err == nil && serr == nil {
		p.Cached = true
	} else {
		if err := ensureInit(); err != nil {
			return nil, err
		}
		if show, err = r.plan(ctx, p.planFile, showFile, opt.Destroy); err != nil {
			return nil, err
		}
	}
	if err := p.summarize(show); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	p.decideApproval(opt.Approval)
	return p, nil
}

// decideApproval sets ApprovalNeeded by the --require-approval policy, as
// the CDK path decides it: any change, or only one that broadens access
// (the default).
func (p *Plan) decideApproval(policy deploy.Approval) {
	p.ApprovalNeeded = ""
	switch {
	case p.Empty():
	case policy == deploy.ApproveAnyChange:
		p.ApprovalNeeded = deploy.ApproveAnyChange
	case (policy == deploy.ApproveBroadening || policy == "") && len(p.Broadening) > 0:
		p.ApprovalNeeded = deploy.ApproveBroadening
	}
}

// planKey names a saved plan by everything it was made from.
func (r *Root) planKey(s stateID, destroy bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "fingerprint=%s\nlineage=%s\nserial=%d\ndestroy=%v\n", r.Fingerprint, s.Lineage, s.Serial, destroy)
	return hex.EncodeToString(h.Sum(nil))
}

func (r *Root) lastApplied() (applied, bool) {
	var a applied
	b, err := os.ReadFile(r.appliedFile())
	if err != nil || json.Unmarshal(b, &a) != nil {
		return a, false
	}
	return a, true
}

func (r *Root) init(ctx context.Context) error {
	args := []string{"init", "-input=false", "-no-color"}
	keys := make([]string, 0, len(r.Backend))
	for k := range r.Backend {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-backend-config="+k+"="+r.Backend[k])
	}
	if len(keys) > 0 {
		args = append(args, "-reconfigure")
	}
	if err := r.cli().Run(ctx, r.Dir, nil, args...); err != nil {
		return fmt.Errorf("%s: %w", r.Name, err)
	}
	return nil
}

// plan writes a saved plan and its JSON rendering, dropping older plans
// of the root: a saved plan is good only for the state it was made on.
func (r *Root) plan(ctx context.Context, planFile, showFile string, destroy bool) ([]byte, error) {
	old, _ := filepath.Glob(filepath.Join(r.StateDir, "plan-*"))
	for _, f := range old {
		os.Remove(f)
	}
	tmp := planFile + ".tmp"
	args := []string{"plan", "-input=false", "-json", "-no-color", "-out=" + tmp}
	if destroy {
		args = append(args, "-destroy")
	}
	names := make([]string, 0, len(r.Vars))
	for k := range r.Vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-var", k+"="+r.Vars[k])
	}
	c := r.cli()
	if err := c.Run(ctx, r.Dir, nil, args...); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	show, err := c.Output(ctx, r.Dir, "show", "-json", "-no-color", tmp)
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	// The plan holds the variables' values: private to this user.
	if err := files.WriteAtomic(showFile, show, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, planFile); err != nil {
		return nil, err
	}
	return show, nil
}

// summarize reads terraform's JSON rendering of the plan.
func (p *Plan) summarize(show []byte) error {
	var tp tfjson.Plan
	if err := json.Unmarshal(show, &tp); err != nil {
		return fmt.Errorf("read the plan's JSON (terraform show -json): %w", err)
	}
	for _, rc := range tp.ResourceChanges {
		if rc == nil || rc.Change == nil {
			continue
		}
		a := actionOf(rc.Change.Actions)
		if a == "" {
			continue
		}
		p.Changes = append(p.Changes, Change{Address: rc.Address, Type: rc.Type, Action: a})
		if why := broadens(rc, a); why != "" {
			p.Broadening = append(p.Broadening, fmt.Sprintf("%s (%s): %s", rc.Address, a, why))
		}
	}
	p.drift = len(tp.ResourceDrift)
	for name, oc := range tp.OutputChanges {
		if oc == nil {
			continue
		}
		if a := actionOf(oc.Actions); a != "" {
			p.Outputs = append(p.Outputs, OutputChange{Name: name, Action: a})
		}
	}
	sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].Address < p.Changes[j].Address })
	sort.Slice(p.Outputs, func(i, j int) bool { return p.Outputs[i].Name < p.Outputs[j].Name })
	sort.Strings(p.Broadening)
	return nil
}

func actionOf(a tfjson.Actions) Action {
	switch {
	case a.NoOp():
		return ""
	case a.Replace():
		return Replace
	case a.Create():
		return Create
	case a.Update():
		return Update
	case a.Delete():
		return Delete
	case a.Read():
		return Read
	case a.Forget():
		return Forget
	}
	return ""
}

// broadeningTypes are the AWS provider's resources that grant access:
// creating or changing one can widen who may do what, as IAM statements
// and security-group ingress do in the CDK path's check.
var broadeningTypes = map[string]string{
	"aws_iam_role":                              "role trust policy",
	"aws_iam_policy":                            "IAM policy",
	"aws_iam_role_policy":                       "inline role policy",
	"aws_iam_role_policy_attachment":            "policy attached to a role",
	"aws_iam_policy_attachment":                 "policy attachment",
	"aws_iam_user_policy":                       "inline user policy",
	"aws_iam_user_policy_attachment":            "policy attached to a user",
	"aws_iam_group_policy":                      "inline group policy",
	"aws_iam_group_policy_attachment":           "policy attached to a group",
	"aws_lambda_permission":                     "Lambda resource policy",
	"aws_api_gateway_rest_api_policy":           "API Gateway resource policy",
	"aws_s3_bucket_policy":                      "bucket policy",
	"aws_sqs_queue_policy":                      "queue policy",
	"aws_sns_topic_policy":                      "topic policy",
	"aws_kms_key_policy":                        "key policy",
	"aws_security_group_rule":                   "security group rule",
	"aws_vpc_security_group_ingress_rule":       "security group ingress",
	"aws_security_group":                        "security group ingress",
	"aws_lambda_function_url":                   "function URL auth",
	"aws_apigatewayv2_authorizer":               "authorizer",
	"aws_api_gateway_authorizer":                "authorizer",
	"aws_cognito_user_pool_client":              "user pool client",
	"aws_iam_openid_connect_provider":           "identity provider",
	"aws_iam_service_linked_role":               "service-linked role",
	"aws_iam_instance_profile":                  "instance profile",
	"aws_iam_role_policy_attachments_exclusive": "role policy attachments",
}

// broadens says why a change may widen access, "" when it cannot: a
// created or changed access-granting resource. An egress-only security
// group rule is left out, as the CDK path checks ingress only.
func broadens(rc *tfjson.ResourceChange, a Action) string {
	if a != Create && a != Update && a != Replace {
		return ""
	}
	why, ok := broadeningTypes[rc.Type]
	if !ok {
		return ""
	}
	if rc.Type == "aws_security_group_rule" {
		if after, ok := rc.Change.After.(map[string]any); ok && after["type"] == "egress" {
			return ""
		}
	}
	if rc.Type == "aws_security_group" {
		if after, ok := rc.Change.After.(map[string]any); ok {
			if in, _ := after["ingress"].([]any); len(in) == 0 && a != Update {
				return ""
			}
		}
	}
	return why
}

// Prompt asks a person a yes/no question; nil when nobody can answer.
type Prompt func(question string) (bool, error)

// Apply applies a plan: nothing for one that skips or is empty (the
// record of the apply is written so the next deploy skips), else after
// approval when the plan needs it, the saved plan, then the outputs.
// A failed apply leaves the state as terraform wrote it and removes the
// record, so the next deploy plans again from that state.
func Apply(ctx context.Context, p *Plan, prompt Prompt) (*Result, error) {
	r := p.Root
	res := &Result{}
	if p.Skip {
		outs, err := r.readOutputsRecord()
		if err == nil {
			res.Outputs = outs
		}
		return res, nil
	}
	if p.Destroy && p.planFile == "" {
		return res, nil
	}
	if p.ApprovalNeeded != "" && p.ApprovalNeeded != deploy.ApproveNever {
		if prompt == nil {
			what := "this change needs approval (--require-approval any-change)"
			if p.ApprovalNeeded == deploy.ApproveBroadening {
				what = "this change broadens IAM permissions (see above) and needs approval (--require-approval broadening)"
			}
			return nil, fmt.Errorf("%s: %s, but there is no terminal to ask; review it (pipe diff) and rerun with --require-approval never to apply without asking: %w", r.Name, what, ErrRefused)
		}
		verb := "Apply"
		if p.Destroy {
			verb = "Destroy"
		}
		ok, err := prompt(fmt.Sprintf("%s %s? [y/N] ", verb, r.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: ask for approval: %w", r.Name, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s: %w", r.Name, ErrRefused)
		}
	}
	c := r.cli()
	if !p.Empty() {
		// The record goes first: should pipe die during the apply, the next
		// deploy must plan again rather than trust an old record.
		if err := os.Remove(r.appliedFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		err := c.Run(ctx, r.Dir, nil, "apply", "-input=false", "-json", "-no-color", p.planFile)
		// A saved plan can be applied once, whatever happened.
		os.Remove(p.planFile)
		os.Remove(strings.TrimSuffix(p.planFile, ".tfplan") + ".json")
		if err != nil {
			return nil, fmt.Errorf("%s: apply failed; the state holds what was done, and the next pipe deploy plans again from it: %w", r.Name, err)
		}
		res.Applied = true
	}
	if p.Destroy {
		os.Remove(r.appliedFile())
		os.Remove(r.outputsFile())
		return res, nil
	}
	out, err := c.Output(ctx, r.Dir, "output", "-json", "-no-color")
	if err != nil {
		return nil, fmt.Errorf("%s: read the outputs: %w", r.Name, err)
	}
	if res.Outputs, err = parseOutputs(out); err != nil {
		return nil, fmt.Errorf("%s: read the outputs (terraform output -json): %w", r.Name, err)
	}
	backend, err := readBackend(r.Dir)
	if err != nil {
		return nil, err
	}
	st, err := r.readState(ctx, backend, func() error { return nil })
	if err != nil {
		return nil, fmt.Errorf("%s: read the state after the apply: %w", r.Name, err)
	}
	ob, _ := json.Marshal(res.Outputs)
	if err := files.WriteAtomic(r.outputsFile(), ob, 0o600); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(applied{Fingerprint: r.Fingerprint, State: st})
	if err := files.WriteAtomic(r.appliedFile(), b, 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

func (r *Root) outputsFile() string { return filepath.Join(r.StateDir, "outputs.json") }

// readOutputsRecord returns the outputs of the last apply, which a skip
// reports without running terraform.
func (r *Root) readOutputsRecord() (map[string]string, error) {
	b, err := os.ReadFile(r.outputsFile())
	if err != nil {
		return nil, err
	}
	var m map[string]string
	return m, json.Unmarshal(b, &m)
}

// parseOutputs reads terraform output -json.
func parseOutputs(b []byte) (map[string]string, error) {
	var raw map[string]struct {
		Sensitive bool            `json:"sensitive"`
		Value     json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		switch {
		case v.Sensitive:
			out[k] = "(sensitive)"
		case json.Unmarshal(v.Value, &s) == nil:
			out[k] = s
		default:
			out[k] = string(v.Value)
		}
	}
	return out, nil
}
