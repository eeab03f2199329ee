import { Stack, StackProps } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { BillingApi, OrdersApi } from ':acme/common-constructs';

export class ApplicationStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    new OrdersApi(this, 'OrdersApi');
    new BillingApi(this, 'BillingApi');
  }
}
