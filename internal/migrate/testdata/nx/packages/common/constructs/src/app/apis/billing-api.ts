import * as url from 'url';
import { Construct } from 'constructs';
import { LambdaApi } from '../../core/lambda-api.js';
import { OPERATION_DETAILS } from '../../generated/billing-api/metadata.gen.js';

export class BillingApi extends LambdaApi {
  constructor(scope: Construct, id: string) {
    super(
      scope,
      id,
      url.fileURLToPath(new URL('../../../../../../dist/packages/billing_api/bundle-arm', import.meta.url)),
      OPERATION_DETAILS,
    );
  }
}
