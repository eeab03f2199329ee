"""Run moto's AWS server with the fixes pipe's deploys need: the four of
moto_server.py (beside this file, or the launcher given first) and five more.

usage: python3 tools/moto/serve.py [LAUNCHER] [-p PORT] [-H HOST]

Then point pipe (and any AWS SDK or CLI) at it:
  AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_ACCESS_KEY_ID=test
  AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
With PIPE_MOTO_EXIT_WITH_STDIN=1 the server exits when its standard input
closes, so a test process that dies never leaves a server behind.

moto 5.2.1 bugs fixed here, on top of the launcher's four:
5. A stack created or updated by executing a change set keeps the outputs of
   its previous template (none, for a new stack) and never registers its
   exports, and a CREATE change set cannot resolve Fn::ImportValue: the CDK's
   cross-stack references (stack B using an output of stack A) fail with
   "No export named ... found". CreateStack/UpdateStack do this right; the fix
   does for change sets what they do.
6. Executing a change set creates the added resources (and updates the
   modified ones) in template order, ignoring DependsOn: a CDK LambdaRestApi
   fails with "The REST API doesn't contain any methods", its
   AWS::ApiGateway::Deployment being created before the methods it depends
   on. CreateStack orders by DependsOn; the fix orders a change set's adds
   and modifies by DependsOn and by the resources their Ref, Fn::GetAtt and
   Fn::Sub name, dependencies first, template order otherwise.
7. AWS::ApiGateway::Stage is not a CloudFormation resource moto knows: it is
   skipped with a warning and its Ref is None, so the URL of every CDK
   RestApi (https://ID.execute-api.REGION.amazonaws.com/None/) is wrong and a
   stack importing it fails with "No export named ... found". And the Ref of
   an AWS::ApiGateway::Deployment is the Python object, not its id. The fix
   adds the Stage resource (Ref: the stage name; created, updated in place
   and deleted through the API Gateway backend) and makes a Deployment's Ref
   its id.
8. A Lambda function's layers must be layer versions moto holds, so a public
   layer of another account (the AWS Lambda Web Adapter's, which the CDK
   apps serving a python_bundle use) fails any update of the function
   through CloudFormation with "One or more LayerVersion does not exist";
   and creating the function through CloudFormation drops its Layers. The
   fix accepts another account's layer version ARN as AWS does (moto cannot
   hold it; CodeSize 0) and keeps Layers on creation.
9. An AWS::ApiGateway::Method whose integration is MOCK (the CORS preflight
   OPTIONS methods the CDK adds) has no IntegrationHttpMethod and no Uri, and
   moto's CloudFormation handler raises KeyError for them. The fix lets both
   be absent, as AWS does.
"""
import os
import re
import runpy
import sys
import threading

from moto.apigateway import models as apigateway
from moto.awslambda import models as awslambda
from moto.cloudformation import models, parsing
from moto.core.common_models import CloudFormationModel


def _watch_stdin():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


_create_change_set = models.CloudFormationBackend.create_change_set
_execute_change_set = models.CloudFormationBackend.execute_change_set


def create_change_set(self, *args, **kwargs):
    cs_id, stack_id = _create_change_set(self, *args, **kwargs)
    stack = self.stacks[stack_id]
    stack.cross_stack_resources = self.exports
    stack.resource_map.cross_stack_resources = self.exports
    return cs_id, stack_id


def execute_change_set(self, change_set_name, stack_name=None):
    _execute_change_set(self, change_set_name, stack_name)
    cs = self.change_sets.get(change_set_name)
    if cs is None:
        for c in self.change_sets.values():
            if c.change_set_name == change_set_name:
                cs = c
    stack = self.stacks[cs.stack_id]
    stack._parse_template()
    stack.output_map = stack._create_output_map()
    for name in [n for n, e in self.exports.items() if e.exporting_stack_id == stack.stack_id]:
        del self.exports[name]
    for export in stack.exports:
        self.exports[export.name] = export


_SUB_VAR = re.compile(r"\$\{([^!}][^}]*)\}")


def _references(node, out):
    """Adds to out the logical ids node's Ref, Fn::GetAtt and Fn::Sub name."""
    if isinstance(node, list):
        for v in node:
            _references(v, out)
        return
    if not isinstance(node, dict):
        return
    for key, v in node.items():
        if key == "Ref" and isinstance(v, str):
            out.add(v)
        elif key == "Fn::GetAtt" and isinstance(v, str):
            out.add(v.split(".", 1)[0])
        elif key == "Fn::GetAtt" and isinstance(v, list) and v and isinstance(v[0], str):
            out.add(v[0])
            _references(v[1:], out)
        elif key == "Fn::Sub":
            text, variables = v, {}
            if isinstance(v, list) and v:
                text = v[0]
                variables = v[1] if len(v) > 1 and isinstance(v[1], dict) else {}
                _references(variables, out)
            if isinstance(text, str):
                for m in _SUB_VAR.finditer(text):
                    name = m.group(1).strip().split(".", 1)[0]
                    if name not in variables:
                        out.add(name)
        else:
            _references(v, out)


