// Command hotswap times the inner loop of a Python edit against moto: from
// saving main.py to the Lambda function running the new code, for
//
//   - pipe deploy --hotswap //... (build, synth and Lambda calls; no change
//     set),
//   - pipe deploy //... (build, synth and a change set),
//   - pipe deploy --hotswap --app cdk.out and cdk deploy --hotswap --app
//     cdk.out (the CDK CLI 2.1148.1) of the assembly pipe build made, each
//     timed alone and with the build,
//
// in one run, on examples/fastapi's CDK app (three stacks; the function's
// code is the bundle, a genrule stand-in; see bench/internal/example).
// Every timed run edits main.py and is checked: the function's CodeSha256
// must become the one of the new code object the template names, and
// pipe's hotswap must make no CloudFormation write call.
//
//	go run ./bench/hotswap -pipe PIPE [-node-modules DIR] [-cdk CDK] [-runs 3]
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pipebuild/pipe/bench/internal/example"
	"github.com/pipebuild/pipe/bench/internal/timing"

	"github.com/pipebuild/pipe/internal/testenv"
)

func main() {
	pipe := flag.String("pipe", "", "pipe binary")
	old := flag.String("old", "", "another pipe binary whose deploy --hotswap is timed too, each of its runs alternating with one of -pipe's")
	nm := flag.String("node-modules", "internal/rules/cdk/testdata/npm/node_modules", "node_modules with aws-cdk-lib, constructs and the aws-cdk CLI")
	cdk := flag.String("cdk", "", "the CDK CLI (default: the node_modules' .bin/cdk if there; \"none\" skips it)")
	runs := flag.Int("runs", 3, "timed edits of each")
	flag.Parse()
	if err := run(*pipe, *old, *nm, *cdk, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench hotswap:", err)
		os.Exit(1)
	}
}

const assembly = "dist/packages/infra/infra/cdk.out"

type bench struct {
	pipe, ws string
	env      []string
	proxy    *testenv.CountingProxy
	srv      *testenv.Moto
	fn       string
	edits    int
	// synth is the CdkSynth action's time in the last pipe run.
	synth time.Duration
	// cpu is the CPU time of the commands run since it was last reset.
	cpu time.Duration
	// viaCDK: the CDK CLI deploys, and its hotswaps leave pipe's record
	// behind.
	viaCDK bool
}

