import { Stack, StackProps } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface MyApiMonitoringStackProps extends StackProps {
  readonly stage: string;
  readonly api: apigateway.RestApi;
}

// Depends on MyApiStack through the API's URL (a cross-stack reference), so
// it deploys after it.
export class MyApiMonitoringStack extends Stack {
  constructor(scope: Construct, id: string, props: MyApiMonitoringStackProps) {
    super(scope, id, props);
    new ssm.StringParameter(this, 'ApiUrl', {
      parameterName: `/my-api/${props.stage}/url`,
      stringValue: props.api.url,
      description: 'Where health checks and clients find my-api',
    });
  }
}
