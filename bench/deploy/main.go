// Command deploy times a no-change `pipe deploy` of 5 stacks against moto,
// and the real CDK CLI's `cdk deploy --all` of the same cloud assembly
// against the same moto when one is given.
//
//	go run ./bench/deploy -pipe PIPE [-cdk node_modules/.bin/cdk] [-runs 11]
//
// The assembly is the one the CDK synthesizes for five stacks: an API
// stack (a Lambda from a directory asset, its IAM role, a file asset), a
// stack importing one of its outputs, and three independent ones. It is
// deployed once, then every timed run must find all five unchanged; pipe's
// runs must make zero write calls (counted by a proxy in front of moto).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/bench/internal/timing"

	"github.com/pipebuild/pipe/internal/testenv"
)

func main() {
	pipe := flag.String("pipe", "", "pipe binary (with the deploy command)")
	cdk := flag.String("cdk", os.Getenv("PIPE_CDK_CLI"), "the CDK CLI (aws-cdk@2.1148.1's bin/cdk); empty: pipe only")
	runs := flag.Int("runs", 11, "timed runs of each")
	flag.Parse()
	if err := run(*pipe, *cdk, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench deploy:", err)
		os.Exit(1)
	}
}

func run(pipe, cdk string, runs int) error {
	if pipe == "" {
		return fmt.Errorf("-pipe is required")
	}
	if err := testenv.MotoAvailable(); err != nil {
		return err
	}
	srv, err := testenv.StartMoto()
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Bootstrap(testenv.Region); err != nil {
		return err
	}
	proxy, err := testenv.NewCountingProxy(srv.URL)
	if err != nil {
		return err
	}
	defer proxy.Close()
	work, err := os.MkdirTemp("", "pipe-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	app := filepath.Join(work, "cdk.out")
	if err := writeAssembly(app); err != nil {
		return err
	}
	env := append(os.Environ(), testenv.AWSEnv(proxy.URL)...)
	// The CDK CLI hands CloudFormation template URLs on this endpoint.
	env = append(env, "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION="+strings.Replace(proxy.URL, "127.0.0.1", "localhost", 1),
		"CDK_DISABLE_VERSION_CHECK=1", "CDK_DISABLE_CLI_TELEMETRY=1")

	pipeArgs := []string{"deploy", "--app", app}
	if out, err := timing.Command(work, env, pipe, append(pipeArgs, "--require-approval", "never")...); err != nil {
		return fmt.Errorf("first deploy: %v\n%s", err, out)
	}
	fmt.Printf("machine: %s\n", timing.Machine())
	pipeTimes, err := timing.Runs(runs, func() error {
		proxy.Reset()
		out, err := timing.Command(work, env, pipe, pipeArgs...)
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if n := strings.Count(out, "(no changes)"); n != 5 {
			return fmt.Errorf("want 5 stacks unchanged, got %d:\n%s", n, out)
		}
		if w := proxy.Writes(); len(w) > 0 {
			return fmt.Errorf("a no-change deploy made write calls: %v", w)
		}
		return nil
	})
	if err != nil {
		return err
	}
	reads := len(proxy.Calls())
	fmt.Printf("%s: %s\n", "pipe deploy, 5 stacks unchanged", timing.Stats(pipeTimes))
	fmt.Printf("  AWS calls per run: %d reads, 0 writes\n", reads)
	if cdk == "" {
		fmt.Println("cdk: no CDK CLI given (-cdk or PIPE_CDK_CLI); comparison skipped")
		return nil
	}
	cdkArgs := []string{"deploy", "--all", "--app", app, "--require-approval", "never", "--no-notices", "--ci"}
	var cdkWrites []string
	cdkTimes, err := timing.Runs(max(runs/2, 3), func() error {
		proxy.Reset()
		out, err := timing.Command(work, env, cdk, cdkArgs...)
		if err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if n := strings.Count(out, "(no changes)"); n != 5 {
			return fmt.Errorf("cdk: want 5 stacks unchanged, got %d:\n%s", n, out)
		}
		cdkWrites = nil
		for _, c := range proxy.Writes() {
			cdkWrites = append(cdkWrites, c.String())
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s\n", "cdk deploy --all --app cdk.out, same assembly, same moto", timing.Stats(cdkTimes))
	fmt.Printf("  AWS calls per run: %d, of which %d writes: %s\n", len(proxy.Calls()), len(cdkWrites), strings.Join(cdkWrites, "; "))
	fmt.Printf("ratio (median): cdk / pipe = %.1f×\n", float64(timing.Median(cdkTimes))/float64(timing.Median(pipeTimes)))
	return nil
}

// writeAssembly writes a cloud assembly laid out as the CDK's default
// synthesizer writes one (schema 55.0.0).
func writeAssembly(dir string) error {
	codeDir := "asset.code"
	files := map[string]string{
		codeDir + "/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
		codeDir + "/run.sh":  "#!/bin/sh\nexec python -m uvicorn main:app --port ${PORT:-8000}\n",
		"asset.data.json":    "{\"a\": 1}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			return err
		}
	}
	codeHash := hash(files[codeDir+"/main.py"] + files[codeDir+"/run.sh"])
	dataHash := hash(files["asset.data.json"])
	if err := os.Rename(filepath.Join(dir, codeDir), filepath.Join(dir, "asset."+codeHash)); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "asset.data.json"), filepath.Join(dir, "asset."+dataHash+".json")); err != nil {
		return err
	}
	artifacts := map[string]any{}
	param := func(name, value any) map[string]any {
		return map[string]any{"Type": "AWS::SSM::Parameter", "Properties": map[string]any{"Type": "String", "Name": name, "Value": value}}
	}
	api := map[string]any{
		"Role": map[string]any{"Type": "AWS::IAM::Role", "Properties": map[string]any{
			"AssumeRolePolicyDocument": map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": map[string]any{"Service": "lambda.amazonaws.com"}}}},
		}},
		"Fn": map[string]any{"Type": "AWS::Lambda::Function", "Properties": map[string]any{
			"Code":    map[string]any{"S3Bucket": map[string]any{"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": codeHash + ".zip"},
			"Handler": "run.sh", "Runtime": "python3.12",
			"Role":        map[string]any{"Fn::GetAtt": []any{"Role", "Arn"}},
			"Environment": map[string]any{"Variables": map[string]any{"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "PORT": "8000", "DATA_KEY": dataHash + ".json"}},
		}, "DependsOn": []any{"Role"}},
	}
	apiOutputs := map[string]any{
		"FnName":             map[string]any{"Value": map[string]any{"Ref": "Fn"}},
		"ExportsOutputRefFn": map[string]any{"Value": map[string]any{"Ref": "Fn"}, "Export": map[string]any{"Name": "ApiStack:ExportsOutputRefFn"}},
	}
	stacks := []struct {
		id        string
		resources map[string]any
		outputs   map[string]any
		deps      []string
		assets    map[string]any
	}{
		{"ApiStack", api, apiOutputs, nil, map[string]any{
			codeHash: fileAsset("Fn/Code", "asset."+codeHash, "zip", codeHash+".zip"),
			dataHash: fileAsset("Data", "asset."+dataHash+".json", "file", dataHash+".json"),
		}},
		{"ConsumerStack", map[string]any{"P": param("/bench/fn", map[string]any{"Fn::ImportValue": "ApiStack:ExportsOutputRefFn"})}, nil, []string{"ApiStack"}, nil},
		{"QueueStack", map[string]any{"Q": map[string]any{"Type": "AWS::SQS::Queue"}}, nil, nil, nil},
		{"ConfigStack", map[string]any{"P": param("/bench/config", "v1")}, nil, nil, nil},
		{"TopicStack", map[string]any{"T": map[string]any{"Type": "AWS::SNS::Topic"}}, nil, nil, nil},
	}
	for _, s := range stacks {
		tpl := map[string]any{
			"Resources": s.resources,
			"Parameters": map[string]any{"BootstrapVersion": map[string]any{
				"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version",
				"Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]",
			}},
			"Rules": map[string]any{"CheckBootstrapVersion": map[string]any{"Assertions": []any{map[string]any{
				"Assert":            map[string]any{"Fn::Not": []any{map[string]any{"Fn::Contains": []any{[]any{"1", "2", "3", "4", "5"}, map[string]any{"Ref": "BootstrapVersion"}}}}},
				"AssertDescription": "CDK bootstrap stack version 6 required. Please run 'cdk bootstrap' with a recent version of the CDK CLI.",
			}}}},
		}
		if s.outputs != nil {
			tpl["Outputs"] = s.outputs
		}
		tb, _ := json.MarshalIndent(tpl, "", " ")
		th := hash(string(tb))
		if err := os.WriteFile(filepath.Join(dir, s.id+".template.json"), tb, 0o644); err != nil {
			return err
		}
		assets := map[string]any{th: fileAsset(s.id+" Template", s.id+".template.json", "file", th+".json")}
		for k, v := range s.assets {
			assets[k] = v
		}
		if err := writeJSON(filepath.Join(dir, s.id+".assets.json"), map[string]any{"version": "55.0.0", "files": assets, "dockerImages": map[string]any{}}); err != nil {
			return err
		}
		artifacts[s.id+".assets"] = map[string]any{"type": "cdk:asset-manifest", "properties": map[string]any{
			"file": s.id + ".assets.json", "requiresBootstrapStackVersion": 6, "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version",
		}}
		artifacts[s.id] = map[string]any{
			"type":        "aws:cloudformation:stack",
			"environment": "aws://unknown-account/unknown-region",
			"properties": map[string]any{
				"templateFile":                      s.id + ".template.json",
				"terminationProtection":             false,
				"validateOnSynth":                   false,
				"assumeRoleArn":                     "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-deploy-role-${AWS::AccountId}-${AWS::Region}",
				"cloudFormationExecutionRoleArn":    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-${AWS::AccountId}-${AWS::Region}",
				"stackTemplateAssetObjectUrl":       "s3://cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}/" + th + ".json",
				"requiresBootstrapStackVersion":     6,
				"bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version",
				"additionalDependencies":            []string{s.id + ".assets"},
			},
			"dependencies": append(append([]string{}, s.deps...), s.id+".assets"),
			"displayName":  s.id,
		}
	}
	if err := writeJSON(filepath.Join(dir, "manifest.json"), map[string]any{"version": "55.0.0", "artifacts": artifacts}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cdk.out"), []byte(`{"version":"55.0.0"}`), 0o644)
}

func fileAsset(name, path, packaging, key string) map[string]any {
	return map[string]any{
		"displayName": name,
		"source":      map[string]any{"path": path, "packaging": packaging},
		"destinations": map[string]any{"current_account-current_region": map[string]any{
			"bucketName":    "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}",
			"objectKey":     key,
			"assumeRoleArn": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-file-publishing-role-${AWS::AccountId}-${AWS::Region}",
		}},
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
