import { App } from ':acme/common-constructs';
import { ApplicationStage } from './stages/application-stage.js';

const app = new App();

// A sandbox of the application, in the account and region of the CLI.
new ApplicationStage(app, 'acme-infra-sandbox', {
  env: {
    account: process.env.CDK_DEFAULT_ACCOUNT,
    region: process.env.CDK_DEFAULT_REGION,
  },
});

app.synth();
