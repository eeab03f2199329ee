import { App as CdkApp, AppProps } from 'aws-cdk-lib';

/** The CDK app every stage of the workspace belongs to. */
export class App extends CdkApp {
  constructor(props?: AppProps) {
    super(props);
  }
}
