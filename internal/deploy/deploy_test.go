package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/pipebuild/pipe/internal/testenv"
	"github.com/pipebuild/pipe/internal/ziparchive"
)

// The whole life of an app: first deploy creates everything in dependency
// order; a redeploy with nothing changed makes no write call at all; a new
// Lambda code asset updates only its stack, uploading the asset once.
func TestDeployLifecycle(t *testing.T) {
	f := newFixture(t, "us-east-1", true)
	app := copyApp(t)
	stacks := load(t, app)

	res, evs, err := f.deploy(stacks, options{Approval: ApproveNever})
	if err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	for name, st := range byStatus(res) {
		if st != StatusDeployed {
			t.Errorf("first deploy: %s is %s, want deployed", name, st)
		}
	}
	for _, s := range []string{"ApiStack", "DepStack", "IndStack", "Prod/Inner"} {
		if st := evs.done(s); st != StatusDeployed {
			t.Errorf("first deploy: %s reported %q, want deployed", s, st)
		}
		if len(evs.of(EventDeploying, s)) != 1 || len(evs.of(EventChangeSet, s)) != 1 || len(evs.of(EventResource, s)) == 0 {
			t.Errorf("first deploy: %s lacks the deploying, change set or resource events", s)
		}
	}
	if ev := evs.of(EventPublished, "ApiStack"); len(ev) != 1 || ev[0].Uploaded != 2 {
		t.Errorf("first deploy: ApiStack's published events %+v, want one of 2 uploads", ev)
	}
	// DepStack imports an output of ApiStack: it must start after ApiStack
	// finished.
	iv := intervals(f.proxy.Calls())
	if !iv["ApiStack"][1].Before(iv["DepStack"][0]) {
		t.Errorf("DepStack's first write (%v) is not after ApiStack's last (%v)", iv["DepStack"][0], iv["ApiStack"][1])
	}

	// The Lambda's code is the zipped asset directory in the bootstrap
	// bucket, and the function was created from it.
	key := codeAsset + ".zip"
	zipBytes := f.getObject(key)
	var want bytes.Buffer
	if _, err := ziparchive.Write(&want, filepath.Join(app, "asset."+codeAsset)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(zipBytes, want.Bytes()) {
		t.Errorf("uploaded code zip differs from the deterministic zip of the asset directory")
	}
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, e := range zr.File {
		modes[e.Name] = e.Mode().Perm()
	}
	if modes["run.sh"] != 0o755 || modes["main.py"] != 0o644 {
		t.Errorf("zip entries and modes: %v", modes)
	}
	res2, err := f.cfn().DescribeStackResources(context.Background(), &cloudformation.DescribeStackResourcesInput{StackName: aws.String("ApiStack")})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, r := range res2.StackResources {
		types[aws.ToString(r.ResourceType)] = aws.ToString(r.PhysicalResourceId)
	}
	if types["AWS::IAM::Role"] == "" || types["AWS::Lambda::Function"] == "" {
		t.Fatalf("ApiStack resources: %v", types)
	}
	fn, err := moto.Do("lambda", f.region, http.MethodGet, "/2015-03-31/functions/"+types["AWS::Lambda::Function"], "", "")
	if err != nil {
		t.Fatal(err)
	}
	var fnInfo struct {
		Configuration struct{ CodeSha256, Role string }
	}
	json.Unmarshal(fn, &fnInfo)
	sum := sha256.Sum256(zipBytes)
	if fnInfo.Configuration.CodeSha256 != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("Lambda code sha256 %q is not the uploaded zip's", fnInfo.Configuration.CodeSha256)
	}
	if !strings.Contains(fnInfo.Configuration.Role, types["AWS::IAM::Role"]) {
		t.Errorf("Lambda role %q is not the stack's role %q", fnInfo.Configuration.Role, types["AWS::IAM::Role"])
	}
	var outputs map[string]string
	for _, r := range res {
		if r.Stack.StackName == "ApiStack" {
			outputs = r.Outputs
		}
	}
	if outputs["FnName"] != types["AWS::Lambda::Function"] {
		t.Errorf("ApiStack outputs %v: want FnName = %s", outputs, types["AWS::Lambda::Function"])
	}

	// Nothing changed: no write call, every stack reported unchanged, the
	// outputs still there.
	f.proxy.Reset()
	res, evs, err = f.deploy(load(t, app), options{})
	if err != nil {
		t.Fatalf("second deploy: %v", err)
	}
	wantNoWrites(t, f.proxy)
	for _, s := range []string{"ApiStack", "DepStack", "IndStack", "Prod/Inner"} {
		if st := evs.done(s); st != StatusUnchanged || len(evs.of(EventDeploying, s)) > 0 {
			t.Errorf("second deploy: %s reported %q (or deploying), want unchanged alone", s, st)
		}
	}
	if got := SortedOutputs(res); len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), "ApiStack.FnName = ") {
		t.Errorf("outputs of an unchanged deploy: %v", got)
	}

	// New code: only ApiStack deploys, its asset is uploaded once.
	newHash := changeCode(t, app, codeAsset, "print('v2')\n")
	f.proxy.Reset()
	res, _, err = f.deploy(load(t, app), options{})
	if err != nil {
		t.Fatalf("third deploy: %v", err)
	}
	got := byStatus(res)
	if got["ApiStack"] != StatusDeployed || got["DepStack"] != StatusUnchanged || got["IndStack"] != StatusUnchanged || got["Prod/Inner"] != StatusUnchanged {
		t.Errorf("after a code change: %v; want only ApiStack deployed", got)
	}
	var puts, otherStacks []string
	for _, c := range f.proxy.Writes() {
		if c.Service == "s3" {
			puts = append(puts, c.Path)
		}
		if c.Stack != "" && c.Stack != "ApiStack" {
			otherStacks = append(otherStacks, c.String())
		}
	}
	if len(puts) != 1 || !strings.HasSuffix(puts[0], newHash+".zip") {
		t.Errorf("uploads: %v; want the new code asset once", puts)
	}
	if len(otherStacks) > 0 {
		t.Errorf("write calls for unchanged stacks: %v", otherStacks)
	}
}