def dependency_order(names, resources):
    """names (logical ids of resources, a dict of the template's Resources)
    ordered so that each comes after those of names it depends on: DependsOn,
    Ref, Fn::GetAtt, Fn::Sub. Otherwise the given order is kept; a cycle
    (which CloudFormation refuses) is broken where it is found."""
    done, visiting, order = set(), set(), []

    def deps(name):
        body = resources.get(name) or {}
        out = set()
        depends = body.get("DependsOn") or []
        out.update([depends] if isinstance(depends, str) else depends)
        for key, v in body.items():
            if key not in ("DependsOn", "Type", "Metadata"):
                _references(v, out)
        return [d for d in names if d in out and d != name]

    def visit(name):
        if name in done or name in visiting:
            return
        visiting.add(name)
        for d in deps(name):
            visit(d)
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in names:
        visit(name)
    return order


_apply = models.ChangeSet.apply


def apply(self):
    # ResourceMap.update creates the diff's adds, then updates its modifies,
    # each in list order: while this change set runs, its diff lists them in
    # dependency order.
    resource_map = self.stack.resource_map
    resources = (self.template_dict or {}).get("Resources") or {}
    build = type(resource_map).build_resource_diff

    def build_resource_diff(other_template, parameters=None):
        diff = build(resource_map, other_template, parameters)
        for action in ("Add", "Modify"):
            diff[action] = dependency_order(diff[action], resources)
        return diff

    resource_map.build_resource_diff = build_resource_diff
    try:
        _apply(self)
    finally:
        del resource_map.build_resource_diff


class ApiGatewayStage(CloudFormationModel):
    """AWS::ApiGateway::Stage, kept in the API Gateway backend's stages."""

    # moto's model metaclass files every model under the service its module
    # names.
    __module__ = "moto.apigateway.models"

    def __init__(self, account_id, region_name, api_id, name):
        self.account_id, self.region_name = account_id, region_name
        self.api_id, self.name = api_id, name

    @staticmethod
    def cloudformation_name_type():
        return "StageName"

    @staticmethod
    def cloudformation_type():
        return "AWS::ApiGateway::Stage"

    @property
    def physical_resource_id(self):
        return self.name

    @staticmethod
    def _backend(account_id, region_name):
        return apigateway.apigateway_backends[account_id][region_name]

    @staticmethod
    def _deployment_id(props):
        d = props.get("DeploymentId")
        return getattr(d, "id", d)

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        api_id, name = props["RestApiId"], props.get("StageName") or resource_name
        tags = {t["Key"]: t["Value"] for t in props.get("Tags") or []} or None
        cls._backend(account_id, region_name).create_stage(
            api_id,
            name,
            cls._deployment_id(props),
            variables=props.get("Variables"),
            description=props.get("Description", ""),
            cacheClusterEnabled=props.get("CacheClusterEnabled"),
            cacheClusterSize=props.get("CacheClusterSize"),
            tags=tags,
            tracing_enabled=props.get("TracingEnabled"),
        )
        return cls(account_id, region_name, api_id, name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json.get("Properties") or {}
        name = props.get("StageName") or original_resource.name
        if props.get("RestApiId") != original_resource.api_id or name != original_resource.name:
            original_resource.delete(account_id, region_name)
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
        stage = cls._backend(account_id, region_name).get_stage(original_resource.api_id, name)
        stage.deployment_id = cls._deployment_id(props)
        stage.variables = props.get("Variables") or {}
        stage.description = props.get("Description", "")
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json.get("Properties") or {}
        cls(account_id, region_name, props.get("RestApiId"), props.get("StageName") or resource_name).delete(account_id, region_name)

    def delete(self, account_id, region_name):
        try:
            self._backend(account_id, region_name).delete_stage(self.api_id, self.name)
        except Exception:  # the API, and its stages, went first
            pass

    def is_created(self):
        return True


apigateway.Deployment.physical_resource_id = property(lambda self: self.id)
for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    cached.cache_clear()

_get_layers_data = awslambda.LambdaFunction._get_layers_data
_create_function = awslambda.LambdaFunction.create_from_cloudformation_json.__func__


def get_layers_data(self, arns):
    out = []
    for arn in arns:
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) > 4 and parts[4] != self.account_id:
            out.append({"Arn": arn, "CodeSize": 0})
        else:
            out.extend(_get_layers_data(self, [arn]))
    return out


def create_function(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    fn = _create_function(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    layers = (cloudformation_json.get("Properties") or {}).get("Layers")
    if layers:
        fn.layers = fn._get_layers_data(layers)
    return fn


_create_method = apigateway.Method.create_from_cloudformation_json.__func__


def create_method(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    integration = (cloudformation_json.get("Properties") or {}).get("Integration")
    if isinstance(integration, dict):
        integration.setdefault("IntegrationHttpMethod", None)
        integration.setdefault("Uri", None)
    return _create_method(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


apigateway.Method.create_from_cloudformation_json = classmethod(create_method)

awslambda.LambdaFunction._get_layers_data = get_layers_data
awslambda.LambdaFunction.create_from_cloudformation_json = classmethod(create_function)

models.CloudFormationBackend.create_change_set = create_change_set
models.CloudFormationBackend.execute_change_set = execute_change_set
models.ChangeSet.apply = apply

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-"):
        launcher, args = args[0], args[1:]
    else:
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_server.py")
    if os.environ.get("PIPE_MOTO_EXIT_WITH_STDIN") == "1":
        threading.Thread(target=_watch_stdin, daemon=True).start()
    sys.argv = [launcher] + args
    runpy.run_path(launcher, run_name="__main__")
