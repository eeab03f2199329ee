package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

// maxTemplateBody is CloudFormation's limit for a template passed inline;
// larger templates must be read from S3.
const maxTemplateBody = 51200

// deployed is what CloudFormation holds for a stack.
type deployed struct {
	exists   bool
	id       string
	status   string
	reason   string
	params   map[string]cfntypes.Parameter
	tags     map[string]string
	outputs  map[string]string
	termProt bool
	notifs   []string
	// template is the deployed template as submitted (TemplateStage
	// Original); nil when the stack does not exist.
	template []byte
}

// describe reads a stack's state and template. The two calls go out
// together: a no-change deploy is this round trip and nothing else.
func describe(ctx context.Context, rc *regionClients, name string) (*deployed, error) {
	var (
		wg     sync.WaitGroup
		tplOut *cloudformation.GetTemplateOutput
		tplErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tplOut, tplErr = rc.cfn.GetTemplate(ctx, &cloudformation.GetTemplateInput{
			StackName:     aws.String(name),
			TemplateStage: cfntypes.TemplateStageOriginal,
		})
	}()
	d, err := describeStack(ctx, rc, name)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if !d.exists || d.status == string(cfntypes.StackStatusReviewInProgress) {
		// A stack under review has no template yet (only change sets).
		return d, nil
	}
	if tplErr != nil {
		return nil, fmt.Errorf("stack %s: get deployed template: %w", name, brief(tplErr))
	}
	d.template = []byte(aws.ToString(tplOut.TemplateBody))
	return d, nil
}