// Independent stacks deploy concurrently, at most --concurrency at once;
// a dependent waits for its dependency.
func TestDeployConcurrency(t *testing.T) {
	f := newFixture(t, "us-west-2", true)
	f.proxy.Delay = 150 * time.Millisecond
	_, _, err := f.deploy(load(t, copyApp(t)), options{Approval: ApproveNever, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	iv := intervals(f.proxy.Calls())
	independent := []string{"ApiStack", "IndStack", "Prod-Inner"}
	overlaps := 0
	for i, a := range independent {
		for _, b := range independent[i+1:] {
			if overlap(iv[a], iv[b]) {
				overlaps++
			}
		}
	}
	if overlaps == 0 {
		t.Errorf("no two independent stacks deployed at the same time: %v", iv)
	}
	// Never three at once: three intervals share an instant when the
	// latest start is before the earliest end.
	a, b, c := iv[independent[0]], iv[independent[1]], iv[independent[2]]
	if maxTime(a[0], b[0], c[0]).Before(minTime(a[1], b[1], c[1])) {
		t.Errorf("three stacks deployed at once with --concurrency 2: %v", iv)
	}
	if !iv["ApiStack"][1].Before(iv["DepStack"][0]) {
		t.Errorf("DepStack started (%v) before ApiStack finished (%v)", iv["DepStack"][0], iv["ApiStack"][1])
	}
}

func maxTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func minTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.Before(m) {
			m = t
		}
	}
	return m
}

// A resource CloudFormation (here moto) cannot create fails the deploy with
// its reason, and no change set is left behind.
func TestDeployFailingResource(t *testing.T) {
	f := newFixture(t, "us-east-2", true)
	dir := t.TempDir()
	bucket := map[string]any{"Type": "AWS::S3::Bucket", "Properties": map[string]any{"BucketName": "pipe-test-taken-name"}}
	writeStack(t, dir, testStack{id: "Failing", resources: map[string]any{"First": bucket, "Second": bucket}})
	res, evs, err := f.deploy(load(t, dir), options{Approval: ApproveNever})
	if err == nil {
		t.Fatal("deploy succeeded; want a failure")
	}
	if res[0].Status != StatusFailed {
		t.Errorf("status %s, want failed", res[0].Status)
	}
	done := evs.of(EventDone, "Failing")
	if !strings.Contains(err.Error(), "bucket name is not available") || len(done) != 1 || done[0].Status != StatusFailed || done[0].Err == nil || !strings.Contains(done[0].Err.Error(), "bucket name is not available") {
		t.Errorf("the reason is not reported:\nerr: %v\nevents:\n%s", err, evs)
	}
	if !strings.Contains(err.Error(), "stack status: ") {
		t.Errorf("the stack's state is not shown: %v", err)
	}
	if cs := f.changeSets("Failing"); len(cs) > 0 {
		t.Errorf("change sets left behind: %v", cs)
	}
}

