import { Stack, StackProps } from 'aws-cdk-lib';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

export interface SharedStackProps extends StackProps {
  readonly stage: string;
}

// Independent of the API stacks: it deploys in parallel with them.
export class SharedStack extends Stack {
  constructor(scope: Construct, id: string, props: SharedStackProps) {
    super(scope, id, props);
    new ssm.StringParameter(this, 'Stage', {
      parameterName: `/shared/${props.stage}/stage`,
      stringValue: props.stage,
    });
  }
}
