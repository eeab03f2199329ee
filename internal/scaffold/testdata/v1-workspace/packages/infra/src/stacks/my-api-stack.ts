import { Stack } from 'aws-cdk-lib';

import { MyApi } from '../../../common/constructs/src/app/apis/my-api';

/** The my-api API and its Lambda functions. */
export class MyApiStack extends Stack {
  // Callers sign their requests (SigV4): this.api.grantInvokeAccess(role)
  // lets a role call every operation.
  readonly api = new MyApi(this, 'MyApi', {
    integrations: MyApi.defaultIntegrations(this).build(),
  });
}
