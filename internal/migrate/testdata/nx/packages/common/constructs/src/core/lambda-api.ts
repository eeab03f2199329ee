import { CfnOutput } from 'aws-cdk-lib';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import type { Operation } from ':acme/common-types';

/**
 * An API whose operations each run the service's Lambda bundle, found
 * beside the sources at build time.
 */
export class LambdaApi extends Construct {
  constructor(scope: Construct, id: string, bundle: string, operations: Record<string, Operation>) {
    super(scope, id);
    const code = new s3assets.Asset(this, 'Code', { path: bundle });
    for (const [name, op] of Object.entries(operations)) {
      new CfnOutput(this, name, { value: `${op.method.toUpperCase()} ${op.path} -> ${code.s3ObjectKey}` });
    }
  }
}
