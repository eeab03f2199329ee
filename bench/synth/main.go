// Command synth times the synth of examples/fastapi's CDK app (three
// stacks: a Lambda behind a LambdaRestApi, a stack importing its URL, an
// independent one) by `pipe build`, cold and warm, and, against moto, a
// no-change `pipe deploy` of it next to the CDK CLI's
// `cdk deploy --all --app cdk.out`.
//
//	go run ./bench/synth -pipe PIPE [-node-modules DIR] [-cdk CDK] [-runs 5]
//
// The workspace is a copy of examples/fastapi/packages/infra (sources,
// BUILD.star, cdk.json) with stand-ins for what it depends on that need
// Python: the bundle is a genrule copying the example's my_api and a run.sh,
// and metadata.gen.ts is a checked-in file (a filegroup). The synth is the
// example's own.
//
// Measured:
//   - cold: empty shared cache, no dist/ or .pipe/ (every action runs);
//   - restore: dist/ and .pipe/ removed, shared cache kept (every action a
//     cache hit, outputs restored from the CAS);
//   - no-op: nothing changed (what a second `pipe deploy` builds);
//   - app edit: the Python app changes, so the bundle and the synth run.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pipebuild/pipe/bench/internal/example"
	"github.com/pipebuild/pipe/bench/internal/timing"

	"github.com/pipebuild/pipe/internal/testenv"
)

func main() {
	pipe := flag.String("pipe", "", "pipe binary")
	nm := flag.String("node-modules", "internal/rules/cdk/testdata/npm/node_modules", "node_modules with aws-cdk-lib, constructs (and the aws-cdk CLI)")
	cdk := flag.String("cdk", "", "the CDK CLI (default: the node_modules' .bin/cdk if there; \"none\" skips the deploy comparison)")
	runs := flag.Int("runs", 5, "timed runs of each")
	flag.Parse()
	if err := run(*pipe, *nm, *cdk, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench synth:", err)
		os.Exit(1)
	}
}

// sample is one build: its wall time and the CdkSynth action's.
type sample struct{ wall, synth time.Duration }

type bench struct {
	pipe, ws, cache string
	env             []string
}

func run(pipe, nm, cdk string, runs int) error {
	if pipe == "" {
		return errors.New("-pipe is required")
	}
	var err error
	if pipe, err = filepath.Abs(pipe); err != nil {
		return err
	}
	if nm, err = filepath.Abs(nm); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(nm, "aws-cdk-lib", "package.json")); err != nil {
		return fmt.Errorf("no aws-cdk-lib in %s (npm ci --prefix internal/rules/cdk/testdata/npm): %v", nm, err)
	}
	if cdk == "" {
		if _, err := os.Stat(filepath.Join(nm, ".bin", "cdk")); err == nil {
			cdk = filepath.Join(nm, ".bin", "cdk")
		}
	}
	work, err := os.MkdirTemp("", "pipe-bench-synth-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{pipe: pipe, ws: filepath.Join(work, "ws"), cache: filepath.Join(work, "cache")}
	if err := example.WriteWorkspace(b.ws, nm); err != nil {
		return err
	}
	b.env = append(example.CleanEnv(), "PIPE_CACHE_DIR="+b.cache, "HOME="+filepath.Join(work, "home"))
	fmt.Printf("machine: %s; node %s\n", timing.Machine(), example.NodeVersion())

	measure := func(what string, n int, prepare func(i int) error, want string) error {
		var walls, synths []time.Duration
		for i := 0; i < n; i++ {
			if err := prepare(i); err != nil {
				return err
			}
			s, status, err := b.build()
			if err != nil {
				return err
			}
			if status != want {
				return fmt.Errorf("%s: CdkSynth %s, want %s", what, status, want)
			}
			walls, synths = append(walls, s.wall), append(synths, s.synth)
		}
		fmt.Printf("%-58s wall %s; CdkSynth action %s\n", what+":", timing.Stats(walls), timing.Stats(synths))
		return nil
	}
	if err := measure("cold (empty cache, no dist/ or .pipe/)", runs, func(int) error {
		return errors.Join(os.RemoveAll(b.cache), os.RemoveAll(filepath.Join(b.ws, "dist")), os.RemoveAll(filepath.Join(b.ws, ".pipe")))
	}, "executed"); err != nil {
		return err
	}
	if err := measure("restore (dist/ and .pipe/ removed, cache kept)", runs, func(int) error {
		return errors.Join(os.RemoveAll(filepath.Join(b.ws, "dist")), os.RemoveAll(filepath.Join(b.ws, ".pipe")))
	}, "cached"); err != nil {
		return err
	}
	if err := measure("no-op (nothing changed)", runs, func(int) error { return nil }, "cached"); err != nil {
		return err
	}
	mainPy := filepath.Join(b.ws, "packages/my-api/my_api/main.py")
	orig, err := os.ReadFile(mainPy)
	if err != nil {
		return err
	}
	if err := measure("app edit (bundle and synth run again)", runs, func(i int) error {
		return os.WriteFile(mainPy, append(append([]byte(nil), orig...), fmt.Sprintf("\nEDIT = %d\n", time.Now().UnixNano())...), 0o644)
	}, "executed"); err != nil {
		return err
	}

	if cdk == "none" || cdk == "" {
		fmt.Println("deploy: no CDK CLI (-cdk); comparison skipped")
		return nil
	}
	return b.deploy(cdk, runs)
}

