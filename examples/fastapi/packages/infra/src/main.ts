// The example's CDK app. pipe bundles this file with esbuild and runs it
// with node from the workspace root, so asset paths below are relative to
// the root, where `pipe build` leaves its outputs (dist/...).
import { App } from 'aws-cdk-lib';

import { MyApiStack } from './stacks/api-stack';
import { MyApiMonitoringStack } from './stacks/monitoring-stack';
import { SharedStack } from './stacks/shared-stack';

const app = new App();

// Set by `cdk_stack(account = ..., region = ...)`; left unset, the stacks
// are environment-agnostic and deploy to whichever account and region the
// deploying credentials name.
const env = {
  account: process.env.CDK_DEFAULT_ACCOUNT,
  region: process.env.CDK_DEFAULT_REGION,
};
const stage: string = app.node.tryGetContext('stage') ?? 'dev';

const api = new MyApiStack(app, 'MyApiStack', {
  env,
  stage,
  bundleDir: 'dist/packages/my-api/bundle',
});
new MyApiMonitoringStack(app, 'MyApiMonitoringStack', { env, stage, api: api.api });
new SharedStack(app, 'SharedStack', { env, stage });