// Without the bootstrap parameter, the error says what to run.
func TestDeployNotBootstrapped(t *testing.T) {
	f := newFixture(t, "eu-west-1", false)
	dir := t.TempDir()
	writeStack(t, dir, testStack{id: "Lonely", resources: map[string]any{"P": ssmParamResource("/pipe/lonely", "v")}})
	_, _, err := f.deploy(load(t, dir), options{Approval: ApproveNever})
	if err == nil || !strings.Contains(err.Error(), "cdk bootstrap aws://123456789012/eu-west-1") || !strings.Contains(err.Error(), "/cdk-bootstrap/hnb659fds/version") {
		t.Fatalf("want an error naming the parameter and `cdk bootstrap`, got %v", err)
	}
	if w := f.proxy.Writes(); len(w) > 0 {
		t.Errorf("write calls before the bootstrap check failed: %v", w)
	}
	if st := f.stackStatus("Lonely"); st != "" {
		t.Errorf("stack exists (%s) after a refused deploy", st)
	}

	// A bootstrap too old is refused the same way.
	if err := moto.BootstrapVersion("eu-west-1", "5"); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.deploy(load(t, dir), options{Approval: ApproveNever})
	if err == nil || !strings.Contains(err.Error(), "needs bootstrap version 6 or later") || !strings.Contains(err.Error(), "has version 5") {
		t.Fatalf("want a version error, got %v", err)
	}
}

