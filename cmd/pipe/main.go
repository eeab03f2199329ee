// Command pipe builds, caches and deploys serverless Python APIs described
// in BUILD.star files.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/engine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// pipe is a short-lived process that allocates a graph and drops it:
	// collecting less often is the cheapest speed-up there is.
	debug.SetGCPercent(400)
	stopProfile := startCPUProfile()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// globalFlags are accepted by every command.
type globalFlags struct {
	dir       string
	jobs      int
	keepGoing bool
	verbose   bool
	color     string
	events    string
	profile   string
	explain   bool
	verify    bool
	// sandboxDebug keeps a failed action's scratch directory.
	sandboxDebug bool
	// sandbox is --sandbox: none, namespace or auto.
	sandbox string

	remoteCache        string
	remoteUpload       bool
	remoteAcceptCached bool
	remoteTimeout      time.Duration
	remoteInstance     string
	remoteHeaders      []string
	remoteTLSCA        string
	remoteUploadInline bool
	remoteMinRate      int64
	remoteBudget       time.Duration
	remoteRequireSig   bool
}

// exitError carries an exit code through cobra.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run is the whole CLI; main only wires process state into it, so tests can
// call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "pipe",
		Short:         "pipe builds, caches and deploys serverless Python APIs from BUILD.star files",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.dir, "directory", "C", "", "run as if started in `DIR`")
	pf.IntVarP(&g.jobs, "jobs", "j", runtime.NumCPU(), "run at most `N` actions at once")
	pf.BoolVarP(&g.keepGoing, "keep-going", "k", false, "build as much as possible after a failure")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "print every action, cached ones too, and the commands executed ones ran")
	pf.StringVar(&g.color, "color", "auto", "colour and live progress: auto, always or never")
	pf.StringVar(&g.events, "events", "", "write one JSON object per action (and per pipe deploy event) to `FILE`")
	pf.StringVar(&g.profile, "profile", "", "write a Chrome trace (open it in Perfetto) to `FILE`")
	pf.StringVar(&g.remoteCache, "remote-cache", "", "share results through `URL`: s3://bucket/prefix, http(s)://host/prefix or grpc(s)://host:port (REAPI) (also PIPE_REMOTE_CACHE, workspace(remote_cache = …))")
	pf.BoolVar(&g.remoteUpload, "remote-upload", false, "write results to the remote cache (trusted CI only); by default it is read-only")
	pf.BoolVar(&g.remoteAcceptCached, "remote-accept-cached", true, "look results up in the remote cache")
	pf.DurationVar(&g.remoteTimeout, "remote-timeout", 5*time.Second, "give up on a remote operation (or a stalled transfer) after `D`, and build locally")
	pf.StringVar(&g.remoteInstance, "remote-instance-name", "", "the REAPI instance `NAME` of a grpc(s):// cache (also PIPE_REMOTE_INSTANCE_NAME, workspace(remote_instance_name = …))")
	pf.StringArrayVar(&g.remoteHeaders, "remote-header", nil, "send `KEY=VALUE` with every remote cache request, e.g. an API key; repeatable (also PIPE_REMOTE_HEADERS, one per line)")
	pf.StringVar(&g.remoteTLSCA, "remote-tls-ca", "", "trust the PEM certificates in `FILE` for a grpcs:// or https:// cache instead of the system's (also PIPE_REMOTE_TLS_CA)")
	pf.Int64Var(&g.remoteMinRate, "remote-min-rate", cache.DefaultMinRate, "fail a remote blob transfer moving fewer than `BYTES` per second (averaged over each --remote-timeout after the first) and build locally; 0: no floor")
	pf.DurationVar(&g.remoteBudget, "remote-budget", 0, "stop using the remote cache once its lookups have cost `D` more than the execution time their hits saved; 0 learns the limit from the build (what executing its actions here costs), negative: no limit")
	pf.BoolVar(&g.remoteRequireSig, "remote-require-signed", false, "use only remote results signed with PIPE_REMOTE_CACHE_KEY, and refuse to start without the key")
	pf.BoolVar(&g.remoteUploadInline, "remote-upload-inline", false, "upload each result before its action's job slot is freed (for benchmarks)")
	pf.MarkHidden("remote-upload-inline")
	pf.BoolVar(&g.verify, "verify", os.Getenv("PIPE_CACHE_VERIFY") == "1", "execute every cache hit again and fail when its outputs differ from the cached ones (also PIPE_CACHE_VERIFY=1)")
	pf.BoolVar(&g.sandboxDebug, "sandbox-debug", false, "keep the scratch directory of a failed action and print it, with the command to run there by hand (the next build removes it)")
	// Bazel's spelling, for muscle memory.
	pf.BoolVar(&g.sandboxDebug, "sandbox_debug", false, "same as --sandbox-debug")
	pf.MarkHidden("sandbox_debug")
	pf.StringVar(&g.sandbox, "sandbox", "auto", "how commands are isolated: namespace (Linux namespaces: only declared inputs visible, read-only; no network unless tags = [\"requires-network\"]; killed with pipe), none (a scratch directory of copies), or auto (namespace where the kernel allows it, else none with a warning)")
	pf.BoolVar(&g.explain, "explain", false, "say why each executed action missed the cache: what differs from its last execution")

	root.AddCommand(
		buildCmd(ctx, g),
		queryCmd(ctx, g),
		graphCmd(ctx, g),
		cleanCmd(ctx, g),
		runCmd(ctx, g),
		versionCmd(),
		affectedCmd(ctx, g),
		deployCmd(ctx, g),
		diffCmd(ctx, g),
		destroyCmd(ctx, g),
		watchCmd(ctx, g),
		newCmd(ctx, g),
		initCmd(g),
		migrateCmd(g),
		cacheCmd(ctx),
		testCmd(ctx, g),
		pythonCmd(ctx, g),
		serverCmd(ctx, g),
		shutdownCmd(ctx, g),
	)
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return engine.Usagef("%v (see %s --help)", err, c.CommandPath())
	})
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// Interrupted while loading or analysing: as after an interrupted
		// build, the shell's code for SIGINT.
		fmt.Fprintf(stderr, "pipe: interrupted (%v)\n", err)
		return 130
	}
	fmt.Fprintf(stderr, "pipe: %v\n", err)
	if engine.IsUserError(err) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's own argument errors (unknown command…).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
