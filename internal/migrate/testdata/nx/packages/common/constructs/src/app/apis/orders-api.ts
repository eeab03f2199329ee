import * as url from 'url';
import { Construct } from 'constructs';
import { LambdaApi } from '../../core/lambda-api.js';
import { OPERATION_DETAILS } from '../../generated/orders-api/metadata.gen.js';

export class OrdersApi extends LambdaApi {
  constructor(scope: Construct, id: string) {
    super(
      scope,
      id,
      url.fileURLToPath(new URL('../../../../../../dist/packages/orders_api/bundle-x86', import.meta.url)),
      OPERATION_DETAILS,
    );
  }
}
