// Package tfcli runs the terraform (or tofu) command line the way pipe's
// terraform rules and deploys need it: a fixed environment (no user
// configuration leaks into a build), a shared provider plugin cache, and
// the command's machine-readable JSON output turned into typed values and
// errors that name the file, line and column.
//
// It imports no other pipe package.
package tfcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pipebuild/pipe/internal/process"

	tfjson "github.com/hashicorp/terraform-json"
)

// CLI is one terraform-compatible binary and where it keeps its shared
// state.
type CLI struct {
	// Path is the absolute path of the terraform or tofu binary.
	Path string
	// CacheDir is pipe's shared cache directory. Providers are kept in
	// CacheDir/terraform/plugins (TF_PLUGIN_CACHE_DIR), so each provider
	// version is downloaded once per machine, and CacheDir/terraform/mirror,
	// when it exists, is a filesystem mirror (terraform providers mirror
	// lays one out) searched before the registry, for machines that cannot
	// reach it.
	CacheDir string
	// DataDir is TF_DATA_DIR: the .terraform directory of this
	// configuration, kept out of the source tree.
	DataDir string
	// PathEnv is the PATH the binary sees (local-exec provisioners run with it).
	PathEnv string
	// Env are more variables for the binary (credentials, TF_VAR_…).
	Env map[string]string
	// ShowDir is how messages name the configuration directory (relative
	// to the workspace); "" names it by the directory Run was given.
	ShowDir string
	// Exec, when set, runs the binary instead of a child process of
	// pipe's (a build's steps run it in the build's sandbox): argv, the
	// whole environment, the directory. It returns the exit status of a
	// command that ran (-1 when a signal ended it), or an error when it
	// could not run it.
	Exec func(ctx context.Context, argv, env []string, dir string, stdout, stderr io.Writer) (int, error)
}

// Error is a failed terraform command, with the diagnostics it printed.
type Error struct {
	// Args are the command's arguments, without the binary.
	Args []string
	// Dir is the configuration directory the command ran in.
	Dir string
	// ExitCode is the exit status; -1 when a signal ended it.
	ExitCode int
	// Diagnostics are the errors of a -json command, each formatted as
	// "file:line:col: summary: detail".
	Diagnostics []string
	// Output is the tail of what the command printed, when it gave no
	// diagnostics.
	Output string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %s failed (exit %d)", strings.Join(append([]string{"terraform"}, firstWords(e.Args)...), " "), e.Dir, e.ExitCode)
	for _, d := range e.Diagnostics {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(d, "\n", "\n  "))
	}
	if len(e.Diagnostics) == 0 && e.Output != "" {
		b.WriteString(":\n  ")
		b.WriteString(strings.ReplaceAll(strings.TrimSpace(e.Output), "\n", "\n  "))
	}
	return b.String()
}

// firstWords is the subcommand without its flags and file arguments, for
// messages.
func firstWords(args []string) []string {
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			return args[:i]
		}
	}
	return args
}

