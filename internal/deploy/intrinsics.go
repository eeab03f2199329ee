package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// evaluator computes the values of template expressions the way
// CloudFormation would for a deployed stack, as far as a hotswap needs:
// literals, Ref (pseudo parameters, parameters, resources), Fn::Join,
// Fn::Sub, Fn::Select, Fn::Split and Fn::GetAtt of the attributes whose
// value follows from the physical ID. Anything else (Fn::ImportValue,
// Fn::If, Fn::GetAtt of other attributes) is an error: pipe does not
// guess what only CloudFormation knows.
type evaluator struct {
	account, region, partition string
	stackName, stackID         string
	// params are the stack's parameter values; physical and types are
	// the deployed resources' physical IDs and types by logical ID.
	params   map[string]string
	physical map[string]string
	types    map[string]string
	// override replaces the value of Ref to a logical ID (a layer version
	// about to be published has no ARN yet: a placeholder stands for it).
	override map[string]string
}

// errNoValue is Ref AWS::NoValue: the property is absent.
var errNoValue = fmt.Errorf("AWS::NoValue")

func (e *evaluator) str(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case map[string]any:
		if len(v) != 1 {
			return "", fmt.Errorf("an object where a value was expected")
		}
		for fn, arg := range v {
			return e.intrinsic(fn, arg)
		}
	case nil:
		return "", fmt.Errorf("null")
	}
	return "", fmt.Errorf("a list where a value was expected")
}

// list evaluates a list value: a literal list (each element a value) or an
// expression that yields one (Fn::Split).
func (e *evaluator) list(v any) ([]string, error) {
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, err := e.str(x)
			if err == errNoValue {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case map[string]any:
		if arg, ok := v["Fn::Split"]; ok && len(v) == 1 {
			return e.split(arg)
		}
	}
	return nil, fmt.Errorf("%s is not a list pipe can evaluate", short(v))
}

func (e *evaluator) intrinsic(fn string, arg any) (string, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return "", fmt.Errorf("Ref of a non-string")
		}
		return e.ref(name)
	case "Fn::Join":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return "", fmt.Errorf("Fn::Join wants [separator, list]")
		}
		sep, ok := a[0].(string)
		if !ok {
			return "", fmt.Errorf("Fn::Join separator is not a string")
		}
		parts, err := e.list(a[1])
		if err != nil {
			return "", err
		}
		return strings.Join(parts, sep), nil
	case "Fn::Sub":
		return e.sub(arg)
	case "Fn::Select":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return "", fmt.Errorf("Fn::Select wants [index, list]")
		}
		is, err := e.str(a[0])
		if err != nil {
			return "", err
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return "", fmt.Errorf("Fn::Select index %q", is)
		}
		items, err := e.list(a[1])
		if err != nil {
			return "", err
		}
		if i < 0 || i >= len(items) {
			return "", fmt.Errorf("Fn::Select index %d out of range", i)
		}
		return items[i], nil
	case "Fn::GetAtt":
		var res, attr string
		switch a := arg.(type) {
		case []any:
			if len(a) == 2 {
				res, _ = a[0].(string)
				attr, _ = a[1].(string)
			}
		case string:
			res, attr, _ = strings.Cut(a, ".")
		}
		if res == "" || attr == "" {
			return "", fmt.Errorf("Fn::GetAtt wants [resource, attribute]")
		}
		return e.getAtt(res, attr)
	}
	return "", fmt.Errorf("%s cannot be evaluated without CloudFormation", fn)
}

func (e *evaluator) split(arg any) ([]string, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 2 {
		return nil, fmt.Errorf("Fn::Split wants [separator, string]")
	}
	sep, ok := a[0].(string)
	if !ok {
		return nil, fmt.Errorf("Fn::Split separator is not a string")
	}
	s, err := e.str(a[1])
	if err != nil {
		return nil, err
	}
	return strings.Split(s, sep), nil
}