// describeStack is DescribeStacks for one stack; a missing stack is not an
// error.
func describeStack(ctx context.Context, rc *regionClients, name string) (*deployed, error) {
	out, err := rc.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	if err != nil {
		if isNotExist(err) {
			return &deployed{}, nil
		}
		return nil, fmt.Errorf("stack %s: describe: %w", name, brief(err))
	}
	if len(out.Stacks) == 0 {
		return &deployed{}, nil
	}
	s := out.Stacks[0]
	d := &deployed{
		exists:   true,
		id:       aws.ToString(s.StackId),
		status:   string(s.StackStatus),
		reason:   aws.ToString(s.StackStatusReason),
		params:   map[string]cfntypes.Parameter{},
		tags:     map[string]string{},
		outputs:  map[string]string{},
		termProt: aws.ToBool(s.EnableTerminationProtection),
		notifs:   s.NotificationARNs,
	}
	for _, p := range s.Parameters {
		d.params[aws.ToString(p.ParameterKey)] = p
	}
	for _, t := range s.Tags {
		d.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	for _, o := range s.Outputs {
		d.outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return d, nil
}

// awsError shortens the SDK's error text ("operation error CloudFormation:
// ExecuteChangeSet, https response error StatusCode: 409, RequestID: …,
// api error Code: message") to the service's "Code: message"; the original
// stays reachable for errors.Is and errors.As.
type awsError struct {
	err error
	msg string
}

func (e *awsError) Error() string { return e.msg }
func (e *awsError) Unwrap() error { return e.err }

func brief(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return &awsError{err: err, msg: ae.ErrorCode() + ": " + ae.ErrorMessage()}
	}
	return err
}

func isNotExist(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" && strings.Contains(ae.ErrorMessage(), "does not exist")
}

func isChangeSetNotFound(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	c := ae.ErrorCode()
	return c == "ChangeSetNotFound" || c == "ChangeSetNotFoundException"
}

// Stable states a stack can be updated from. UPDATE_ROLLBACK_COMPLETE is
// among them: the failed update was undone and the old template is live.
var updatable = map[string]bool{
	"CREATE_COMPLETE":          true,
	"UPDATE_COMPLETE":          true,
	"UPDATE_ROLLBACK_COMPLETE": true,
	"IMPORT_COMPLETE":          true,
	"IMPORT_ROLLBACK_COMPLETE": true,
}

// canonicalJSON re-encodes JSON with sorted keys and no insignificant
// space, so a template compares equal whatever indentation wrote it.
func canonicalJSON(b []byte) ([]byte, bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return out, true
}

// templateParams is the Parameters section of a template, as far as
// deploying needs it.
type templateParam struct {
	Type        string `json:"Type"`
	Default     any    `json:"Default"`
	Description string `json:"Description"`
}

func parseTemplateParams(tpl []byte) (map[string]templateParam, error) {
	var t struct {
		Parameters map[string]templateParam `json:"Parameters"`
	}
	if err := json.Unmarshal(tpl, &t); err != nil {
		return nil, err
	}
	return t.Parameters, nil
}

// ssmNoInvalidate in a parameter's description tells deploy tools that a
// change of the SSM value behind it needs no deployment (the CDK marks its
// BootstrapVersion parameter so).
const ssmNoInvalidate = "[cdk:skip]"

// changes says why a stack must be deployed; empty means it is up to date.
// Without readSSM the values behind SSM-typed parameters are not read, and
// such parameters count as unchanged.
func changes(ctx context.Context, rc *regionClients, s *Stack, d *deployed, readSSM bool) ([]string, error) {
	if !d.exists {
		return []string{"new stack"}, nil
	}
	if !updatable[d.status] {
		return []string{"stack is " + d.status}, nil
	}
	var why []string
	want, ok1 := canonicalJSON(s.Template)
	got, ok2 := canonicalJSON(d.template)
	if !ok1 || !ok2 || !bytes.Equal(want, got) {
		why = append(why, "template differs")
	}
	pdiff, err := paramsDiffer(ctx, rc, s, d, readSSM)
	if err != nil {
		return nil, err
	}
	if pdiff != "" {
		why = append(why, pdiff)
	}
	if !sameMap(s.Tags, d.tags) {
		why = append(why, "tags differ")
	}
	if s.NotificationARNs != nil && !sameSet(s.NotificationARNs, d.notifs) {
		why = append(why, "notification ARNs differ")
	}
	if s.TerminationProtection != d.termProt {
		why = append(why, "termination protection differs")
	}
	return why, nil
}

// paramsDiffer compares the parameter values a deployment would pass with
// the deployed ones; it returns a reason, or "" when they match.
func paramsDiffer(ctx context.Context, rc *regionClients, s *Stack, d *deployed, readSSM bool) (string, error) {
	defs, err := parseTemplateParams(s.Template)
	if err != nil {
		return "", fmt.Errorf("stack %s: template: %w", s.Name(), err)
	}
	for name, def := range defs {
		cur, ok := d.params[name]
		want, given := s.Parameters[name]
		if !given {
			if def.Default == nil {
				if ok {
					continue // deploying keeps the previous value
				}
				return "parameter " + name + " is new", nil
			}
			want = defaultString(def.Default)
		}
		if !ok {
			return "parameter " + name + " is new", nil
		}
		ssmTyped := strings.HasPrefix(def.Type, "AWS::SSM::Parameter::Value")
		if ssmTyped && !readSSM {
			continue // what counts is the value behind it, not read
		}
		if aws.ToString(cur.ParameterValue) == want {
			// The value of an SSM-typed parameter is the parameter's name;
			// what counts is the value behind it, which may have moved.
			if !ssmTyped || strings.Contains(def.Description, ssmNoInvalidate) {
				continue
			}
			v, found, err := rc.ssmParam(ctx, want)
			if err != nil {
				return "", fmt.Errorf("stack %s: parameter %s: %w", s.Name(), name, err)
			}
			if !found || v != aws.ToString(cur.ResolvedValue) {
				return "parameter " + name + " resolves to a new value", nil
			}
			continue
		}
		// Emulators (moto) report an SSM-typed parameter's resolved value
		// as its value and no ResolvedValue; that is a match too.
		if ssmTyped && cur.ResolvedValue == nil {
			v, found, err := rc.ssmParam(ctx, want)
			if err != nil {
				return "", fmt.Errorf("stack %s: parameter %s: %w", s.Name(), name, err)
			}
			if found && v == aws.ToString(cur.ParameterValue) {
				continue
			}
		}
		return "parameter " + name + " differs", nil
	}
	for name := range d.params {
		if _, ok := defs[name]; !ok {
			return "parameter " + name + " is gone", nil
		}
	}
	return "", nil
}

func defaultString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = defaultString(e)
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sameSet(a, b []string) bool {
	x := append([]string(nil), a...)
	y := append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, "\n") == strings.Join(y, "\n")
}

// ssmValue is one SSM parameter's value, read at most once per run.
type ssmValue struct {
	once  sync.Once
	value string
	found bool
	err   error
}

