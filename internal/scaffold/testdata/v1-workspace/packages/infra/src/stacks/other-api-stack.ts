import { Stack } from 'aws-cdk-lib';
import { UserPool } from 'aws-cdk-lib/aws-cognito';

import { OtherApi } from '../../../common/constructs/src/app/apis/other-api';

/** The other-api API and its Lambda functions. */
export class OtherApiStack extends Stack {
  /** Who may call the API: users of this pool, with their ID tokens. */
  readonly userPool = new UserPool(this, 'UserPool');

  readonly api = new OtherApi(this, 'OtherApi', {
    integrations: OtherApi.defaultIntegrations(this).build(),
    userPool: this.userPool,
    userPoolClients: [this.userPool.addClient('Client')],
  });
}