// environ is the whole environment of a run: nothing of the user's shell
// but what is listed, so a TF_CLI_ARGS or ~/.terraformrc cannot change
// what a build does.
func (c *CLI) environ() []string {
	env := map[string]string{
		"PATH":                c.PathEnv,
		"TF_IN_AUTOMATION":    "1",
		"TF_INPUT":            "0",
		"CHECKPOINT_DISABLE":  "1",
		"TF_CLI_CONFIG_FILE":  "/dev/null",
		"TF_PLUGIN_CACHE_DIR": filepath.Join(c.CacheDir, "terraform", "plugins"),
	}
	if c.DataDir != "" {
		env["TF_DATA_DIR"] = c.DataDir
	}
	if home, err := os.UserHomeDir(); err == nil {
		env["HOME"] = home
	}
	mirror := filepath.Join(c.CacheDir, "terraform", "mirror")
	if fi, err := os.Stat(mirror); err == nil && fi.IsDir() {
		if cfg, err := c.mirrorConfig(mirror); err == nil {
			env["TF_CLI_CONFIG_FILE"] = cfg
		}
	}
	for k, v := range c.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// mirrorConfig writes the CLI configuration that installs providers from
// the mirror first and falls back to the registry.
func (c *CLI) mirrorConfig(mirror string) (string, error) {
	p := filepath.Join(c.CacheDir, "terraform", "mirror.tfrc")
	want := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path = %q\n  }\n  direct {}\n}\n", mirror)
	if b, err := os.ReadFile(p); err == nil && string(b) == want {
		return p, nil
	}
	tmp := p + fmt.Sprintf(".%d.tmp", os.Getpid())
	if err := os.WriteFile(tmp, []byte(want), 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// Run runs the binary with args in dir (the configuration directory),
// copying its standard output to stdout when that is not nil, and returns
// *Error when it fails. With a -json argument the error carries the
// command's diagnostics.
func (c *CLI) Run(ctx context.Context, dir string, stdout io.Writer, args ...string) error {
	if err := os.MkdirAll(filepath.Join(c.CacheDir, "terraform", "plugins"), 0o755); err != nil {
		return fmt.Errorf("terraform plugin cache: %w", err)
	}
	var out, errb bytes.Buffer
	var w io.Writer = &out
	if stdout != nil {
		w = io.MultiWriter(&out, stdout)
	}
	code, err := c.exec(ctx, args, dir, w, &errb)
	if err == nil && code == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("run %s: %w (set workspace(terraform = ...) in WORKSPACE.star to a terraform or tofu binary)", c.Path, err)
	}
	show := dir
	if c.ShowDir != "" {
		show = c.ShowDir
	}
	te := &Error{Args: args, Dir: show, ExitCode: code}
	te.Diagnostics = Diagnostics(out.Bytes(), show)
	if len(te.Diagnostics) == 0 {
		te.Diagnostics = Diagnostics(errb.Bytes(), show)
	}
	if len(te.Diagnostics) == 0 {
		te.Output = tail(errb.String()+out.String(), 40)
	}
	return te
}

// exec runs the binary, through Exec when set, and returns its exit
// status, or an error when it did not run.
func (c *CLI) exec(ctx context.Context, args []string, dir string, stdout, stderr io.Writer) (int, error) {
	if c.Exec != nil {
		return c.Exec(ctx, append([]string{c.Path}, args...), c.environ(), dir, stdout, stderr)
	}
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = dir
	cmd.Env = c.environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, killed on cancel: terraform starts provider
	// processes that must not outlive an interrupted pipe.
	cmd.SysProcAttr = process.GroupAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// Output runs the command and returns its standard output.
func (c *CLI) Output(ctx context.Context, dir string, args ...string) ([]byte, error) {
	var b bytes.Buffer
	err := c.Run(ctx, dir, &b, args...)
	return b.Bytes(), err
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{"…"}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}

// Diagnostics reads the error diagnostics out of a -json command's
// output: one JSON object (validate -json) or one per line (plan, apply),
// and formats each as "file:line:col: summary: detail" with the file
// relative to the workspace as dir gives it.
func Diagnostics(out []byte, dir string) []string {
	var diags []tfjson.Diagnostic
	var v tfjson.ValidateOutput
	if json.Unmarshal(out, &v) == nil && v.FormatVersion != "" {
		diags = v.Diagnostics
	} else {
		for _, line := range bytes.Split(out, []byte("\n")) {
			var msg struct {
				Type       string             `json:"type"`
				Diagnostic *tfjson.Diagnostic `json:"diagnostic"`
			}
			if json.Unmarshal(line, &msg) == nil && msg.Type == "diagnostic" && msg.Diagnostic != nil {
				diags = append(diags, *msg.Diagnostic)
			}
		}
	}
	var lines []string
	for _, d := range diags {
		if d.Severity != tfjson.DiagnosticSeverityError {
			continue
		}
		s := d.Summary
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		if d.Range != nil && d.Range.Filename != "" {
			s = fmt.Sprintf("%s:%d:%d: %s", filepath.Join(dir, d.Range.Filename), d.Range.Start.Line, d.Range.Start.Column, s)
		}
		lines = append(lines, s)
	}
	return lines
}