// ssmParam reads an SSM parameter once per run and region; found is false
// when it does not exist.
func (rc *regionClients) ssmParam(ctx context.Context, name string) (value string, found bool, err error) {
	v, _ := rc.ssmValues.LoadOrStore(name, &ssmValue{})
	sv := v.(*ssmValue)
	sv.once.Do(func() {
		out, err := rc.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		if err != nil {
			var nf *ssmtypes.ParameterNotFound
			if !errors.As(err, &nf) {
				sv.err = fmt.Errorf("read SSM parameter %s: %w", name, brief(err))
			}
			return
		}
		sv.value, sv.found = aws.ToString(out.Parameter.Value), true
	})
	return sv.value, sv.found, sv.err
}

// checkBootstrap makes sure the environment was bootstrapped recently
// enough for the stack: its assets go to the bootstrap bucket and its
// template checks the version itself, so deploying anyway would only fail
// later and less clearly.
func checkBootstrap(ctx context.Context, se *stackEnv, s *Stack) error {
	if s.RequiresBootstrap == 0 {
		return nil
	}
	param := s.BootstrapParam
	if param == "" {
		param = DefaultBootstrapParam
	}
	env := fmt.Sprintf("aws://%s/%s", se.account, se.region)
	v, found, err := se.ssmParam(ctx, param)
	if err != nil {
		return fmt.Errorf("stack %s: bootstrap version: %w", s.Name(), err)
	}
	if !found {
		return fmt.Errorf("stack %s: environment %s is not bootstrapped (SSM parameter %s does not exist): run `cdk bootstrap %s` first", s.Name(), env, param, env)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("stack %s: the bootstrap version in SSM %s is %q, not a number: run `cdk bootstrap %s` again", s.Name(), param, v, env)
	}
	if n < s.RequiresBootstrap {
		return fmt.Errorf("stack %s needs bootstrap version %d or later, but %s has version %d: run `cdk bootstrap %s` to upgrade it", s.Name(), s.RequiresBootstrap, env, n, env)
	}
	return nil
}

// changeSet is a created change set and what it would do.
type changeSet struct {
	name    string
	id      string
	stackID string
	empty   bool
	changes []cfntypes.ResourceChange
}

// createChangeSet creates a change set for the stack and waits until
// CloudFormation has computed it. An empty one is deleted and reported
// with empty set.
func createChangeSet(ctx context.Context, se *stackEnv, s *Stack, d *deployed, templateURL string, name string) (*changeSet, error) {
	in := &cloudformation.CreateChangeSetInput{
		StackName:     aws.String(s.StackName),
		ChangeSetName: aws.String(name),
		ChangeSetType: cfntypes.ChangeSetTypeUpdate,
		Description:   aws.String("pipe deploy"),
		Capabilities: []cfntypes.Capability{
			cfntypes.CapabilityCapabilityIam,
			cfntypes.CapabilityCapabilityNamedIam,
			cfntypes.CapabilityCapabilityAutoExpand,
		},
		NotificationARNs: s.NotificationARNs,
	}
	if !d.exists || d.status == string(cfntypes.StackStatusReviewInProgress) {
		in.ChangeSetType = cfntypes.ChangeSetTypeCreate
	}
	if templateURL != "" {
		in.TemplateURL = aws.String(templateURL)
	} else {
		in.TemplateBody = aws.String(string(s.Template))
	}
	if s.ExecRoleARN != "" {
		in.RoleARN = aws.String(se.resolve(s.ExecRoleARN))
	}
	defs, err := parseTemplateParams(s.Template)
	if err != nil {
		return nil, fmt.Errorf("stack %s: template: %w", s.Name(), err)
	}
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if v, ok := s.Parameters[n]; ok {
			in.Parameters = append(in.Parameters, cfntypes.Parameter{ParameterKey: aws.String(n), ParameterValue: aws.String(v)})
		} else if _, had := d.params[n]; had && defs[n].Default == nil && in.ChangeSetType == cfntypes.ChangeSetTypeUpdate {
			in.Parameters = append(in.Parameters, cfntypes.Parameter{ParameterKey: aws.String(n), UsePreviousValue: aws.Bool(true)})
		}
	}
	tagKeys := make([]string, 0, len(s.Tags))
	for k := range s.Tags {
		tagKeys = append(tagKeys, k)
	}
	sort.Strings(tagKeys)
	for _, k := range tagKeys {
		in.Tags = append(in.Tags, cfntypes.Tag{Key: aws.String(k), Value: aws.String(s.Tags[k])})
	}
	out, err := se.cfn.CreateChangeSet(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("stack %s: create change set: %w", s.Name(), brief(err))
	}
	cs := &changeSet{name: name, id: aws.ToString(out.Id), stackID: aws.ToString(out.StackId)}
	poll := newPoller()
	for {
		var desc []*cloudformation.DescribeChangeSetOutput
		var token *string
		for {
			o, err := se.cfn.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{
				StackName:     aws.String(s.StackName),
				ChangeSetName: aws.String(cs.id),
				NextToken:     token,
			})
			if err != nil {
				return cs, fmt.Errorf("stack %s: describe change set: %w", s.Name(), brief(err))
			}
			desc = append(desc, o)
			if o.Status != cfntypes.ChangeSetStatusCreateComplete || o.NextToken == nil {
				break
			}
			token = o.NextToken
		}
		first := desc[0]
		switch first.Status {
		case cfntypes.ChangeSetStatusCreateComplete:
			for _, o := range desc {
				for _, c := range o.Changes {
					if c.ResourceChange != nil {
						cs.changes = append(cs.changes, *c.ResourceChange)
					}
				}
			}
			return cs, nil
		case cfntypes.ChangeSetStatusFailed:
			reason := aws.ToString(first.StatusReason)
			if strings.Contains(reason, "didn't contain changes") || strings.Contains(reason, "No updates are to be performed") {
				cs.empty = true
				return cs, nil
			}
			return cs, fmt.Errorf("stack %s: change set failed: %s", s.Name(), reason)
		}
		if err := poll.wait(ctx); err != nil {
			return cs, err
		}
	}
}

