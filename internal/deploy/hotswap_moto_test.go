package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pipebuild/pipe/internal/testenv"
)

func zipOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(content))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Apply carries out a hotswap plan with Lambda calls against moto: a layer
// published anew, the function's code, environment and layers updated, a
// version published and the alias moved to it; the record written; not a
// single CloudFormation call.
func TestApplyHotswapPlan(t *testing.T) {
	f := newFixture(t, "ap-south-1", true)
	ctx := context.Background()
	bucket := testenv.BootstrapBucket(f.region)
	s3c := s3.NewFromConfig(f.cfg, func(o *s3.Options) { o.UsePathStyle = true })
	objects := map[string][]byte{
		"code1.zip":  zipOf(t, "main.py", "VERSION = 1\n"),
		"code2.zip":  zipOf(t, "main.py", "VERSION = 2\n"),
		"layer1.zip": zipOf(t, "python/dep.py", "X = 1\n"),
		"layer2.zip": zipOf(t, "python/dep.py", "X = 2\n"),
	}
	for k, b := range objects {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: bytes.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
	trust := url.QueryEscape(`{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"}}]}`)
	if _, err := moto.Do("iam", "us-east-1", http.MethodPost, "/?Action=CreateRole&Version=2010-05-08&RoleName=hs-role&AssumeRolePolicyDocument="+trust, "", ""); err != nil && !strings.Contains(err.Error(), "EntityAlreadyExists") {
		t.Fatal(err)
	}
	lc := lambda.NewFromConfig(f.cfg)
	l1, err := lc.PublishLayerVersion(ctx, &lambda.PublishLayerVersionInput{LayerName: aws.String("deps"), Content: &lambdatypes.LayerVersionContentInput{S3Bucket: aws.String(bucket), S3Key: aws.String("layer1.zip")}})
	if err != nil {
		t.Fatal(err)
	}
	fn, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("hs-fn"), Runtime: lambdatypes.RuntimePython312, Handler: aws.String("main.handler"),
		Role:        aws.String("arn:aws:iam::" + testenv.Account + ":role/hs-role"),
		Code:        &lambdatypes.FunctionCode{S3Bucket: aws.String(bucket), S3Key: aws.String("code1.zip")},
		Layers:      []string{aws.ToString(l1.LayerVersionArn)},
		Environment: &lambdatypes.Environment{Variables: map[string]string{"A": "1", "KEEP": "kept", "GONE": "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := lc.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: fn.FunctionName})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: fn.FunctionName, Name: aws.String("live"), FunctionVersion: v1.Version}); err != nil {
		t.Fatal(err)
	}

	layer := &LayerUpdate{LogicalID: "Deps", LayerName: "deps", Content: S3Location{Bucket: bucket, Key: "layer2.zip"}, CompatibleRuntimes: []string{"python3.12"}}
	update := &FunctionUpdate{
		LogicalID: "Fn", FunctionName: "hs-fn",
		Code:     &S3Location{Bucket: bucket, Key: "code2.zip"},
		Env:      &EnvUpdate{Set: map[string]string{"A": "2", "B": "new"}, Remove: []string{"GONE"}},
		Layers:   []LayerRef{{Layer: layer}},
		Versions: []*VersionUpdate{{LogicalID: "FnCurrentVersion2", Aliases: []*AliasUpdate{{LogicalID: "Live", Name: "live"}}}},
	}
	records := &HotswapRecords{Dir: t.TempDir()}
	s := &Stack{StackName: "HotswapStack", DisplayName: "HotswapStack"}
	plan := &StackPlan{
		Stack: s, State: StateUpdate, Exists: true, Reasons: []string{reasonTemplate},
		Account: testenv.Account, Region: f.region, Outputs: map[string]string{"Out": "v"},
		Hotswap: &HotswapPlan{Mode: HotswapFallBack, Layers: []*LayerUpdate{layer}, Functions: []*FunctionUpdate{update}},
		cur:     &deployed{exists: true}, records: records,
	}
	f.proxy.Reset()
	evs := &events{}
	res, err := Apply(ctx, f.cfg, []*StackPlan{plan}, ApplyOptions{}, evs)
	t.Logf("events:\n%s", evs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != StatusHotswapped || res[0].Outputs["Out"] != "v" {
		t.Errorf("result %+v, want hotswapped with the stack's outputs", res[0])
	}
	for _, c := range f.proxy.Calls() {
		if c.Service != "lambda" {
			t.Errorf("a hotswap called %v; want Lambda calls only", c)
		}
	}
	hs := evs.of(EventHotswapped, "HotswapStack")
	if len(hs) != 2 || hs[0].Hotswap.LogicalID != "Deps" || hs[1].Hotswap.LogicalID != "Fn" {
		t.Fatalf("hotswapped events %+v, want the layer then the function", hs)
	}
	if got := strings.Join(hs[1].Hotswap.Changed, "; "); got != "code; environment (A, B, GONE); layers; version 2; alias live → 2" {
		t.Errorf("the function's event says %q", got)
	}

	got, err := lc.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("hs-fn")})
	if err != nil {
		t.Fatal(err)
	}
	c := got.Configuration
	sum := sha256.Sum256(objects["code2.zip"])
	if aws.ToString(c.CodeSha256) != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("CodeSha256 %s, want code2.zip's", aws.ToString(c.CodeSha256))
	}
	vars := c.Environment.Variables
	if vars["A"] != "2" || vars["B"] != "new" || vars["KEEP"] != "kept" || vars["GONE"] != "" || len(vars) != 3 {
		t.Errorf("environment %v, want A=2 B=new KEEP=kept", vars)
	}
	if len(c.Layers) != 1 || !strings.HasSuffix(aws.ToString(c.Layers[0].Arn), ":layer:deps:2") {
		t.Errorf("layers %+v, want deps version 2", c.Layers)
	}
	alias, err := lc.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("hs-fn"), Name: aws.String("live")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(alias.FunctionVersion) != "2" {
		t.Errorf("alias live → %s, want 2", aws.ToString(alias.FunctionVersion))
	}
	recs, err := records.find(f.region, "HotswapStack")
	if err != nil || len(recs) != 1 {
		t.Fatalf("records %+v, %v", recs, err)
	}
	rf := recs[0].Functions["Fn"]
	if rf == nil || rf.Code == nil || rf.Code.Key != "code2.zip" || *rf.Environment["A"] != "2" || rf.Environment["GONE"] != nil || rf.Layers == nil ||
		!strings.HasSuffix((*rf.Layers)[0], ":layer:deps:2") || recs[0].Aliases["Live"] != "2" {
		b, _ := json.Marshal(recs[0])
		t.Errorf("record %s, want what the hotswap set", b)
	}

	// A protected stack is refused before any call.
	f.proxy.Reset()
	plan.Hotswap = &HotswapPlan{Mode: HotswapFallBack, Refused: protected(&Stack{StackName: "P", NoHotswap: "cdk_stack(hotswap = False)"}, &deployed{})}
	res, err = Apply(ctx, f.cfg, []*StackPlan{plan}, ApplyOptions{}, &events{})
	if err == nil || res[0].Status != StatusFailed || !strings.Contains(err.Error(), "hotswap refused") {
		t.Errorf("protected stack: %v, %+v", err, res[0])
	}
	if n := len(f.proxy.Calls()); n > 0 {
		t.Errorf("a refused hotswap made %d calls: %v", n, f.proxy.Calls())
	}
	// So is a stack that cannot be hotswapped, with --hotswap-fallback=never.
	plan.Hotswap = &HotswapPlan{Mode: HotswapOnly, Blockers: []HotswapBlocker{{Section: "Resources", LogicalID: "Role", Type: "AWS::IAM::Role", Property: "Properties.Policies[0]", Reason: "changed"}}}
	res, err = Apply(ctx, f.cfg, []*StackPlan{plan}, ApplyOptions{}, &events{})
	if err == nil || !strings.Contains(err.Error(), "Role (AWS::IAM::Role) Properties.Policies[0]: changed") || !strings.Contains(err.Error(), "--hotswap-fallback=never") {
		t.Errorf("--hotswap-fallback=never: %v", err)
	}
	if n := len(f.proxy.Calls()); n > 0 {
		t.Errorf("a refused fallback made %d calls: %v", n, f.proxy.Calls())
	}
}