// build runs `pipe build //...` and returns its wall time, the CdkSynth
// action's duration and status.
func (b *bench) build() (sample, string, error) {
	var s sample
	ev := filepath.Join(filepath.Dir(b.ws), "events.jsonl")
	t0 := time.Now()
	out, err := timing.Command(b.ws, b.env, b.pipe, "build", "//...", "--events", ev)
	s.wall = time.Since(t0)
	if err != nil {
		return s, "", fmt.Errorf("pipe build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(ev)
	if err != nil {
		return s, "", err
	}
	status := ""
	for _, line := range bytes.Split(data, []byte("\n")) {
		var e struct {
			Mnemonic   string  `json:"mnemonic"`
			Status     string  `json:"status"`
			DurationMs float64 `json:"duration_ms"`
		}
		if json.Unmarshal(line, &e) == nil && e.Mnemonic == "CdkSynth" {
			status, s.synth = e.Status, time.Duration(e.DurationMs*float64(time.Millisecond))
		}
	}
	return s, status, nil
}

// deploy compares no-change deploys against moto: pipe (build included,
// and from the assembly) and the CDK CLI from the same assembly.
func (b *bench) deploy(cdk string, runs int) error {
	if err := testenv.MotoAvailable(); err != nil {
		return fmt.Errorf("deploy comparison: %v (or -cdk none)", err)
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
	env := append(append([]string(nil), b.env...), testenv.AWSEnv(proxy.URL)...)
	env = append(env, "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION="+strings.Replace(proxy.URL, "127.0.0.1", "localhost", 1),
		"CDK_DISABLE_VERSION_CHECK=1", "CDK_DISABLE_CLI_TELEMETRY=1")
	if out, err := timing.Command(b.ws, env, b.pipe, "deploy", "//...", "--require-approval", "never"); err != nil {
		return fmt.Errorf("first deploy: %v\n%s", err, out)
	}
	app := filepath.Join(b.ws, "dist/packages/infra/infra/cdk.out")
	unchanged := func(bin string, args ...string) func() error {
		return func() error {
			proxy.Reset()
			out, err := timing.Command(b.ws, env, bin, args...)
			if err != nil {
				return fmt.Errorf("%v\n%s", err, out)
			}
			if n := strings.Count(out, "(no changes)"); n != 3 {
				return fmt.Errorf("want 3 stacks unchanged, got %d:\n%s", n, out)
			}
			return nil
		}
	}
	checkWrites := func(f func() error) func() error {
		return func() error {
			if err := f(); err != nil {
				return err
			}
			if w := proxy.Writes(); len(w) > 0 {
				return fmt.Errorf("a no-change pipe deploy made write calls: %v", w)
			}
			return nil
		}
	}
	pipeBuild, err := timing.Runs(runs, checkWrites(unchanged(b.pipe, "deploy", "//...")))
	if err != nil {
		return err
	}
	fmt.Printf("%-58s %s; %d AWS calls, 0 writes\n", "pipe deploy //... (build included), 3 stacks unchanged:", timing.Stats(pipeBuild), len(proxy.Calls()))
	pipeApp, err := timing.Runs(runs, checkWrites(unchanged(b.pipe, "deploy", "--app", app)))
	if err != nil {
		return err
	}
	fmt.Printf("%-58s %s\n", "pipe deploy --app cdk.out:", timing.Stats(pipeApp))
	cdkTimes, err := timing.Runs(max(runs, 3), unchanged(cdk, "deploy", "--all", "--app", app, "--require-approval", "never", "--no-notices", "--ci"))
	if err != nil {
		return err
	}
	var writes []string
	for _, c := range proxy.Writes() {
		writes = append(writes, c.String())
	}
	fmt.Printf("%-58s %s; %d AWS calls, %d writes (%s)\n", "cdk deploy --all --app cdk.out, same moto:", timing.Stats(cdkTimes), len(proxy.Calls()), len(writes), strings.Join(writes, "; "))
	fmt.Printf("ratio (median): cdk --app / pipe deploy //... = %.1f×\n", float64(timing.Median(cdkTimes))/float64(timing.Median(pipeBuild)))
	return nil
}