// deleteChangeSet removes a change set that will not be executed. It runs
// on its own deadline: it is cleanup, also after Ctrl-C.
func deleteChangeSet(ctx context.Context, se *stackEnv, s *Stack, cs *changeSet) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	id := cs.id
	if id == "" {
		id = cs.name
	}
	_, err := se.cfn.DeleteChangeSet(ctx, &cloudformation.DeleteChangeSetInput{StackName: aws.String(s.StackName), ChangeSetName: aws.String(id)})
	if err != nil && !isChangeSetNotFound(err) {
		return fmt.Errorf("stack %s: delete change set %s: %w", s.Name(), cs.name, brief(err))
	}
	return nil
}

// poller spaces out polls: quick at first (emulators and small updates
// finish in milliseconds), then backing off to spare the API's rate limit
// on long deployments.
type poller struct {
	d time.Duration
	// limit is the longest interval; 3 s when zero.
	limit time.Duration
}

func newPoller() *poller { return &poller{d: 20 * time.Millisecond} }

func (p *poller) wait(ctx context.Context) error {
	t := time.NewTimer(p.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	p.advance()
	return nil
}

// advance doubles the interval up to the limit.
func (p *poller) advance() {
	limit := p.limit
	if limit == 0 {
		limit = 3 * time.Second
	}
	p.d = min(p.d*2, limit)
}

// terminal reports whether a stack status is final, and whether it is a
// success.
func terminal(status string) (final, ok bool) {
	switch status {
	case "CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE":
		return true, true
	}
	if strings.HasSuffix(status, "_IN_PROGRESS") {
		return false, false
	}
	return true, false
}

// execution is what watching an executed change set saw.
type execution struct {
	final    *deployed
	failures []cfntypes.StackEvent
}

// execute runs the change set and streams the stack's events until it
// reaches a final state.
func execute(ctx context.Context, se *stackEnv, s *Stack, cs *changeSet, emit func(*StackEvent)) (*execution, error) {
	// Events already there belong to earlier operations; the slack on the
	// start time allows for the server's clock differing from ours.
	start := time.Now().Add(-5 * time.Minute)
	seen := map[string]bool{}
	stackID := cs.stackID
	if stackID == "" {
		stackID = s.StackName
	}
	if err := seedEvents(ctx, se, stackID, seen); err != nil {
		return nil, err
	}
	// The call itself is not cancelled: after Ctrl-C pipe must know
	// whether the change set started executing.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	_, err := se.cfn.ExecuteChangeSet(ectx, &cloudformation.ExecuteChangeSetInput{
		StackName:     aws.String(s.StackName),
		ChangeSetName: aws.String(cs.id),
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("stack %s: execute change set: %w", s.Name(), brief(err))
	}
	ex := &execution{}
	poll := newPoller()
	for {
		d, err := describeStack(ctx, se.regionClients, stackID)
		if err != nil {
			return ex, err
		}
		evs, err := newEvents(ctx, se, stackID, start, seen)
		if err != nil {
			return ex, err
		}
		for _, e := range evs {
			re := &ResourceEvent{
				Status:    string(e.ResourceStatus),
				Type:      aws.ToString(e.ResourceType),
				LogicalID: aws.ToString(e.LogicalResourceId),
				Reason:    aws.ToString(e.ResourceStatusReason),
			}
			emit(&StackEvent{Kind: EventResource, Resource: re})
			if re.Failed() && re.Reason != "" {
				ex.failures = append(ex.failures, e)
			}
		}
		if final, _ := terminal(d.status); final && d.exists {
			ex.final = d
			return ex, nil
		}
		if err := poll.wait(ctx); err != nil {
			return ex, err
		}
	}
}