func (e *evaluator) ref(name string) (string, error) {
	if v, ok := e.override[name]; ok {
		return v, nil
	}
	switch name {
	case "AWS::AccountId":
		return e.account, nil
	case "AWS::Region":
		return e.region, nil
	case "AWS::Partition":
		return e.partition, nil
	case "AWS::URLSuffix":
		return urlSuffix(e.partition), nil
	case "AWS::StackName":
		return e.stackName, nil
	case "AWS::StackId":
		if e.stackID == "" {
			return "", fmt.Errorf("Ref AWS::StackId: the stack's id is not known")
		}
		return e.stackID, nil
	case "AWS::NoValue":
		return "", errNoValue
	}
	if v, ok := e.params[name]; ok {
		return v, nil
	}
	if v, ok := e.physical[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("Ref %s: no such parameter or deployed resource", name)
}

// getAtt evaluates the attributes that follow from a resource's physical
// ID.
func (e *evaluator) getAtt(res, attr string) (string, error) {
	id, ok := e.physical[res]
	if !ok {
		return "", fmt.Errorf("Fn::GetAtt %s.%s: %s is not a deployed resource", res, attr, res)
	}
	arn := func(service, resource string) string {
		return fmt.Sprintf("arn:%s:%s:%s:%s:%s", e.partition, service, e.region, e.account, resource)
	}
	switch typ := e.types[res]; {
	case typ == "AWS::Lambda::Function" && attr == "Arn":
		return arn("lambda", "function:"+id), nil
	case typ == "AWS::Lambda::Version" && attr == "Version":
		// A version's physical ID is its ARN, ending in the number.
		return id[strings.LastIndex(id, ":")+1:], nil
	case typ == "AWS::Lambda::LayerVersion" && attr == "LayerVersionArn":
		return id, nil
	case typ == "AWS::S3::Bucket" && attr == "Arn":
		return fmt.Sprintf("arn:%s:s3:::%s", e.partition, id), nil
	case typ == "AWS::DynamoDB::Table" && attr == "Arn":
		return arn("dynamodb", "table/"+id), nil
	case typ == "AWS::SQS::Queue" && attr == "Arn":
		return arn("sqs", id[strings.LastIndex(id, "/")+1:]), nil
	case typ == "AWS::SQS::Queue" && attr == "QueueName":
		return id[strings.LastIndex(id, "/")+1:], nil
	case typ == "AWS::SNS::Topic" && attr == "TopicArn":
		return id, nil
	}
	return "", fmt.Errorf("Fn::GetAtt %s.%s cannot be evaluated without CloudFormation", res, attr)
}

var subVarRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\$\{([^}!][^}]*)\}`) })

func (e *evaluator) sub(arg any) (string, error) {
	var tpl string
	vars := map[string]string{}
	switch a := arg.(type) {
	case string:
		tpl = a
	case []any:
		if len(a) != 2 {
			return "", fmt.Errorf("Fn::Sub wants a string or [string, variables]")
		}
		s, ok := a[0].(string)
		m, ok2 := a[1].(map[string]any)
		if !ok || !ok2 {
			return "", fmt.Errorf("Fn::Sub wants a string or [string, variables]")
		}
		tpl = s
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, err := e.str(m[k])
			if err != nil {
				return "", fmt.Errorf("Fn::Sub variable %s: %w", k, err)
			}
			vars[k] = v
		}
	default:
		return "", fmt.Errorf("Fn::Sub wants a string or [string, variables]")
	}
	var firstErr error
	out := subVarRE().ReplaceAllStringFunc(tpl, func(m string) string {
		name := m[2 : len(m)-1]
		if v, ok := vars[name]; ok {
			return v
		}
		var v string
		var err error
		if res, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
			v, err = e.getAtt(res, attr)
		} else {
			v, err = e.ref(name)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	})
	if firstErr != nil {
		return "", firstErr
	}
	// ${!Literal} stands for ${Literal}.
	return strings.ReplaceAll(out, "${!", "${"), nil
}
