package deploy

import (
	"bytes"
	"encoding/json"
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
	var b bytes.Buffer
	differs, err := TemplateDiff(&b, old, new)
	if err != nil || !differs {
		t.Fatalf("TemplateDiff: %v %v", differs, err)
	}
	want := `  Resources
  [~] AWS::Lambda::Function Fn
       Properties.Code.S3Key: "a.zip" → "b.zip"
       + Properties.Environment.Variables.B: "2"
       + Properties.Layers[1]: {"Ref":"L2"}
  [-] AWS::SQS::Queue Gone
  [+] AWS::SNS::Topic New
  Description: "v1" → "v2"
`
	if b.String() != want {
		t.Errorf("diff:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if differs, _ := TemplateDiff(&b, old, old); differs || b.Len() != 0 {
		t.Errorf("no differences expected: %q", b.String())
	}
}
