package deploy

// Tests against moto: one server for the package, started by TestMain.
// Each test works in its own region (bootstrapped or not) behind its own
// counting proxy, so tests cannot see each other's stacks or calls.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pipebuild/pipe/internal/testenv"
)

var (
	moto    *testenv.Moto
	motoErr error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if motoErr = testenv.MotoAvailable(); motoErr == nil {
		moto, motoErr = testenv.StartMoto()
	}
	if moto != nil {
		defer moto.Close()
	}
	return testenv.Main(m)
}

// needMoto skips (or under PIPE_REQUIRE_ALL=1 fails) a test that needs moto.
func needMoto(t *testing.T) {
	t.Helper()
	testenv.RequireMoto(t)
	if motoErr != nil {
		t.Fatalf("start moto: %v", motoErr)
	}
}

// fixture is one test's region of moto behind its own counting proxy.
type fixture struct {
	t      *testing.T
	region string
	proxy  *testenv.CountingProxy
	cfg    aws.Config
	// dryRuns are the plans of each dry run, in order.
	dryRuns [][]*StackPlan
}

func newFixture(t *testing.T, region string, bootstrap bool) *fixture {
	t.Helper()
	needMoto(t)
	if bootstrap {
		if err := moto.Bootstrap(region); err != nil {
			t.Fatal(err)
		}
	}
	p, err := testenv.NewCountingProxy(moto.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &fixture{
		t:      t,
		region: region,
		proxy:  p,
		cfg: aws.Config{
			Region:       region,
			Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
			BaseEndpoint: aws.String(p.URL),
		},
	}
}

// options are a deployment's plan and apply options in one, as pipe
// deploy's flags give them.
type options struct {
	Approval    Approval
	Force       bool
	DryRun      bool
	Concurrency int
	Prompt      func(string) (bool, error)
	Zips        []PrebuiltZip
}

// events records what Apply reported.
type events struct {
	mu  sync.Mutex
	all []*StackEvent
}

func (e *events) StackEvent(ev *StackEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// of returns the events of one kind for the stack with that display name.
func (e *events) of(kind EventKind, stack string) []*StackEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*StackEvent
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Stack.DisplayName == stack {
			out = append(out, ev)
		}
	}
	return out
}