func run(pipe, old, nm, cdk string, runs int) error {
	if pipe == "" {
		return errors.New("-pipe is required")
	}
	var err error
	if pipe, err = filepath.Abs(pipe); err != nil {
		return err
	}
	if old != "" {
		if old, err = filepath.Abs(old); err != nil {
			return err
		}
	}
	if nm, err = filepath.Abs(nm); err != nil {
		return err
	}
	if cdk == "" {
		if _, err := os.Stat(filepath.Join(nm, ".bin", "cdk")); err == nil {
			cdk = filepath.Join(nm, ".bin", "cdk")
		}
	}
	if err := testenv.MotoAvailable(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pipe-bench-hotswap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{pipe: pipe, ws: filepath.Join(work, "ws")}
	if err := example.WriteWorkspace(b.ws, nm); err != nil {
		return err
	}
	if b.srv, err = testenv.StartMoto(); err != nil {
		return err
	}
	defer b.srv.Close()
	if err := b.srv.Bootstrap(testenv.Region); err != nil {
		return err
	}
	if b.proxy, err = testenv.NewCountingProxy(b.srv.URL); err != nil {
		return err
	}
	defer b.proxy.Close()
	b.env = append(example.CleanEnv(), "PIPE_CACHE_DIR="+filepath.Join(work, "cache"), "HOME="+filepath.Join(work, "home"))
	b.env = append(b.env, testenv.AWSEnv(b.proxy.URL)...)
	b.env = append(b.env, "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION="+strings.Replace(b.proxy.URL, "127.0.0.1", "localhost", 1),
		"CDK_DISABLE_VERSION_CHECK=1", "CDK_DISABLE_CLI_TELEMETRY=1")
	fmt.Printf("machine: %s; node %s\n", timing.Machine(), example.NodeVersion())

	if out, err := timing.Command(b.ws, b.env, pipe, "deploy", "//...", "--require-approval", "never"); err != nil {
		return fmt.Errorf("first deploy: %v\n%s", err, out)
	}
	if b.fn, err = b.function(); err != nil {
		return err
	}

	type result struct {
		what        string
		times, rest []time.Duration
		cpu         []time.Duration
		detail      string
	}
	var results []result
	// Each run's wall time, and the rest once the CDK synth (node and
	// aws-cdk-lib, the same for every tool) is taken out of it. Several
	// steps are interleaved: run i of each, then run i+1 of each.
	measureAll := func(whats []string, steps []func() (string, error)) error {
		rs := make([]result, len(whats))
		for i := range rs {
			rs[i].what = whats[i]
		}
		for i := 0; i < runs; i++ {
			for j, step := range steps {
				if err := b.edit(); err != nil {
					return err
				}
				b.synth, b.cpu = 0, 0
				t0 := time.Now()
				d, err := step()
				if err != nil {
					return fmt.Errorf("%s: %v", whats[j], err)
				}
				wall := time.Since(t0)
				rs[j].times, rs[j].rest = append(rs[j].times, wall), append(rs[j].rest, wall-b.synth)
				rs[j].cpu = append(rs[j].cpu, b.cpu)
				rs[j].detail = d
				if err := b.checkCode(); err != nil {
					return fmt.Errorf("%s: %v", whats[j], err)
				}
			}
		}
		for _, r := range rs {
			results = append(results, r)
			fmt.Printf("%-62s %s\n  without the CdkSynth action: %s\n  CPU (user+sys, with node): %s\n  %s\n", r.what+":", timing.Stats(r.times), timing.Stats(r.rest), timing.Stats(r.cpu), r.detail)
		}
		return nil
	}
	measure := func(what string, step func() (string, error)) error {
		return measureAll([]string{what}, []func() (string, error){step})
	}
	hotswap := func(bin string) func() (string, error) {
		return func() (string, error) {
			b.proxy.Reset()
			out, err := b.run(bin, "deploy", "//...", "--hotswap")
			if err != nil {
				return "", err
			}
			if !strings.Contains(out, "1 hotswapped, 2 unchanged") {
				return "", fmt.Errorf("want MyApiStack hotswapped:\n%s", out)
			}
			for _, c := range b.proxy.Writes() {
				if c.Service == "cloudformation" {
					return "", fmt.Errorf("a hotswap made a CloudFormation write call: %v", c)
				}
			}
			return b.phases(), nil
		}
	}
	// The first deploy --hotswap after a deploy finds the synth's result in
	// the cache (pipe keeps its assembly); from then on a Python edit needs
	// no synth. Not timed.
	if out, err := b.pipeRun("deploy", "//...", "--hotswap"); err != nil || !strings.Contains(out, "3 unchanged") {
		return fmt.Errorf("first deploy --hotswap: %v\n%s", err, out)
	}
	whats := []string{"edit → pipe deploy --hotswap //..."}
	steps := []func() (string, error){hotswap(pipe)}
	if old != "" {
		whats = append(whats, "edit → OLD pipe deploy --hotswap //...")
		steps = append(steps, hotswap(old))
	}
	if err := measureAll(whats, steps); err != nil {
		return err
	}
	// The first plain deploy also sets back what the hotswaps changed.
	err = measure("edit → pipe deploy //... (change set)", func() (string, error) {
		out, err := b.pipeRun("deploy", "//...")
		if err != nil {
			return "", err
		}
		if !strings.Contains(out, "1 deployed, 2 unchanged") {
			return "", fmt.Errorf("want MyApiStack deployed:\n%s", out)
		}
		return b.phases(), nil
	})
	if err != nil {
		return err
	}
	// The same assembly, deployed by each tool: pipe build first (not
	// timed alone), then the deploy step.
	build := func() error {
		out, err := b.pipeRun("build", "//...")
		if err == nil && !strings.Contains(out, "0 failed") {
			err = fmt.Errorf("pipe build:\n%s", out)
		}
		b.phases() // notes the synth's time
		return err
	}
	var pipeAlone []time.Duration
	err = measure("edit → pipe build //... + pipe deploy --hotswap --app cdk.out", func() (string, error) {
		if err := build(); err != nil {
			return "", err
		}
		t0 := time.Now()
		out, err := b.pipeRun("deploy", "--hotswap", "--app", assembly)
		if err != nil {
			return "", err
		}
		if !strings.Contains(out, "1 hotswapped, 2 unchanged") {
			return "", fmt.Errorf("want MyApiStack hotswapped:\n%s", out)
		}
		pipeAlone = append(pipeAlone, time.Since(t0))
		return "pipe deploy --hotswap --app alone: " + timing.Stats(pipeAlone), nil
	})
	if err != nil {
		return err
	}
	if cdk == "" || cdk == "none" {
		fmt.Println("cdk: no CDK CLI (-cdk); comparison skipped")
		return nil
	}
	var cdkAlone []time.Duration
	b.viaCDK = true
	err = measure("edit → pipe build //... + cdk deploy --hotswap --app cdk.out", func() (string, error) {
		if err := build(); err != nil {
			return "", err
		}
		t0 := time.Now()
		out, err := b.command(cdk, "deploy", "--all", "--hotswap", "--app", filepath.Join(b.ws, assembly), "--require-approval", "never", "--no-notices", "--ci")
		if err != nil {
			return "", fmt.Errorf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "hotswap") {
			return "", fmt.Errorf("cdk deploy --hotswap did not hotswap:\n%s", out)
		}
		cdkAlone = append(cdkAlone, time.Since(t0))
		return "cdk deploy --hotswap alone: " + timing.Stats(cdkAlone), nil
	})
	if err != nil {
		return err
	}
	ratio := func(a, b []time.Duration) float64 { return float64(timing.Median(a)) / float64(timing.Median(b)) }
	hot, plain, cdkTotal := results[0], results[len(results)-3], results[len(results)-1]
	if old != "" {
		fmt.Printf("ratio of medians: OLD pipe deploy --hotswap / pipe deploy --hotswap = %.1f× wall, %.1f× CPU\n", ratio(results[1].times, hot.times), ratio(results[1].cpu, hot.cpu))
	}
	fmt.Printf("ratios of medians, CPU: pipe deploy / pipe deploy --hotswap = %.1f×; (pipe build + cdk deploy --hotswap) / pipe deploy --hotswap = %.1f×\n", ratio(plain.cpu, hot.cpu), ratio(cdkTotal.cpu, hot.cpu))
	fmt.Printf("ratios of medians, wall (without CdkSynth): pipe deploy / pipe deploy --hotswap = %.2f× (%.2f×); (pipe build + cdk deploy --hotswap) / pipe deploy --hotswap = %.2f× (%.1f×)\n",
		ratio(plain.times, hot.times), ratio(plain.rest, hot.rest), ratio(cdkTotal.times, hot.times), ratio(cdkTotal.rest, hot.rest))
	fmt.Printf("same assembly, deploy step alone: cdk deploy --hotswap / pipe deploy --hotswap --app = %.1f×\n", float64(timing.Median(cdkAlone))/float64(timing.Median(pipeAlone)))
	return nil
}

func (b *bench) aws() aws.Config {
	return aws.Config{Region: testenv.Region, Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(b.srv.URL)}
}

// function finds the name of MyApiStack's function.
func (b *bench) function() (string, error) {
	out, err := cloudformation.NewFromConfig(b.aws()).ListStackResources(context.Background(), &cloudformation.ListStackResourcesInput{StackName: aws.String("MyApiStack")})
	if err != nil {
		return "", err
	}
	for _, r := range out.StackResourceSummaries {
		if aws.ToString(r.ResourceType) == "AWS::Lambda::Function" {
			return aws.ToString(r.PhysicalResourceId), nil
		}
	}
	return "", errors.New("MyApiStack has no Lambda function")
}

// edit changes main.py, as saving it in an editor does.
func (b *bench) edit() error {
	b.edits++
	p := filepath.Join(b.ws, "packages/my-api/my_api/main.py")
	src, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if i := bytes.Index(src, []byte("\nEDIT = ")); i >= 0 {
		src = src[:i]
	}
	return os.WriteFile(p, append(src, fmt.Sprintf("\nEDIT = %d\n", b.edits)...), 0o644)
}

func (b *bench) pipeRun(args ...string) (string, error) {
	return b.run(b.pipe, args...)
}

func (b *bench) run(pipe string, args ...string) (string, error) {
	out, err := b.command(pipe, append(args, "--events", filepath.Join(b.ws, "..", "events.jsonl"))...)
	if err != nil {
		return "", fmt.Errorf("pipe %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// phases says where a pipe run's time went, from its --events file.
func (b *bench) phases() string {
	data, err := os.ReadFile(filepath.Join(b.ws, "..", "events.jsonl"))
	if err != nil {
		return ""
	}
	var parts []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var e struct {
			Mnemonic   string   `json:"mnemonic"`
			Status     string   `json:"status"`
			DurationMs float64  `json:"duration_ms"`
			Event      string   `json:"event"`
			Stack      string   `json:"stack"`
			Changed    []string `json:"changed"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Mnemonic == "CdkSynth" && e.Status == "executed" {
			b.synth = time.Duration(e.DurationMs * float64(time.Millisecond))
		}
		switch {
		case e.Mnemonic != "" && e.Status == "executed":
			parts = append(parts, fmt.Sprintf("%s %.0f ms", e.Mnemonic, e.DurationMs))
		case e.Event == "done" && e.Status != "unchanged":
			parts = append(parts, fmt.Sprintf("%s %s in %.0f ms", e.Stack, e.Status, e.DurationMs))
		case e.Event == "hotswapped":
			parts = append(parts, fmt.Sprintf("Lambda update %.0f ms", e.DurationMs))
		}
	}
	return "last run: " + strings.Join(parts, ", ")
}

// checkCode checks that the function runs the code object the local
// template names.
func (b *bench) checkCode() error {
	ctx := context.Background()
	cfg := b.aws()
	data, err := os.ReadFile(filepath.Join(b.ws, assembly, "MyApiStack.template.json"))
	if err != nil {
		return err
	}
	var tpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct{ Code struct{ S3Key string } }
		}
	}
	if err := json.Unmarshal(data, &tpl); err != nil {
		return err
	}
	key := ""
	for _, r := range tpl.Resources {
		if r.Type == "AWS::Lambda::Function" {
			key = r.Properties.Code.S3Key
		}
	}
	// After pipe's hotswap the function runs the code its record names
	// (the CDK CLI's hotswaps are recorded nowhere).
	if recs, _ := filepath.Glob(filepath.Join(b.ws, ".pipe", "hotswap", "*", testenv.Region, "MyApiStack.json")); len(recs) == 1 && !b.viaCDK {
		data, err := os.ReadFile(recs[0])
		if err != nil {
			return err
		}
		var rec struct {
			Functions map[string]struct {
				Code *struct{ Key string }
			}
		}
		if err := json.Unmarshal(data, &rec); err != nil {
			return err
		}
		for _, f := range rec.Functions {
			if f.Code != nil {
				key = f.Code.Key
			}
		}
	}
	obj, err := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testenv.BootstrapBucket(testenv.Region)), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("code object %s: %v", key, err)
	}
	var body bytes.Buffer
	body.ReadFrom(obj.Body)
	obj.Body.Close()
	if err := b.hasEdit(body.Bytes()); err != nil {
		return fmt.Errorf("code object %s: %v", key, err)
	}
	sum := sha256.Sum256(body.Bytes())
	fn, err := lambda.NewFromConfig(cfg).GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(b.fn)})
	if err != nil {
		return err
	}
	if got, want := aws.ToString(fn.Configuration.CodeSha256), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("the function runs %s, not the new code %s (%s)", got, want, key)
	}
	return nil
}

// command runs a command in the workspace and adds the CPU time it and
// its children (node for a synth or the CDK CLI) used to b.cpu: unlike
// wall time, about the same on a loaded machine.
func (b *bench) command(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = b.ws, b.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if st := cmd.ProcessState; st != nil {
		b.cpu += st.UserTime() + st.SystemTime()
	}
	return out.String(), err
}

// hasEdit checks that a code zip holds main.py as the last edit left it.
func (b *bench) hasEdit(data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	want := fmt.Sprintf("\nEDIT = %d\n", b.edits)
	for _, f := range zr.File {
		if path.Base(f.Name) != "main.py" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		src, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if bytes.Contains(src, []byte(want)) {
			return nil
		}
		return fmt.Errorf("%s is not the last edit (%q)", f.Name, strings.TrimSpace(want))
	}
	return errors.New("no main.py")
}
