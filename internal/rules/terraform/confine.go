package terraform

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/tfcli"
)

// confine makes c run terraform through the build's sandbox
// (ExecContext.Run) when the action's programs are confined: the module
// staged in the scratch directory is all of the workspace it sees, the
// file system is read-only but for the scratch directory (TF_DATA_DIR is
// in it) and the shared provider cache, and /tmp is private.
//
// The network: init keeps the host's network to fetch the providers the
// module names, unless a provider mirror is configured in the cache
// (tfcli.CLI.CacheDir), which then serves them; fmt and validate get only
// loopback, unless the target has tags = ["requires-network"]. Neither
// runs a provisioner or a data source, so what the network could give
// them is only what the declared inputs do not hold.
func confine(ec *engine.ExecContext, c *tfcli.CLI) {
	if !ec.Confined() {
		return
	}
	tfDir := filepath.Join(c.CacheDir, "terraform")
	mirror := false
	if fi, err := os.Stat(filepath.Join(tfDir, "mirror")); err == nil && fi.IsDir() {
		mirror = true
	}
	c.Exec = func(ctx context.Context, argv, env []string, dir string, stdout, stderr io.Writer) (int, error) {
		if err := os.MkdirAll(filepath.Join(tfDir, "plugins"), 0o755); err != nil {
			return 0, err
		}
		envMap := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			envMap[k] = v
		}
		conf := engine.Confinement{
			// The binary, the mirror and its configuration file.
			Reads:   []string{c.Path, tfDir},
			Writes:  []string{filepath.Join(tfDir, "plugins")},
			Network: len(argv) > 1 && argv[1] == "init" && !mirror,
		}
		err := ec.Run(ctx, engine.Command{Argv: argv, Env: envMap, Dir: dir, Stdout: stdout, Stderr: stderr, Confinement: conf})
		var ce *engine.CommandError
		if errors.As(err, &ce) {
			return ce.ExitCode, nil
		}
		return 0, err
	}
}
