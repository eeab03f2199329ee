// The CDK app of this workspace: pipe bundles it with esbuild and
// synthesizes it from the workspace root (cdk_stack in BUILD.star).
// `pipe new fastapi` adds a stack for each service it generates.
import { App } from 'aws-cdk-lib';

import { MyApiStack } from './stacks/my-api-stack';
import { OtherApiStack } from './stacks/other-api-stack';

const app = new App();

// Unset, the stacks are environment-agnostic: they deploy to the account
// and region of the credentials that deploy them.
const env = {
  account: process.env.CDK_DEFAULT_ACCOUNT,
  region: process.env.CDK_DEFAULT_REGION,
};

new MyApiStack(app, 'MyApiStack', { env });
new OtherApiStack(app, 'OtherApiStack', { env });