// newEvents returns the stack's events since start not seen before, oldest
// first. DescribeStackEvents lists newest first, so paging stops at the
// first event already seen or older than start.
func newEvents(ctx context.Context, se *stackEnv, stack string, start time.Time, seen map[string]bool) ([]cfntypes.StackEvent, error) {
	var out []cfntypes.StackEvent
	var token *string
	for {
		o, err := se.cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack), NextToken: token})
		if err != nil {
			return nil, fmt.Errorf("stack %s: events: %w", stack, brief(err))
		}
		stop := false
		for _, e := range o.StackEvents {
			id := aws.ToString(e.EventId)
			if seen[id] || (e.Timestamp != nil && e.Timestamp.Before(start)) {
				stop = true
				break
			}
			seen[id] = true
			out = append(out, e)
		}
		if stop || o.NextToken == nil {
			break
		}
		token = o.NextToken
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// seedEvents marks the newest page of a stack's events as seen.
func seedEvents(ctx context.Context, se *stackEnv, stack string, seen map[string]bool) error {
	o, err := se.cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)})
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("stack %s: events: %w", stack, brief(err))
	}
	for _, e := range o.StackEvents {
		seen[aws.ToString(e.EventId)] = true
	}
	return nil
}

// waitStable waits for a stack busy with another operation to settle.
func waitStable(ctx context.Context, rc *regionClients, s *Stack, emit func(*StackEvent)) (*deployed, error) {
	poll := newPoller()
	said := false
	for {
		d, err := describeStack(ctx, rc, s.StackName)
		if err != nil {
			return nil, err
		}
		if !d.exists || !strings.HasSuffix(d.status, "_IN_PROGRESS") || d.status == string(cfntypes.StackStatusReviewInProgress) {
			return d, nil
		}
		if !said {
			emit(&StackEvent{Kind: EventWaiting, StackStatus: d.status})
			said = true
		}
		if err := poll.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// deleteFailedCreation removes a stack whose creation failed
// (ROLLBACK_COMPLETE): CloudFormation cannot update it, only replace it.
func deleteFailedCreation(ctx context.Context, rc *regionClients, s *Stack, status string, emit func(*StackEvent)) error {
	emit(&StackEvent{Kind: EventRecreating, StackStatus: status})
	if _, err := rc.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(s.StackName)}); err != nil {
		return fmt.Errorf("stack %s: delete failed stack: %w", s.Name(), brief(err))
	}
	poll := newPoller()
	for {
		d, err := describeStack(ctx, rc, s.StackName)
		if err != nil {
			return err
		}
		if !d.exists || d.status == "DELETE_COMPLETE" {
			return nil
		}
		if d.status == "DELETE_FAILED" {
			return fmt.Errorf("stack %s: delete failed stack: DELETE_FAILED: %s", s.Name(), d.reason)
		}
		if err := poll.wait(ctx); err != nil {
			return err
		}
	}
}

// updateTerminationProtection is the one stack setting a change set does
// not carry.
func updateTerminationProtection(ctx context.Context, rc *regionClients, s *Stack) error {
	_, err := rc.cfn.UpdateTerminationProtection(ctx, &cloudformation.UpdateTerminationProtectionInput{
		StackName:                   aws.String(s.StackName),
		EnableTerminationProtection: aws.Bool(s.TerminationProtection),
	})
	if err != nil {
		return fmt.Errorf("stack %s: update termination protection: %w", s.Name(), brief(err))
	}
	return nil
}