// done returns the stack's EventDone status ("" when none, or several).
func (e *events) done(stack string) Status {
	evs := e.of(EventDone, stack)
	if len(evs) != 1 {
		return ""
	}
	return evs[0].Status
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.all {
		fmt.Fprintf(&b, "%s %s", ev.Stack.DisplayName, ev.Kind)
		if ev.Status != "" {
			fmt.Fprintf(&b, " %s", ev.Status)
		}
		if ev.Resource != nil {
			fmt.Fprintf(&b, " %+v", *ev.Resource)
		}
		if ev.Err != nil {
			fmt.Fprintf(&b, ": %v", ev.Err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// deploy plans the stacks and, unless DryRun, applies the plans.
func (f *fixture) deploy(stacks []*Stack, opt options) ([]*Result, *events, error) {
	f.t.Helper()
	return f.deployCtx(context.Background(), stacks, opt)
}

func (f *fixture) deployCtx(ctx context.Context, stacks []*Stack, opt options) ([]*Result, *events, error) {
	f.t.Helper()
	evs := &events{}
	plans, err := Plan(ctx, f.cfg, stacks, PlanOptions{Force: opt.Force, Approval: opt.Approval})
	if err != nil {
		return nil, evs, err
	}
	if opt.DryRun {
		var res []*Result
		var errs []error
		for _, p := range plans {
			r := &Result{Stack: p.Stack, Status: StatusWould, Outputs: p.Outputs}
			switch {
			case p.Err != nil:
				r.Status, r.Err = StatusFailed, p.Err
				errs = append(errs, p.Err)
			case p.UpToDate():
				r.Status = StatusUnchanged
			}
			res = append(res, r)
		}
		f.dryRuns = append(f.dryRuns, plans)
		return res, evs, errors.Join(errs...)
	}
	res, err := Apply(ctx, f.cfg, plans, ApplyOptions{Concurrency: opt.Concurrency, Prompt: opt.Prompt, Zips: opt.Zips}, evs)
	f.t.Logf("deploy events:\n%s", evs)
	return res, evs, err
}

// lastPlans returns the plans of the last dry run.
func (f *fixture) lastPlans() []*StackPlan {
	return f.dryRuns[len(f.dryRuns)-1]
}

// planOf returns the plan of the stack with that display name.
func planOf(t *testing.T, plans []*StackPlan, stack string) *StackPlan {
	t.Helper()
	for _, p := range plans {
		if p.Stack.DisplayName == stack {
			return p
		}
	}
	t.Fatalf("no plan for %s", stack)
	return nil
}

func (f *fixture) cfn() *cloudformation.Client {
	return cloudformation.NewFromConfig(f.cfg)
}

func (f *fixture) s3() *s3.Client {
	return s3.NewFromConfig(f.cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// changeSets lists the change sets of one stack (moto's ListChangeSets
// ignores StackName, so the filter is here) that could still execute.
func (f *fixture) changeSets(stack string) []string {
	f.t.Helper()
	out, err := f.cfn().ListChangeSets(context.Background(), &cloudformation.ListChangeSetsInput{StackName: aws.String(stack)})
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		f.t.Fatal(err)
	}
	var names []string
	for _, s := range out.Summaries {
		if aws.ToString(s.StackName) == stack && s.ExecutionStatus != "EXECUTE_COMPLETE" {
			names = append(names, aws.ToString(s.ChangeSetName)+" ("+string(s.ExecutionStatus)+")")
		}
	}
	return names
}

func (f *fixture) stackStatus(stack string) string {
	f.t.Helper()
	d, err := describeStack(context.Background(), &regionClients{cfn: f.cfn()}, stack)
	if err != nil {
		f.t.Fatal(err)
	}
	if !d.exists {
		return ""
	}
	return d.status
}

func wantNoWrites(t *testing.T, p *testenv.CountingProxy) {
	t.Helper()
	if w := p.Writes(); len(w) > 0 {
		t.Errorf("want zero write calls, got %d: %v", len(w), w)
	}
}

func byStatus(results []*Result) map[string]Status {
	m := map[string]Status{}
	for _, r := range results {
		m[r.Stack.DisplayName] = r.Status
	}
	return m
}

// copyApp copies testdata/app, the cloud assembly the CDK synthesized for
// an API stack (a Lambda from a directory asset, its IAM role, a file
// asset), a stack depending on it (through an export), an independent
// stack with tags, and a stage (nested assembly) with one stack.
func copyApp(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "app")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// The directory asset of testdata/app (the Lambda's code) and its hash.
const codeAsset = "eaab6cdcf227daa5b36818bbe22b367b8a706504cbf165dd72bdf536205da039"

// changeCode edits the Lambda's code the way a new synth would show it: a
// new asset directory under a new content hash, which the template and
// the asset manifest name. It returns the new hash.
func changeCode(t *testing.T, app, old, content string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	if err := os.Rename(filepath.Join(app, "asset."+old), filepath.Join(app, "asset."+h)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "asset."+h, "main.py"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ApiStack.template.json", "ApiStack.assets.json"} {
		p := filepath.Join(app, f)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(old), []byte(h)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func load(t *testing.T, dirs ...string) []*Stack {
	t.Helper()
	stacks, err := LoadAssemblies(dirs)
	if err != nil {
		t.Fatal(err)
	}
	return stacks
}

// testStack describes a one-stack cloud assembly written by writeStack.
type testStack struct {
	id        string
	env       string // aws://…; default unknown
	resources map[string]any
	outputs   map[string]any
	tags      map[string]string
	// pad makes the template at least this many bytes (Metadata filler).
	pad int
}

// writeStack writes a cloud assembly holding one stack the way the CDK's
// default synthesizer lays it out: the BootstrapVersion parameter and
// rule, the template as a file asset, the bootstrap version requirement.
func writeStack(t *testing.T, dir string, s testStack) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tpl := map[string]any{
		"Resources": s.resources,
		"Parameters": map[string]any{"BootstrapVersion": map[string]any{
			"Type":        "AWS::SSM::Parameter::Value<String>",
			"Default":     "/cdk-bootstrap/hnb659fds/version",
			"Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]",
		}},
		"Rules": map[string]any{"CheckBootstrapVersion": map[string]any{"Assertions": []any{map[string]any{
			"Assert":            map[string]any{"Fn::Not": []any{map[string]any{"Fn::Contains": []any{[]any{"1", "2", "3", "4", "5"}, map[string]any{"Ref": "BootstrapVersion"}}}}},
			"AssertDescription": "CDK bootstrap stack version 6 required. Please run 'cdk bootstrap' with a recent version of the CDK CLI.",
		}}}},
	}
	if s.outputs != nil {
		tpl["Outputs"] = s.outputs
	}
	if s.pad > 0 {
		tpl["Metadata"] = map[string]any{"Filler": strings.Repeat("x", s.pad)}
	}
	tb, _ := json.MarshalIndent(tpl, "", " ")
	sum := sha256.Sum256(tb)
	th := hex.EncodeToString(sum[:])
	env := s.env
	if env == "" {
		env = "aws://unknown-account/unknown-region"
	}
	write := func(name string, v any) {
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, s.id+".template.json"), tb, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := map[string]any{"current_account-current_region": map[string]any{
		"bucketName":    "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}",
		"objectKey":     th + ".json",
		"assumeRoleArn": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-file-publishing-role-${AWS::AccountId}-${AWS::Region}",
	}}
	write(s.id+".assets.json", map[string]any{
		"version": "55.0.0",
		"files": map[string]any{th: map[string]any{
			"displayName":  s.id + " Template",
			"source":       map[string]any{"path": s.id + ".template.json", "packaging": "file"},
			"destinations": dest,
		}},
		"dockerImages": map[string]any{},
	})
	props := map[string]any{
		"templateFile":                      s.id + ".template.json",
		"terminationProtection":             false,
		"validateOnSynth":                   false,
		"assumeRoleArn":                     "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-deploy-role-${AWS::AccountId}-${AWS::Region}",
		"cloudFormationExecutionRoleArn":    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-${AWS::AccountId}-${AWS::Region}",
		"stackTemplateAssetObjectUrl":       "s3://cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}/" + th + ".json",
		"requiresBootstrapStackVersion":     6,
		"bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version",
		"additionalDependencies":            []string{s.id + ".assets"},
	}
	if s.tags != nil {
		props["tags"] = s.tags
	}
	write("manifest.json", map[string]any{
		"version": "55.0.0",
		"artifacts": map[string]any{
			s.id + ".assets": map[string]any{
				"type": "cdk:asset-manifest",
				"properties": map[string]any{
					"file":                              s.id + ".assets.json",
					"requiresBootstrapStackVersion":     6,
					"bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version",
				},
			},
			s.id: map[string]any{
				"type":         "aws:cloudformation:stack",
				"environment":  env,
				"properties":   props,
				"dependencies": []string{s.id + ".assets"},
				"displayName":  s.id,
			},
		},
	})
	os.WriteFile(filepath.Join(dir, "cdk.out"), []byte(`{"version":"55.0.0"}`), 0o644)
}

func ssmParamResource(name, value string) map[string]any {
	return map[string]any{"Type": "AWS::SSM::Parameter", "Properties": map[string]any{"Type": "String", "Name": name, "Value": value}}
}

// intervals is the span of each stack's write calls.
func intervals(calls []testenv.Call) map[string][2]time.Time {
	m := map[string][2]time.Time{}
	for _, c := range calls {
		if !c.Write || c.Stack == "" {
			continue
		}
		iv, ok := m[c.Stack]
		if !ok || c.Start.Before(iv[0]) {
			iv[0] = c.Start
		}
		if c.End.After(iv[1]) {
			iv[1] = c.End
		}
		m[c.Stack] = iv
	}
	return m
}

func overlap(a, b [2]time.Time) bool {
	return a[0].Before(b[1]) && b[0].Before(a[1])
}

// getObject reads an object of the region's bootstrap bucket.
func (f *fixture) getObject(key string) []byte {
	f.t.Helper()
	obj, err := f.s3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testenv.BootstrapBucket(f.region)), Key: aws.String(key)})
	if err != nil {
		f.t.Fatalf("get s3 object %s: %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}