// A change that broadens IAM permissions needs approval; with nobody to
// ask, it is refused with a message naming --require-approval, and the
// change set is deleted. A yes from the prompt deploys it.
func TestDeployBroadeningNeedsApproval(t *testing.T) {
	f := newFixture(t, "eu-west-2", true)
	dir := t.TempDir()
	writeStack(t, dir, testStack{id: "Perms", resources: map[string]any{"P": ssmParamResource("/pipe/perms", "v")}})
	if _, _, err := f.deploy(load(t, dir), options{}); err != nil {
		t.Fatalf("a stack without IAM needs no approval: %v", err)
	}
	role := map[string]any{"Type": "AWS::IAM::Role", "Properties": map[string]any{
		"AssumeRolePolicyDocument": map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
			"Effect": "Allow", "Principal": map[string]any{"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}}},
		"Policies": []any{map[string]any{"PolicyName": "all", "PolicyDocument": map[string]any{"Version": "2012-10-17", "Statement": []any{
			map[string]any{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}}}},
	}}
	writeStack(t, dir, testStack{id: "Perms", resources: map[string]any{"P": ssmParamResource("/pipe/perms", "v"), "Role": role}})
	f.proxy.Reset()
	_, evs, err := f.deploy(load(t, dir), options{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--require-approval") {
		t.Fatalf("want a refusal naming --require-approval, got %v", err)
	}
	cs := evs.of(EventChangeSet, "Perms")
	if len(cs) != 1 || !strings.Contains(strings.Join(cs[0].Broadening, "\n"), "Allow s3:* on *") {
		t.Errorf("the broadening statement is not reported with the change set:\n%s", evs)
	}
	if cs := f.changeSets("Perms"); len(cs) > 0 {
		t.Errorf("change sets left behind: %v", cs)
	}
	for _, c := range f.proxy.Writes() {
		if c.Action == "ExecuteChangeSet" {
			t.Errorf("a refused change was executed")
		}
	}

	var asked []string
	yes := func(q string) (bool, error) { asked = append(asked, q); return true, nil }
	res, _, err := f.deploy(load(t, dir), options{Prompt: yes})
	if err != nil || res[0].Status != StatusDeployed || len(asked) != 1 {
		t.Fatalf("approved deploy: %v, status %s, asked %q", err, res[0].Status, asked)
	}

	// any-change asks even for a change that grants nothing.
	writeStack(t, dir, testStack{id: "Perms", resources: map[string]any{"P": ssmParamResource("/pipe/perms", "v2"), "Role": role}})
	_, _, err = f.deploy(load(t, dir), options{Approval: ApproveAnyChange})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--require-approval any-change") {
		t.Fatalf("any-change: want a refusal, got %v", err)
	}
	_, _, err = f.deploy(load(t, dir), options{})
	if err != nil {
		t.Fatalf("a change that broadens nothing needs no approval by default: %v", err)
	}
}

// Ctrl-C while a change set is being prepared deletes it, reports the
// stack unchanged and starts nothing else.
func TestDeployInterrupt(t *testing.T) {
	f := newFixture(t, "ap-southeast-1", true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	f.proxy.OnRequest = func(c testenv.Call) {
		if c.Action == "DescribeChangeSet" {
			once.Do(func() {
				cancel()
				time.Sleep(100 * time.Millisecond) // let the client give up first
			})
		}
	}
	res, evs, err := f.deployCtx(ctx, load(t, copyApp(t)), options{Approval: ApproveNever, Concurrency: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	var interrupted []*StackEvent
	for _, ev := range evs.all {
		if ev.Kind == EventInterrupted {
			interrupted = append(interrupted, ev)
		}
	}
	if len(interrupted) != 1 || interrupted[0].Phase != PhaseChangeSet || interrupted[0].ChangeSet == "" || interrupted[0].Err != nil {
		t.Errorf("want one stack interrupted before executing, its change set deleted:\n%s", evs)
	}
	started := 0
	for _, r := range res {
		switch r.Status {
		case StatusFailed:
			started++
			if cs := f.changeSets(r.Stack.StackName); len(cs) > 0 {
				t.Errorf("%s: change sets left behind: %v", r.Stack.StackName, cs)
			}
		case StatusNotStarted, StatusSkipped:
		default:
			t.Errorf("%s: %s after Ctrl-C", r.Stack.DisplayName, r.Status)
		}
	}
	if started != 1 {
		t.Errorf("%d stacks started, want 1 (--concurrency 1)", started)
	}
	for _, c := range f.proxy.Writes() {
		if c.Action == "ExecuteChangeSet" {
			t.Errorf("a change set was executed after Ctrl-C: %v", c)
		}
	}
}

// A template over 51,200 bytes goes to S3 and CloudFormation reads it by URL.
func TestDeployLargeTemplate(t *testing.T) {
	f := newFixture(t, "ca-central-1", true)
	dir := t.TempDir()
	writeStack(t, dir, testStack{id: "Big", pad: 60000, resources: map[string]any{"P": ssmParamResource("/pipe/big", "v")}})
	stacks := load(t, dir)
	if len(stacks[0].Template) <= maxTemplateBody {
		t.Fatalf("template is only %d bytes", len(stacks[0].Template))
	}
	if _, _, err := f.deploy(stacks, options{Approval: ApproveNever}); err != nil {
		t.Fatal(err)
	}
	var puts []string
	for _, c := range f.proxy.Writes() {
		if c.Service == "s3" {
			puts = append(puts, c.Path)
		}
	}
	if len(puts) != 1 || !strings.HasSuffix(puts[0], ".json") {
		t.Errorf("uploads %v: want the template", puts)
	}
	f.proxy.Reset()
	if _, evs, err := f.deploy(load(t, dir), options{}); err != nil || evs.done("Big") != StatusUnchanged {
		t.Fatalf("redeploy: %v\n%s", err, evs)
	}
	wantNoWrites(t, f.proxy)
}

// A directory asset whose files are those of a prebuilt zip's directory
// (a python_bundle) is published as that zip, not zipped again.
func TestDeployReusesPrebuiltZip(t *testing.T) {
	f := newFixture(t, "ap-northeast-1", true)
	app := copyApp(t)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if err := os.CopyFS(bundle, os.DirFS(filepath.Join(app, "asset."+codeAsset))); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(bundle, "run.sh"), 0o755)
	// The marker proves which bytes went up; a real bundle.zip is the
	// same bytes ziparchive.Write would give.
	marker := []byte("PK-prebuilt-bundle-zip")
	if err := os.WriteFile(bundle+".zip", marker, 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "main.py"), []byte("x"), 0o644)
	os.WriteFile(other+".zip", []byte("wrong"), 0o644)

	stacks, _ := Select(load(t, app), []string{"ApiStack"})
	_, _, err := f.deploy(stacks, options{Approval: ApproveNever, Zips: []PrebuiltZip{{Dir: other, Zip: other + ".zip"}, {Dir: bundle, Zip: bundle + ".zip"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := f.getObject(codeAsset + ".zip")
	if !bytes.Equal(got, marker) {
		t.Errorf("uploaded %q, want the prebuilt zip", got[:min(len(got), 40)])
	}

	// A bundle whose content differs is not reused.
	os.WriteFile(filepath.Join(bundle, "main.py"), []byte("print('other')\n"), 0o644)
	p := &publisher{zips: []PrebuiltZip{{Dir: bundle, Zip: bundle + ".zip"}}}
	if z, err := p.prebuilt(filepath.Join(app, "asset."+codeAsset)); err != nil || z != "" {
		t.Errorf("prebuilt of a different tree = %q, %v", z, err)
	}
}

// --dry-run makes read calls only and says what would change.
func TestDeployDryRun(t *testing.T) {
	f := newFixture(t, "sa-east-1", true)
	app := copyApp(t)
	res, _, err := f.deploy(load(t, app), options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	wantNoWrites(t, f.proxy)
	for _, r := range res {
		if r.Status != StatusWould {
			t.Errorf("%s: %s, want %q", r.Stack.DisplayName, r.Status, StatusWould)
		}
	}
	api := planOf(t, f.lastPlans(), "ApiStack")
	if api.State != StateNew || strings.Join(api.Reasons, ",") != "new stack" || api.Blocker != nil {
		t.Errorf("ApiStack plan: %s (%q), blocker %v; want new stack", api.State, api.Reasons, api.Blocker)
	}
	fn := false
	for _, c := range api.Template {
		fn = fn || c.Section == "Resources" && c.Kind == Added && c.Type == "AWS::Lambda::Function" && c.Name == "Fn9270CBC0"
	}
	if !fn {
		t.Errorf("ApiStack plan's template changes lack the new function: %+v", api.Template)
	}
	if api.Uploads() != 2 || api.Account != "123456789012" || api.Region != f.region {
		t.Errorf("ApiStack plan: %d uploads to %s/%s, want 2 to 123456789012/%s", api.Uploads(), api.Account, api.Region, f.region)
	}
	if len(api.Broadening) == 0 || api.ApprovalNeeded != ApproveBroadening {
		t.Errorf("ApiStack plan: broadening %q, approval %q; a new role needs approval", api.Broadening, api.ApprovalNeeded)
	}
}

// --force deploys an up-to-date stack; the empty change set is deleted
// and the stack reported unchanged.
func TestDeployForce(t *testing.T) {
	f := newFixture(t, "eu-central-1", true)
	dir := t.TempDir()
	writeStack(t, dir, testStack{id: "Forced", resources: map[string]any{"P": ssmParamResource("/pipe/forced", "v")}, tags: map[string]string{"team": "a"}})
	if _, _, err := f.deploy(load(t, dir), options{}); err != nil {
		t.Fatal(err)
	}
	f.proxy.Reset()
	res, evs, err := f.deploy(load(t, dir), options{Force: true})
	if err != nil || res[0].Status != StatusUnchanged || evs.done("Forced") != StatusUnchanged {
		t.Fatalf("forced deploy: %v %s\n%s", err, res[0].Status, evs)
	}
	if dep := evs.of(EventDeploying, "Forced"); len(dep) != 1 || strings.Join(dep[0].Reasons, ",") != "--force" {
		t.Errorf("forced deploy: deploying events %+v, want one for --force", dep)
	}
	var acts []string
	for _, c := range f.proxy.Writes() {
		acts = append(acts, c.Action)
	}
	if strings.Join(acts, ",") != "CreateChangeSet,DeleteChangeSet" {
		t.Errorf("forced deploy of an unchanged stack wrote %v", acts)
	}
	if cs := f.changeSets("Forced"); len(cs) > 0 {
		t.Errorf("change sets left behind: %v", cs)
	}

	// A tag change alone is a change.
	writeStack(t, dir, testStack{id: "Forced", resources: map[string]any{"P": ssmParamResource("/pipe/forced", "v")}, tags: map[string]string{"team": "b"}})
	f.deploy(load(t, dir), options{DryRun: true})
	if p := planOf(t, f.lastPlans(), "Forced"); strings.Join(p.Reasons, ",") != "tags differ" || len(p.Tags) != 1 || p.Tags[0] != (MapChange{Key: "team", Kind: Modified, Old: "a", New: "b"}) {
		t.Errorf("a tag change is not seen: reasons %q, tags %+v", p.Reasons, p.Tags)
	}
}

// pipe diff's engine: the changed property is named with old and new value.
func TestDiffAgainstDeployed(t *testing.T) {
	f := newFixture(t, "eu-north-1", true)
	app := copyApp(t)
	if _, _, err := f.deploy(load(t, app), options{Approval: ApproveNever}); err != nil {
		t.Fatal(err)
	}
	newHash := changeCode(t, app, codeAsset, "print('diff')\n")
	f.proxy.Reset()
	plans, err := Plan(context.Background(), f.cfg, load(t, app), PlanOptions{DiffOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	wantNoWrites(t, f.proxy)
	for _, c := range f.proxy.Calls() {
		if c.Service != "cloudformation" {
			t.Errorf("pipe diff's plan called %s %s; it needs CloudFormation only", c.Service, c.Action)
		}
	}
	api := planOf(t, plans, "ApiStack")
	if !api.Differs() || api.State != StateUpdate || len(api.Template) != 1 {
		t.Fatalf("ApiStack: differs %t, state %s, template changes %+v; want the function alone", api.Differs(), api.State, api.Template)
	}
	want := TemplateChange{Section: "Resources", Name: "Fn9270CBC0", Type: "AWS::Lambda::Function", Kind: Modified,
		Values: []ValueChange{{Path: "Properties.Code.S3Key", Kind: Modified, Old: `"` + codeAsset + `.zip"`, New: `"` + newHash + `.zip"`}}}
	if got := api.Template[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("ApiStack's change:\n got %+v\nwant %+v", got, want)
	}
	if dep := planOf(t, plans, "DepStack"); dep.Differs() || !dep.UpToDate() {
		t.Errorf("DepStack: differs %t, state %s; want no differences", dep.Differs(), dep.State)
	}
	if _, err := Apply(context.Background(), f.cfg, plans, ApplyOptions{}, nil); err == nil || !strings.Contains(err.Error(), "cannot be applied") {
		t.Errorf("applying a pipe diff plan: %v, want a refusal", err)
	}
}

// The SDK reads AWS_ENDPOINT_URL and the service-specific variables itself.
func TestLoadConfigHonoursEndpointEnv(t *testing.T) {
	f := newFixture(t, "us-east-1", true)
	for _, kv := range testenv.AWSEnv("http://127.0.0.1:1") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", f.proxy.URL)
	cfg, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeStack(t, dir, testStack{id: "NotThere", resources: map[string]any{"P": ssmParamResource("/pipe/x", "v")}})
	plans, err := Plan(context.Background(), cfg, load(t, dir), PlanOptions{DiffOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.proxy.Calls()) == 0 || plans[0].Err != nil || plans[0].Exists || plans[0].State != StateNew {
		t.Errorf("AWS_ENDPOINT_URL_CLOUDFORMATION was not used: %d calls, plan %s, err %v", len(f.proxy.Calls()), plans[0].State, plans[0].Err)
	}
}

// After a failed creation, fixing the template and deploying again works.
func TestDeployAfterFailedCreation(t *testing.T) {
	f := newFixture(t, "ap-southeast-2", true)
	dir := t.TempDir()
	bucket := map[string]any{"Type": "AWS::S3::Bucket", "Properties": map[string]any{"BucketName": "pipe-test-retry-name"}}
	writeStack(t, dir, testStack{id: "Retry", resources: map[string]any{"First": bucket, "Second": bucket}})
	if _, _, err := f.deploy(load(t, dir), options{Approval: ApproveNever}); err == nil {
		t.Fatal("deploy succeeded; want a failure")
	}
	writeStack(t, dir, testStack{id: "Retry", resources: map[string]any{"P": ssmParamResource("/pipe/retry", "v")}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, _, err := f.deployCtx(ctx, load(t, dir), options{Approval: ApproveNever})
	if err != nil || res[0].Status != StatusDeployed {
		t.Fatalf("redeploy after a failed creation: %v (%s)", err, f.stackStatus("Retry"))
	}
}
