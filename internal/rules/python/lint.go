package python

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/pipebuild/pipe/internal/engine"
)

// PyLint checks Python sources with ruff from the lock: lint (ruff check)
// and formatting (ruff format --check). It is a test: pipe test runs it.
var PyLint = &engine.Rule{
	Name:    "py_lint",
	Version: "1",
	Doc:     "Runs ruff check and ruff format --check from the lock's dev group (pipe test): dist/<pkg>/<name>/lint.log and lint.xml (JUnit).",
	Attrs: withEnvAttrs(
		engine.Attr{Name: "srcs", Type: engine.AttrLabelList, Doc: "the Python files to check"},
		engine.Attr{Name: "format", Type: engine.AttrBool, Default: true, Doc: "check formatting too (ruff format --check)"},
		engine.Attr{Name: "groups", Type: engine.AttrStringList, Default: []string{"dev"}, Doc: "dependency groups that hold ruff"},
	),
	Analyze: analyzePyLint,
}

// ruffConfigs are the files ruff reads its settings from.
var ruffConfigs = []string{".ruff.toml", "ruff.toml", "pyproject.toml"}

func isRuffConfig(name string, b []byte) bool {
	if name != "pyproject.toml" {
		return true
	}
	var doc struct {
		Tool struct {
			Ruff map[string]any `toml:"ruff"`
		} `toml:"tool"`
	}
	return toml.Unmarshal(b, &doc) == nil && doc.Tool.Ruff != nil
}

func analyzePyLint(ctx *engine.AnalysisContext) error {
	groups := ctx.Strings("groups")
	pt, err := analyzePython(ctx, envOptions{groups: &GroupSpec{Names: groups, Optional: slices.Equal(groups, []string{"dev"})}})
	if err != nil {
		return err
	}
	label := ctx.Label()
	srcs := ctx.Files("srcs")
	inputs := append([]*engine.File(nil), srcs...)
	config := nearestConfig(ctx, ruffConfigs, isRuffConfig)
	if config != "" {
		inputs = append(inputs, ctx.SourceFile(config))
	}
	var files []string
	for _, f := range srcs {
		if strings.HasSuffix(f.Path, ".py") || strings.HasSuffix(f.Path, ".pyi") {
			files = append(files, f.Path)
		}
	}
	sort.Strings(files)
	format := ctx.Bool("format")
	logOut := ctx.Declare("lint.log")
	xmlOut := ctx.Declare("lint.xml")
	// Without ruff in the lock there is nothing to run: the target says
	// so in its report, and passes, rather than failing every pipe test
	// of a project that does not lint.
	missing := ""
	if pt.env.Err == nil && !pt.env.Has("ruff") {
		add := "uv add --dev ruff"
		if !slices.Equal(groups, []string{"dev"}) {
			add = "uv add --group " + groups[0] + " ruff"
		}
		missing = fmt.Sprintf("ruff is not in the lock (groups: %s); to lint, %s and uv lock", strings.Join(groups, ", "), add)
	}
	ctx.AddAction(&engine.Action{
		Mnemonic:    "Ruff",
		Description: "Linting " + label.String(),
		Inputs:      inputs,
		Outputs:     []*engine.File{logOut, xmlOut},
		Identity:    fmt.Sprintf("ruff files=%q config=%q format=%t missing=%q %s", files, config, format, missing, pt.env.Identity()),
		Tools:       []string{pt.tool()},
		Sandbox:     true,
		Test:        true,
		Run: func(c context.Context, ec *engine.ExecContext) error {
			if missing != "" {
				if err := os.WriteFile(ec.Output(logOut), []byte(missing+"\n"), 0o644); err != nil {
					return err
				}
				return writeJUnit(ec.Output(xmlOut), label.String(), 0, outcomeSkipped, missing, "")
			}
			python, envDir, err := pt.ready(c, ec.Cache(), ec.Progress)
			if err != nil {
				return err
			}
			ruff := filepath.Join(envDir, "bin", "ruff")
			if _, err := os.Stat(ruff); err != nil {
				return fmt.Errorf("the ruff wheel in the locked environment has no bin/ruff (%s): is it ruff from PyPI?", python)
			}
			cfg := []string{"--isolated"}
			if config != "" {
				cfg = []string{"--config", filepath.Join(ec.Dir, filepath.FromSlash(config))}
			}
			env := map[string]string{"PATH": ctx.Workspace().Settings.Path, "HOME": ec.Dir, "NO_COLOR": "1"}
			var log bytes.Buffer
			start := time.Now()
			var failed []string
			steps := [][]string{append(append([]string{ruff, "check", "--no-cache", "--output-format", "concise"}, cfg...), files...)}
			if format {
				steps = append(steps, append(append([]string{ruff, "format", "--check", "--no-cache"}, cfg...), files...))
			}
			for _, argv := range steps {
				fmt.Fprintf(&log, "$ ruff %s\n", strings.Join(argv[1:3], " "))
				err := ec.Run(c, engine.Command{Argv: argv, Env: env, Dir: ec.Dir, Stdout: &log, Stderr: &log, Confinement: confinement(python, envDir)})
				var ce *engine.CommandError
				switch {
				case err == nil:
				case errors.As(err, &ce) && ce.ExitCode == 1:
					failed = append(failed, "ruff "+argv[1])
				default:
					return fmt.Errorf("ruff %s: %w\n%s", argv[1], err, log.String())
				}
			}
			if err := os.WriteFile(ec.Output(logOut), log.Bytes(), 0o644); err != nil {
				return err
			}
			reason := ""
			if len(failed) > 0 {
				reason = strings.Join(failed, " and ") + " found problems"
			}
			how, msg := outcomePassed, "passed"
			if reason != "" {
				how, msg = outcomeFailed, reason
			}
			if err := writeJUnit(ec.Output(xmlOut), label.String(), time.Since(start), how, msg, log.String()); err != nil {
				return err
			}
			if reason != "" {
				ec.Stderr.Write(log.Bytes())
				return &engine.TestFailedError{Reason: reason}
			}
			return nil
		},
	})
	ctx.Provide(logOut, xmlOut)
	return nil
}
