package deploy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func tplJSON(t *testing.T, resources map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Resources": resources})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func doc(statements ...map[string]any) map[string]any {
	var sts []any
	for _, s := range statements {
		sts = append(sts, s)
	}
	return map[string]any{"Version": "2012-10-17", "Statement": sts}
}

func allow(action, resource string) map[string]any {
	return map[string]any{"Effect": "Allow", "Action": action, "Resource": resource}
}

func TestBroadening(t *testing.T) {
	role := func(policies []any, managed []any) map[string]any {
		p := map[string]any{"AssumeRolePolicyDocument": doc(map[string]any{"Effect": "Allow", "Principal": map[string]any{"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})}
		if policies != nil {
			p["Policies"] = policies
		}
		if managed != nil {
			p["ManagedPolicyArns"] = managed
		}
		return map[string]any{"Type": "AWS::IAM::Role", "Properties": p}
	}
	base := map[string]any{
		"Role":   role([]any{map[string]any{"PolicyName": "p", "PolicyDocument": doc(allow("s3:GetObject", "arn:aws:s3:::b/*"))}}, nil),
		"Policy": map[string]any{"Type": "AWS::IAM::Policy", "Properties": map[string]any{"PolicyDocument": doc(allow("sqs:SendMessage", "*")), "Roles": []any{map[string]any{"Ref": "Role"}}}},
		"SG":     map[string]any{"Type": "AWS::EC2::SecurityGroup", "Properties": map[string]any{"SecurityGroupIngress": []any{map[string]any{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "10.0.0.0/8"}}}},
		"Queue":  map[string]any{"Type": "AWS::SQS::Queue"},
	}
	old := tplJSON(t, base)
	if b := Broadening(old, old); len(b) != 0 {
		t.Errorf("same template broadens: %v", b)
	}

	cases := []struct {
		name   string
		change func(m map[string]any)
		want   string // substring of the one finding; "" = none
	}{
		{"new statement", func(m map[string]any) {
			m["Policy"] = map[string]any{"Type": "AWS::IAM::Policy", "Properties": map[string]any{"PolicyDocument": doc(allow("sqs:SendMessage", "*"), allow("dynamodb:*", "*")), "Roles": []any{map[string]any{"Ref": "Role"}}}}
		}, "AWS::IAM::Policy Policy: policy: Allow dynamodb:* on *"},
		{"wider resource", func(m map[string]any) {
			m["Role"] = role([]any{map[string]any{"PolicyName": "p", "PolicyDocument": doc(allow("s3:GetObject", "*"))}}, nil)
		}, "AWS::IAM::Role Role: policy p: Allow s3:GetObject on *"},
		{"managed policy", func(m map[string]any) {
			m["Role"] = role([]any{map[string]any{"PolicyName": "p", "PolicyDocument": doc(allow("s3:GetObject", "arn:aws:s3:::b/*"))}}, []any{"arn:aws:iam::aws:policy/AdministratorAccess"})
		}, "managed policy arn:aws:iam::aws:policy/AdministratorAccess"},
		{"policy attached to another role", func(m map[string]any) {
			m["Policy"] = map[string]any{"Type": "AWS::IAM::Policy", "Properties": map[string]any{"PolicyDocument": doc(allow("sqs:SendMessage", "*")), "Roles": []any{map[string]any{"Ref": "Role"}, "other-role"}}}
		}, "attached to role other-role"},
		{"ingress", func(m map[string]any) {
			m["Open"] = map[string]any{"Type": "AWS::EC2::SecurityGroupIngress", "Properties": map[string]any{"GroupId": map[string]any{"Ref": "SG"}, "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"}}
		}, "ingress tcp port 22 from 0.0.0.0/0"},
		{"lambda permission", func(m map[string]any) {
			m["Invoke"] = map[string]any{"Type": "AWS::Lambda::Permission", "Properties": map[string]any{"Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com", "FunctionName": map[string]any{"Ref": "Fn"}}}
		}, "lambda:InvokeFunction to apigateway.amazonaws.com"},
		{"a deny is no broadening", func(m map[string]any) {
			m["Policy"] = map[string]any{"Type": "AWS::IAM::Policy", "Properties": map[string]any{"PolicyDocument": doc(allow("sqs:SendMessage", "*"), map[string]any{"Effect": "Deny", "Action": "*", "Resource": "*"}), "Roles": []any{map[string]any{"Ref": "Role"}}}}
		}, ""},
		{"removing a statement is no broadening", func(m map[string]any) {
			delete(m, "Policy")
		}, ""},
		{"other resources are not IAM", func(m map[string]any) {
			m["Queue"] = map[string]any{"Type": "AWS::SQS::Queue", "Properties": map[string]any{"VisibilityTimeout": 60}}
		}, ""},
	}
	for _, c := range cases {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		c.change(m)
		got := Broadening(old, tplJSON(t, m))
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%s: want no broadening, got %q", c.name, got)
		case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)):
			t.Errorf("%s: got %q, want one finding containing %q", c.name, got, c.want)
		}
	}

	// Everything a new stack grants is new.
	if got := Broadening(nil, old); len(got) != 5 {
		t.Errorf("new stack: %q", got)
	}
}

func TestTemplateDiff(t *testing.T) {
	old := []byte(`{"Resources": {
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "a.zip"}, "Environment": {"Variables": {"A": "1"}}, "Layers": ["l1"]}},
  "Gone": {"Type": "AWS::SQS::Queue"}},
 "Outputs": {"Url": {"Value": "x"}},
 "Description": "v1"}`)
	new := []byte(`{"Resources": {
  "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "b.zip"}, "Environment": {"Variables": {"A": "1", "B": "2"}}, "Layers": ["l1", {"Ref": "L2"}]}},
  "New": {"Type": "AWS::SNS::Topic"}},
 "Outputs": {"Url": {"Value": "x"}},
 "Description": "v2"}`)
	got, err := DiffTemplates(old, new)
	if err != nil {
		t.Fatal(err)
	}
	want := []TemplateChange{
		{Section: "Resources", Name: "Fn", Type: "AWS::Lambda::Function", Kind: Modified, Values: []ValueChange{
			{Path: "Properties.Code.S3Key", Kind: Modified, Old: `"a.zip"`, New: `"b.zip"`},
			{Path: "Properties.Environment.Variables.B", Kind: Added, New: `"2"`},
			{Path: "Properties.Layers[1]", Kind: Added, New: `{"Ref":"L2"}`},
		}},
		{Section: "Resources", Name: "Gone", Type: "AWS::SQS::Queue", Kind: Removed},
		{Section: "Resources", Name: "New", Type: "AWS::SNS::Topic", Kind: Added},
		{Name: "Description", Kind: Modified, Values: []ValueChange{{Path: "Description", Kind: Modified, Old: `"v1"`, New: `"v2"`}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diff:\n%+v\nwant:\n%+v", got, want)
	}
	if got, err := DiffTemplates(old, old); err != nil || len(got) != 0 {
		t.Errorf("no differences expected: %+v %v", got, err)
	}
	// A resource whose type changes is replaced.
	retyped := []byte(`{"Resources": {"Gone": {"Type": "AWS::SNS::Topic"}}}`)
	if got, _ := DiffTemplates(old, retyped); len(got) < 2 || got[1].Name != "Gone" || got[1].OldType != "AWS::SQS::Queue" || got[1].Type != "AWS::SNS::Topic" {
		t.Errorf("type change: %+v", got)
	}
	if _, err := DiffTemplates([]byte("Resources: {}"), new); err == nil || !strings.Contains(err.Error(), "deployed template: not JSON") {
		t.Errorf("a YAML template: %v", err)
	}
}
