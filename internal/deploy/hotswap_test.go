package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
)

// hotswapTemplate is a CDK-shaped template: a function with its role, code
// in the bootstrap bucket, environment variables, a layer of the stack and
// one of another account, a version (currentVersion) and an alias.
func hotswapTemplate(edit func(res map[string]any)) []byte {
	res := map[string]any{
		"FnRole": map[string]any{"Type": "AWS::IAM::Role", "Properties": map[string]any{
			"AssumeRolePolicyDocument": map[string]any{"Statement": []any{map[string]any{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": map[string]any{"Service": "lambda.amazonaws.com"}}}},
			"ManagedPolicyArns":        []any{map[string]any{"Fn::Join": []any{"", []any{"arn:", map[string]any{"Ref": "AWS::Partition"}, ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}}}},
		}},
		"Table": map[string]any{"Type": "AWS::DynamoDB::Table", "Properties": map[string]any{}},
		"Deps": map[string]any{"Type": "AWS::Lambda::LayerVersion", "Properties": map[string]any{
			"Content":            map[string]any{"S3Bucket": map[string]any{"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "layer1.zip"},
			"CompatibleRuntimes": []any{"python3.12"},
		}},
		"Fn": map[string]any{"Type": "AWS::Lambda::Function", "Properties": map[string]any{
			"Code":    map[string]any{"S3Bucket": map[string]any{"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "code1.zip"},
			"Handler": "run.sh", "Runtime": "python3.12",
			"Role": map[string]any{"Fn::GetAtt": []any{"FnRole", "Arn"}},
			"Layers": []any{
				map[string]any{"Ref": "Deps"},
				map[string]any{"Fn::Join": []any{"", []any{"arn:aws:lambda:", map[string]any{"Ref": "AWS::Region"}, ":753240598075:layer:LambdaAdapterLayerX86:25"}}},
			},
			"Environment": map[string]any{"Variables": map[string]any{
				"STAGE":  "dev",
				"TABLE":  map[string]any{"Ref": "Table"},
				"STREAM": map[string]any{"Fn::GetAtt": []any{"Table", "StreamArn"}},
			}},
		}, "Metadata": map[string]any{"aws:asset:path": "asset.code1"}, "DependsOn": []any{"FnRole"}},
		"FnCurrentVersion1": map[string]any{"Type": "AWS::Lambda::Version", "Properties": map[string]any{"FunctionName": map[string]any{"Ref": "Fn"}}},
		"Live": map[string]any{"Type": "AWS::Lambda::Alias", "Properties": map[string]any{
			"FunctionName":    map[string]any{"Ref": "Fn"},
			"FunctionVersion": map[string]any{"Fn::GetAtt": []any{"FnCurrentVersion1", "Version"}},
			"Name":            "live",
		}},
	}
	if edit != nil {
		edit(res)
	}
	b, _ := json.Marshal(map[string]any{"Resources": res, "Outputs": map[string]any{"FnName": map[string]any{"Value": map[string]any{"Ref": "Fn"}}}})
	return b
}

func props(res map[string]any, id string) map[string]any {
	return res[id].(map[string]any)["Properties"].(map[string]any)
}

// newVersion replaces the function's version with a new one, as a change
// of the function does to the CDK's currentVersion, and moves the alias.
func newVersion(res map[string]any) {
	delete(res, "FnCurrentVersion1")
	res["FnCurrentVersion2"] = map[string]any{"Type": "AWS::Lambda::Version", "Properties": map[string]any{"FunctionName": map[string]any{"Ref": "Fn"}}}
	props(res, "Live")["FunctionVersion"] = map[string]any{"Fn::GetAtt": []any{"FnCurrentVersion2", "Version"}}
}

var hotswapPhysical = map[string]string{
	"FnRole":            "stack-FnRole-ABC",
	"Table":             "stack-Table-XYZ",
	"Deps":              "arn:aws:lambda:eu-west-1:123456789012:layer:Deps:3",
	"Fn":                "stack-Fn-123",
	"FnCurrentVersion1": "arn:aws:lambda:eu-west-1:123456789012:function:stack-Fn-123:1",
	"Live":              "arn:aws:lambda:eu-west-1:123456789012:function:stack-Fn-123:live",
}

// planHotswapOf runs both passes on two templates, with reasons and a
// record as Plan would find them.
func planHotswapOf(t *testing.T, oldB, newB []byte, reasons []string, rec *HotswapRecord) *HotswapPlan {
	t.Helper()
	changes, err := DiffTemplates(oldB, newB)
	if err != nil {
		t.Fatal(err)
	}
	old, err := decodeTpl(oldB)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := decodeTpl(newB)
	if err != nil {
		t.Fatal(err)
	}
	d := draftHotswap(old, cur, changes, reasons)
	if rec != nil {
		d.addRecord(rec, cur)
	}
	if len(d.blockers) > 0 {
		return &HotswapPlan{Blockers: d.blockers}
	}
	types := map[string]string{}
	for id := range hotswapPhysical {
		types[id] = old.typeOf(id)
	}
	s := &Stack{StackName: "stack"}
	ev := newEvaluator(s, &deployed{id: "arn:aws:cloudformation:eu-west-1:123456789012:stack/stack/1", params: map[string]cfntypes.Parameter{}}, "123456789012", "eu-west-1", hotswapPhysical, types)
	h := d.resolve(old, cur, ev)
	h.dropApplied(rec)
	return h
}

func blockers(h *HotswapPlan) string {
	var out []string
	for _, b := range h.Blockers {
		out = append(out, b.String())
	}
	return strings.Join(out, "\n")
}

func TestHotswapCodeChange(t *testing.T) {
	old := hotswapTemplate(nil)
	cur := hotswapTemplate(func(res map[string]any) {
		props(res, "Fn")["Code"].(map[string]any)["S3Key"] = "code2.zip"
		res["Fn"].(map[string]any)["Metadata"] = map[string]any{"aws:asset:path": "asset.code2"}
		newVersion(res)
	})
	h := planHotswapOf(t, old, cur, []string{reasonTemplate}, nil)
	if !h.Hotswappable() {
		t.Fatalf("a code change is not hotswappable:\n%s", blockers(h))
	}
	if len(h.Functions) != 1 || len(h.Layers) != 0 {
		t.Fatalf("functions %+v layers %+v, want Fn alone", h.Functions, h.Layers)
	}
	u := h.Functions[0]
	want := S3Location{Bucket: "cdk-hnb659fds-assets-123456789012-eu-west-1", Key: "code2.zip"}
	if u.FunctionName != "stack-Fn-123" || u.Code == nil || *u.Code != want {
		t.Errorf("update %+v code %+v, want stack-Fn-123 from %+v", u, u.Code, want)
	}
	if u.Env != nil || u.Description != nil || u.Layers != nil {
		t.Errorf("a code change changes %v", u.Changed())
	}
	if len(u.Versions) != 1 || u.Versions[0].LogicalID != "FnCurrentVersion2" || len(u.Versions[0].Aliases) != 1 || u.Versions[0].Aliases[0].Name != "live" {
		t.Errorf("versions %+v, want FnCurrentVersion2 published and alias live moved to it", u.Versions)
	}
}

func TestHotswapEnvironmentChange(t *testing.T) {
	old := hotswapTemplate(nil)
	cur := hotswapTemplate(func(res map[string]any) {
		vars := props(res, "Fn")["Environment"].(map[string]any)["Variables"].(map[string]any)
		vars["STAGE"] = "prod"
		vars["TABLE_ARN"] = map[string]any{"Fn::GetAtt": []any{"Table", "Arn"}}
		vars["REGION"] = map[string]any{"Fn::Sub": "${AWS::Region}-${Table}"}
		props(res, "Fn")["Description"] = "new"
	})
	h := planHotswapOf(t, old, cur, []string{reasonTemplate}, nil)
	if !h.Hotswappable() {
		t.Fatalf("an environment change is not hotswappable:\n%s", blockers(h))
	}
	u := h.Functions[0]
	// STREAM (a Fn::GetAtt pipe cannot evaluate) did not change: the
	// function keeps the value CloudFormation gave it.
	want := map[string]string{"STAGE": "prod", "TABLE_ARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/stack-Table-XYZ", "REGION": "eu-west-1-stack-Table-XYZ"}
	if u.Env == nil || len(u.Env.Set) != len(want) || len(u.Env.Remove) != 0 {
		t.Fatalf("env %+v, want %v set", u.Env, want)
	}
	for k, v := range want {
		if u.Env.Set[k] != v {
			t.Errorf("%s = %q, want %q", k, u.Env.Set[k], v)
		}
	}
	if u.Code != nil || u.Description == nil || *u.Description != "new" {
		t.Errorf("changes %v, want environment and description", u.Changed())
	}

	// A new variable pipe cannot evaluate needs CloudFormation.
	cur = hotswapTemplate(func(res map[string]any) {
		vars := props(res, "Fn")["Environment"].(map[string]any)["Variables"].(map[string]any)
		vars["STREAM2"] = map[string]any{"Fn::GetAtt": []any{"Table", "StreamArn"}}
		delete(vars, "STAGE")
	})
	h = planHotswapOf(t, old, cur, []string{reasonTemplate}, nil)
	if h.Hotswappable() || !strings.Contains(blockers(h), "Fn (AWS::Lambda::Function) Properties.Environment.Variables.STREAM2: cannot be evaluated without CloudFormation: Fn::GetAtt Table.StreamArn") {
		t.Errorf("blockers:\n%s\nwant Properties.Environment.Variables.STREAM2 named", blockers(h))
	}
}

func TestHotswapFallsBackNamingTheProperty(t *testing.T) {
	old := hotswapTemplate(nil)
	for _, tc := range []struct {
		name    string
		edit    func(map[string]any)
		reasons []string
		want    string
	}{
		{"iam", func(res map[string]any) {
			p := props(res, "FnRole")
			p["ManagedPolicyArns"] = append(p["ManagedPolicyArns"].([]any), "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
			props(res, "Fn")["Code"].(map[string]any)["S3Key"] = "code2.zip"
		}, nil, "FnRole (AWS::IAM::Role) Properties.ManagedPolicyArns[1]: added"},
		{"memory", func(res map[string]any) { props(res, "Fn")["MemorySize"] = 1024 }, nil, "Fn (AWS::Lambda::Function) Properties.MemorySize: added"},
		{"new resource", func(res map[string]any) { res["Q"] = map[string]any{"Type": "AWS::SQS::Queue"} }, nil, "Q (AWS::SQS::Queue): added (only CloudFormation creates and deletes resources)"},
		{"inline code", func(res map[string]any) { props(res, "Fn")["Code"] = map[string]any{"ZipFile": "def h(e, c): pass"} }, nil, "Fn (AWS::Lambda::Function) Properties.Code.ZipFile: added"},
		{"depends on", func(res map[string]any) { res["Fn"].(map[string]any)["DependsOn"] = []any{"FnRole", "Table"} }, nil, "Fn (AWS::Lambda::Function) DependsOn[1]: added"},
		{"tags", nil, []string{reasonTemplate, "tags differ"}, "tags differ"},
		{"metadata only", func(res map[string]any) {
			res["FnRole"].(map[string]any)["Metadata"] = map[string]any{"aws:cdk:path": "S/FnRole"}
		}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := hotswapTemplate(tc.edit)
			reasons := tc.reasons
			if reasons == nil {
				reasons = []string{reasonTemplate}
			}
			h := planHotswapOf(t, old, cur, reasons, nil)
			if tc.want == "" {
				if !h.Hotswappable() {
					t.Fatalf("not hotswappable:\n%s", blockers(h))
				}
				return
			}
			if h.Hotswappable() || !strings.Contains(blockers(h), tc.want) {
				t.Errorf("blockers:\n%s\nwant %q", blockers(h), tc.want)
			}
		})
	}
}

func TestHotswapLayerFollowedByFunctions(t *testing.T) {
	old := hotswapTemplate(nil)
	cur := hotswapTemplate(func(res map[string]any) {
		props(res, "Deps")["Content"].(map[string]any)["S3Key"] = "layer2.zip"
	})
	h := planHotswapOf(t, old, cur, []string{reasonTemplate}, nil)
	if !h.Hotswappable() {
		t.Fatalf("a layer's new content is not hotswappable:\n%s", blockers(h))
	}
	if len(h.Layers) != 1 || len(h.Functions) != 1 {
		t.Fatalf("layers %+v functions %+v", h.Layers, h.Functions)
	}
	l := h.Layers[0]
	if l.LayerName != "Deps" || l.Content.Key != "layer2.zip" || strings.Join(l.CompatibleRuntimes, ",") != "python3.12" {
		t.Errorf("layer %+v", l)
	}
	refs := h.Functions[0].Layers
	if len(refs) != 2 || refs[0].Layer != l || refs[1].ARN != "arn:aws:lambda:eu-west-1:753240598075:layer:LambdaAdapterLayerX86:25" {
		t.Errorf("the function's layers %+v: want the republished layer, then the Web Adapter's", refs)
	}

	// A reference to the layer elsewhere than a function's Layers cannot
	// follow a hotswap.
	curOut := []byte(strings.Replace(string(cur), `"Outputs":{`, `"Outputs":{"LayerArn":{"Value":{"Ref":"Deps"}},`, 1))
	oldOut := []byte(strings.Replace(string(old), `"Outputs":{`, `"Outputs":{"LayerArn":{"Value":{"Ref":"Deps"}},`, 1))
	h = planHotswapOf(t, oldOut, curOut, []string{reasonTemplate}, nil)
	if h.Hotswappable() || !strings.Contains(blockers(h), "output LayerArn Value: refers to layer Deps") {
		t.Errorf("blockers:\n%s\nwant the output naming the layer", blockers(h))
	}
}

// A record of an earlier hotswap makes the functions' recorded properties
// set from the template again, even where the templates agree; what the
// function already has is left alone.
func TestHotswapRecordResetsWhatWasHotswapped(t *testing.T) {
	tpl := hotswapTemplate(nil)
	on, dev := "on", "dev"
	rec := &HotswapRecord{
		Functions: map[string]*RecordedFunction{"Fn": {
			Code:        &S3Location{Bucket: "cdk-hnb659fds-assets-123456789012-eu-west-1", Key: "code2.zip"},
			Environment: map[string]*string{"GONE": &on, "STAGE": &dev, "REMOVED": nil},
		}},
		Aliases: map[string]string{"Live": "7"},
	}
	h := planHotswapOf(t, tpl, tpl, []string{reasonHotswapped}, rec)
	if !h.Hotswappable() || len(h.Functions) != 1 {
		t.Fatalf("blockers:\n%s\nfunctions %+v", blockers(h), h.Functions)
	}
	u := h.Functions[0]
	if u.Code == nil || u.Code.Key != "code1.zip" {
		t.Errorf("code %+v, want the template's code1.zip", u.Code)
	}
	// STAGE has the template's value already; GONE, which the template
	// lacks, goes; REMOVED was removed and the template lacks it too.
	if u.Env == nil || len(u.Env.Set) != 0 || strings.Join(u.Env.Remove, ",") != "GONE" {
		t.Errorf("env %+v, want GONE removed and nothing else touched", u.Env)
	}
	if len(h.Aliases) != 1 || h.Aliases[0].Name != "live" || h.Aliases[0].Version != "1" || h.Aliases[0].FunctionName != "stack-Fn-123" {
		t.Errorf("aliases %+v, want live back on version 1", h.Aliases)
	}

	// A second hotswap changes what differs from what the first one set:
	// the environment, not the code it set already.
	cur := hotswapTemplate(func(res map[string]any) {
		props(res, "Fn")["Code"].(map[string]any)["S3Key"] = "code2.zip"
		props(res, "Fn")["Environment"].(map[string]any)["Variables"].(map[string]any)["NEW"] = "1"
		newVersion(res)
	})
	rec.Aliases = map[string]string{"Live": "2"}
	h = planHotswapOf(t, tpl, cur, []string{reasonTemplate, reasonHotswapped}, rec)
	if !h.Hotswappable() || len(h.Functions) != 1 {
		t.Fatalf("blockers:\n%s\nfunctions %+v", blockers(h), h.Functions)
	}
	if got := strings.Join(h.Functions[0].Changed(), "; "); got != "environment (GONE, NEW)" {
		t.Errorf("the second hotswap changes %q, want the environment alone", got)
	}
	if len(h.Functions[0].Versions) != 1 {
		t.Errorf("the function changes, so its new version is published: %+v", h.Functions[0].Versions)
	}
}

func TestEvaluator(t *testing.T) {
	ev := &evaluator{account: "123456789012", region: "eu-west-1", partition: "aws", stackName: "S",
		params:   map[string]string{"Stage": "dev"},
		physical: map[string]string{"Fn": "S-Fn-1", "Q": "https://sqs.eu-west-1.amazonaws.com/123456789012/S-Q-1"},
		types:    map[string]string{"Fn": "AWS::Lambda::Function", "Q": "AWS::SQS::Queue"}}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`"x"`, "x"},
		{`42`, "42"},
		{`{"Ref":"Stage"}`, "dev"},
		{`{"Fn::Sub":"${AWS::StackName}-${Stage}-${Fn.Arn}-${!Literal}"}`, "S-dev-arn:aws:lambda:eu-west-1:123456789012:function:S-Fn-1-${Literal}"},
		{`{"Fn::Sub":["${A}/${AWS::URLSuffix}",{"A":{"Ref":"Fn"}}]}`, "S-Fn-1/amazonaws.com"},
		{`{"Fn::Join":["-",["a",{"Ref":"AWS::AccountId"},{"Ref":"AWS::NoValue"}]]}`, "a-123456789012"},
		{`{"Fn::Select":[1,{"Fn::Split":[",","a,b,c"]}]}`, "b"},
		{`{"Fn::GetAtt":["Q","Arn"]}`, "arn:aws:sqs:eu-west-1:123456789012:S-Q-1"},
		{`{"Fn::GetAtt":"Q.QueueName"}`, "S-Q-1"},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.in), &v); err != nil {
			t.Fatal(err)
		}
		got, err := ev.str(v)
		if err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`{"Fn::ImportValue":"x"}`, `{"Fn::GetAtt":["Fn","SnapStartResponse"]}`, `{"Ref":"Missing"}`, `{"Fn::If":["C","a","b"]}`} {
		var v any
		json.Unmarshal([]byte(in), &v)
		if got, err := ev.str(v); err == nil {
			t.Errorf("%s = %q, want an error", in, got)
		}
	}
}

func TestHotswapRecords(t *testing.T) {
	r := &HotswapRecords{Dir: t.TempDir()}
	if recs, err := r.find("eu-west-1", "S"); err != nil || len(recs) != 0 {
		t.Fatalf("find in an empty store: %v, %v", recs, err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ver := &VersionUpdate{Aliases: []*AliasUpdate{{LogicalID: "Live"}}}
	h := &HotswapPlan{Functions: []*FunctionUpdate{{LogicalID: "Fn", Code: &S3Location{Bucket: "b", Key: "k"}, Env: &EnvUpdate{Set: map[string]string{"B": "1"}, Remove: []string{"A"}},
		Versions: []*VersionUpdate{ver}}}}
	if err := r.add("123456789012", "eu-west-1", "S", h, nil, now); err != nil {
		t.Fatal(err)
	}
	ver.published = "4"
	if err := r.add("123456789012", "eu-west-1", "S", h, nil, now); err != nil {
		t.Fatal(err)
	}
	desc := ""
	h2 := &HotswapPlan{Functions: []*FunctionUpdate{{LogicalID: "Fn", Env: &EnvUpdate{Set: map[string]string{"C": "2", "B": "3"}}}, {LogicalID: "Other", Description: &desc}}}
	if err := r.add("123456789012", "eu-west-1", "S", h2, nil, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	recs, err := r.find("eu-west-1", "S")
	if err != nil || len(recs) != 1 {
		t.Fatalf("find: %v, %v", recs, err)
	}
	rec := recs[0]
	fn := rec.Functions["Fn"]
	env := func(k string) string {
		v, ok := fn.Environment[k]
		switch {
		case !ok:
			return "unset"
		case v == nil:
			return "removed"
		}
		return *v
	}
	if rec.Account != "123456789012" || !rec.First.Equal(now) || !rec.Last.Equal(now.Add(time.Minute)) || fn == nil || fn.Code == nil || fn.Code.Key != "k" ||
		env("A") != "removed" || env("B") != "3" || env("C") != "2" || rec.Functions["Other"] == nil || rec.Functions["Other"].Description == nil || rec.Aliases["Live"] != "4" {
		b, _ := json.Marshal(rec)
		t.Errorf("merged record %s", b)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "123456789012", "eu-west-1", "S.json")); err != nil {
		t.Errorf("the record is not at ACCOUNT/REGION/STACK.json: %v", err)
	}
	if err := r.remove("123456789012", "eu-west-1", "S"); err != nil {
		t.Fatal(err)
	}
	if recs, _ := r.find("eu-west-1", "S"); len(recs) != 0 {
		t.Errorf("the record is still there after remove")
	}
	var none *HotswapRecords
	if err := none.add("a", "r", "s", h, nil, now); err != nil {
		t.Errorf("a nil store records nothing, without error: %v", err)
	}
}

func TestProtectedStack(t *testing.T) {
	s := &Stack{StackName: "Prod", DisplayName: "Prod"}
	if err := protected(s, &deployed{}); err != nil {
		t.Errorf("an ordinary stack: %v", err)
	}
	s.NoHotswap = "cdk_stack(hotswap = False) of //infra:prod"
	if err := protected(s, &deployed{}); err == nil || !strings.Contains(err.Error(), "hotswap = False") {
		t.Errorf("cdk_stack(hotswap = False): %v", err)
	}
	s.NoHotswap = ""
	s.Tags = map[string]string{NoHotswapTag: "false"}
	if err := protected(s, &deployed{}); err == nil || !strings.Contains(err.Error(), "tagged pipe:hotswap=false") {
		t.Errorf("tagged stack: %v", err)
	}
	s.Tags = nil
	if err := protected(s, &deployed{exists: true, tags: map[string]string{NoHotswapTag: "False"}}); err == nil {
		t.Errorf("a stack deployed with the tag must stay protected")
	}
}

// TestLambdaPollerBacksOffToItsLimit: waiting for a function's update
// polls after 20, 40, 80, 160 ms, then every 250 ms, not backing off to
// CloudFormation's 3 s, which would add up to 2 s to a one-second code
// update.
func TestLambdaPollerBacksOffToItsLimit(t *testing.T) {
	seq := func(p *poller, n int) []time.Duration {
		var out []time.Duration
		for i := 0; i < n; i++ {
			out = append(out, p.d)
			p.advance()
		}
		return out
	}
	ms := time.Millisecond
	if got, want := seq(newLambdaPoller(), 7), []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 250 * ms, 250 * ms, 250 * ms}; !slices.Equal(got, want) {
		t.Errorf("Lambda polls after %v, want %v", got, want)
	}
	if got := seq(newPoller(), 10); got[9] != 3*time.Second {
		t.Errorf("CloudFormation polls after %v, want up to 3s", got)
	}
}
