// Package cdk holds cdk_stack: a TypeScript CDK app bundled by esbuild
// in-process and synthesized by node into a standard cloud assembly that
// `pipe deploy` and the CDK CLI both deploy.
//
// A target has two actions, three with typecheck = True:
//
//   - CdkBundle (in-process esbuild): app → dist/<pkg>/<name>/app.js, one
//     CommonJS file for node 20 with an inline source map. Every bare
//     import stays external and is resolved by node from node_modules at
//     synth, so the bundle depends only on the app's own files. esbuild's
//     metafile lists what it read; a file the target did not declare (srcs,
//     deps, the package's tsconfig.json and what it extends, package.json)
//     fails the action, since the key would not see its edits. The key holds
//     esbuild's version and the inputs; not node_modules.
//
//   - CdkSynth (in-process step that runs node): app.js → the cloud assembly
//     dist/<pkg>/<name>/cdk.out. node runs in the action's scratch
//     directory, which holds hard links of exactly the declared inputs at
//     their workspace paths (app.js, every file and directory deps provide,
//     cdk.json, cdk.context.json) and a node_modules link to the workspace's
//     node_modules: so Code.fromAsset('dist/packages/my-api/bundle') resolves
//     as from the workspace root, and an asset missing from deps fails the
//     synth ("Cannot find asset") instead of being read unkeyed and going
//     stale in the cache. The environment is what the CDK CLI gives an app:
//     CDK_OUTDIR, CDK_CONTEXT_JSON, CDK_DEFAULT_ACCOUNT/REGION from the
//     attributes, plus PATH (the workspace's action PATH), NODE_PATH, and a
//     private HOME and TMPDIR. Nothing else from the user's shell.
//
//   - CdkTypecheck: tsc --noEmit -p <pkg> over a staged copy of the code
//     inputs, in parallel with the synth.
//
// Context is merged as the CLI (aws-cdk 2.1148) does: cdk.context.json,
// then cdk.json's "context", then the target's context attribute (the
// CLI's -c), then the keys the CLI always sets: aws:cdk:enable-path-metadata,
// aws:cdk:enable-asset-metadata, aws:cdk:version-reporting (each switched off
// by cdk.json's pathMetadata/assetMetadata/versionReporting = false),
// aws:cdk:bundling-stacks (cdk.json's bundlingStacks, default ["**"]) and
// @aws-cdk/core:failSynthOnValidationErrors = false. cdk.json's
// "validation": false sets CDK_VALIDATION=false like the CLI's
// --no-validation.
//
// Account and region are never looked up: a build does not call AWS. With
// the attributes unset, CDK_DEFAULT_ACCOUNT/REGION are unset and stacks that
// read them are environment-agnostic, deployable to whatever account and
// region the deploying credentials name. Both are in the synth key.
//
// The synth key holds node's version (node --version, probed once and kept
// in .pipe/cdk/ while the binary's stat holds), aws-cdk-lib's and
// constructs' versions, a digest of the package manager's record of
// node_modules (.package-lock.json and the like) with the node_modules
// setting as written in WORKSPACE.star, the context attribute, account,
// region, stacks and action PATH, and the inputs. No absolute path enters a
// key, so a remote cache serves other checkouts.
//
// After node exits, the step does what the CLI does with an assembly: error
// annotations and missing context lookups fail the build, warnings are
// shown. The CDK records creation stack traces in the assembly's metadata;
// they are rewritten from the scratch directory's app.js to TypeScript
// positions, so the assembly is the same wherever it was made. A synth
// error shows node's stderr under the label with the same translation.
package cdk
