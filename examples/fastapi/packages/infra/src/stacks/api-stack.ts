import { Duration, Stack, StackProps, CfnOutput } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

import { OPERATION_DETAILS } from '../../../common/constructs/src/generated/my-api/metadata.gen';

// The AWS Lambda Web Adapter runs uvicorn (started by the bundle's run.sh)
// and turns Lambda invocations into HTTP requests on PORT.
const WEB_ADAPTER_ACCOUNT = '753240598075';
const WEB_ADAPTER_LAYER = 'LambdaAdapterLayerX86:25';

type Operation = { readonly path: string; readonly method: string; readonly streaming?: boolean };
const operations: Record<string, Operation> = OPERATION_DETAILS;

export interface MyApiStackProps extends StackProps {
  readonly stage: string;
  /** The python_bundle output directory, relative to the workspace root. */
  readonly bundleDir: string;
}

export class MyApiStack extends Stack {
  readonly api: apigateway.RestApi;

  constructor(scope: Construct, id: string, props: MyApiStackProps) {
    super(scope, id, props);

    // One streaming operation makes the whole function stream: the adapter's
    // invoke mode is per function, not per route.
    const streaming = Object.values(operations).some((op) => op.streaming === true);

    const handler = new lambda.Function(this, 'Handler', {
      runtime: lambda.Runtime.PYTHON_3_14,
      architecture: lambda.Architecture.X86_64,
      code: lambda.Code.fromAsset(props.bundleDir),
      handler: 'run.sh',
      memorySize: 512,
      timeout: Duration.seconds(30),
      layers: [
        lambda.LayerVersion.fromLayerVersionArn(
          this,
          'WebAdapter',
          `arn:aws:lambda:${this.region}:${WEB_ADAPTER_ACCOUNT}:layer:${WEB_ADAPTER_LAYER}`,
        ),
      ],
      environment: {
        AWS_LAMBDA_EXEC_WRAPPER: '/opt/bootstrap',
        PORT: '8000',
        AWS_LWA_INVOKE_MODE: streaming ? 'response_stream' : 'buffered',
        STAGE: props.stage,
      },
    });

    // Only the operations the OpenAPI spec declares are routed: the table is
    // generated from it, so a route removed from the app disappears here too.
    this.api = new apigateway.LambdaRestApi(this, 'Api', {
      handler,
      proxy: false,
      deployOptions: { stageName: props.stage },
    });
    const integration = new apigateway.LambdaIntegration(handler, {
      responseTransferMode: streaming
        ? apigateway.ResponseTransferMode.STREAM
        : apigateway.ResponseTransferMode.BUFFERED,
    });
    const routes = new Map<string, Set<string>>();
    for (const op of Object.values(operations)) {
      const methods = routes.get(op.path) ?? new Set<string>();
      methods.add(op.method);
      routes.set(op.path, methods);
    }
    for (const [path, methods] of [...routes].sort(([a], [b]) => a.localeCompare(b))) {
      const resource = this.api.root.resourceForPath(path);
      for (const method of [...methods].sort()) {
        resource.addMethod(method, integration);
      }
    }

    new CfnOutput(this, 'ApiUrl', { value: this.api.url });
  }
}
