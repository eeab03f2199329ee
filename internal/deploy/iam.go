package deploy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Broadening lists the changes from the deployed template old to new that
// grant more than before: new Allow statements in identity and resource
// policies (trust policies included), managed policies newly attached,
// policies attached to more principals, new Lambda permissions and new
// security-group ingress. old is nil for a stack not deployed yet.
//
// The comparison is per resource and per policy: a statement that is not
// exactly (canonically) in the same resource's policy before counts as new,
// so an edited statement shows up even if it narrows; approving a narrowing
// by mistake is cheaper than deploying a broadening unseen.
func Broadening(old, new []byte) []string {
	oldRes := resources(old)
	newRes := resources(new)
	ids := make([]string, 0, len(newRes))
	for id := range newRes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []string
	for _, id := range ids {
		nr := newRes[id]
		or := oldRes[id]
		if or != nil && or.Type != nr.Type {
			or = nil
		}
		for _, g := range grants(nr) {
			if or != nil && containsGrant(grants(or), g) {
				continue
			}
			out = append(out, fmt.Sprintf("%s %s: %s", nr.Type, id, g.text))
		}
	}
	return out
}

type cfnResource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
}

func resources(tpl []byte) map[string]*cfnResource {
	var t struct {
		Resources map[string]*cfnResource `json:"Resources"`
	}
	if len(tpl) > 0 {
		_ = json.Unmarshal(tpl, &t) // a template that does not parse grants nothing we can see
	}
	if t.Resources == nil {
		t.Resources = map[string]*cfnResource{}
	}
	return t.Resources
}

// grant is one permission-giving element of a resource; key identifies it
// for comparison, text describes it to a reviewer.
type grant struct{ key, text string }

func containsGrant(gs []grant, g grant) bool {
	for _, o := range gs {
		if o.key == g.key {
			return true
		}
	}
	return false
}

// grants lists what a resource grants, by resource type.
func grants(r *cfnResource) []grant {
	p := r.Properties
	var out []grant
	docs := func(where string, doc any) {
		for _, st := range allowStatements(doc) {
			out = append(out, grant{key: where + " " + canon(st), text: where + ": " + describeStatement(st)})
		}
	}
	inline := func() {
		pols, _ := p["Policies"].([]any)
		for _, pol := range pols {
			m, _ := pol.(map[string]any)
			docs(fmt.Sprintf("policy %s", render(m["PolicyName"])), m["PolicyDocument"])
		}
	}
	list := func(prop, what string) {
		items, _ := p[prop].([]any)
		for _, it := range items {
			out = append(out, grant{key: prop + " " + canon(it), text: what + " " + render(it)})
		}
	}
	switch r.Type {
	case "AWS::IAM::Role":
		docs("trust policy", p["AssumeRolePolicyDocument"])
		inline()
		list("ManagedPolicyArns", "managed policy")
	case "AWS::IAM::User", "AWS::IAM::Group":
		inline()
		list("ManagedPolicyArns", "managed policy")
	case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
		docs("policy", p["PolicyDocument"])
		list("Roles", "attached to role")
		list("Users", "attached to user")
		list("Groups", "attached to group")
	case "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy":
		docs("policy", p["PolicyDocument"])
	case "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::SecretsManager::ResourcePolicy", "AWS::ECR::Repository", "AWS::Logs::ResourcePolicy":
		docs("resource policy", p["PolicyDocument"])
		if r.Type == "AWS::ECR::Repository" {
			docs("repository policy", p["RepositoryPolicyText"])
		}
	case "AWS::KMS::Key":
		docs("key policy", p["KeyPolicy"])
	case "AWS::Lambda::Permission":
		out = append(out, grant{key: canon(p), text: fmt.Sprintf("%s to %s (%s)", render(p["Action"]), render(p["Principal"]), render(p["FunctionName"]))})
	case "AWS::EC2::SecurityGroup":
		items, _ := p["SecurityGroupIngress"].([]any)
		for _, it := range items {
			out = append(out, grant{key: "ingress " + canon(it), text: "ingress " + describeIngress(it)})
		}
	case "AWS::EC2::SecurityGroupIngress":
		out = append(out, grant{key: canon(p), text: "ingress " + describeIngress(p)})
	}
	return out
}

// allowStatements returns a policy document's Allow statements.
func allowStatements(doc any) []map[string]any {
	m, _ := doc.(map[string]any)
	var sts []any
	switch s := m["Statement"].(type) {
	case []any:
		sts = s
	case map[string]any:
		sts = []any{s}
	}
	var out []map[string]any
	for _, s := range sts {
		st, _ := s.(map[string]any)
		if st != nil && st["Effect"] == "Allow" {
			out = append(out, st)
		}
	}
	return out
}

func describeStatement(st map[string]any) string {
	var b strings.Builder
	b.WriteString("Allow ")
	if a, ok := st["Action"]; ok {
		b.WriteString(render(a))
	} else {
		b.WriteString("all but " + render(st["NotAction"]))
	}
	if r, ok := st["Resource"]; ok {
		b.WriteString(" on " + render(r))
	}
	if p, ok := st["Principal"]; ok {
		b.WriteString(" to " + render(p))
	}
	if c, ok := st["Condition"]; ok {
		b.WriteString(" if " + render(c))
	}
	return b.String()
}

func describeIngress(v any) string {
	m, _ := v.(map[string]any)
	from := m["CidrIp"]
	if from == nil {
		from = m["CidrIpv6"]
	}
	if from == nil {
		from = m["SourceSecurityGroupId"]
	}
	ports := render(m["FromPort"])
	if m["ToPort"] != nil && render(m["ToPort"]) != ports {
		ports += "-" + render(m["ToPort"])
	}
	return fmt.Sprintf("%s port %s from %s", render(m["IpProtocol"]), ports, render(from))
}

// canon is a value's canonical JSON, for comparing.
func canon(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// render shows a template value briefly: strings bare, lists joined,
// intrinsic functions as compact JSON, all cut to a readable length.
func render(v any) string {
	var s string
	switch v := v.(type) {
	case nil:
		s = "*"
	case string:
		s = v
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = render(e)
		}
		s = strings.Join(parts, ", ")
	case map[string]any:
		if ref, ok := v["Ref"].(string); ok && len(v) == 1 {
			s = "${" + ref + "}"
		} else {
			s = canon(v)
		}
	default:
		s = canon(v)
	}
	const maxLen = 160
	if len(s) > maxLen {
		s = s[:maxLen-1] + "…"
	}
	return s
}
