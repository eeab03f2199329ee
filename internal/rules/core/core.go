// Package core holds the language-neutral rules: filegroup and genrule.
package core

import (
	"fmt"
	"strings"

	"github.com/pipebuild/pipe/internal/engine"
)

// Register adds filegroup and genrule to reg.
func Register(reg *engine.Registry) {
	reg.Register(Filegroup)
	reg.Register(Genrule)
}

// Filegroup names a set of files so other targets can depend on them.
var Filegroup = &engine.Rule{
	Name:    "filegroup",
	Version: "1",
	Doc:     "A named set of files.",
	Attrs: []engine.Attr{
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "files and targets whose files the group holds"},
	},
	Analyze: func(ctx *engine.AnalysisContext) error {
		ctx.Provide(ctx.Files("srcs")...)
		return nil
	},
}

// Genrule runs a shell command that turns srcs into outs.
var Genrule = &engine.Rule{
	Name:    "genrule",
	Version: "1",
	Doc:     "Runs cmd with bash in a scratch directory that holds only srcs and tools; it must write every file of outs.",
	Attrs: []engine.Attr{
		{Name: "srcs", Type: engine.AttrLabelList, Doc: "input files and targets"},
		{Name: "outs", Type: engine.AttrOutputList, Required: true, Doc: "files the command writes, under dist/<pkg>/<name>/"},
		{Name: "cmd", Type: engine.AttrString, Required: true, Doc: "bash command; $(SRCS), $(OUTS), $(location L), $(locations L), $(RULEDIR), $@, $<, $$"},
		{Name: "tools", Type: engine.AttrLabelList, Doc: "programs the command runs, built or checked in"},
		{Name: "env", Type: engine.AttrStringDict, Doc: "extra environment variables (part of the action key)"},
		{Name: "message", Type: engine.AttrString, Doc: "progress message"},
	},
	Analyze: analyzeGenrule,
}

const shell = "/bin/bash"

func analyzeGenrule(ctx *engine.AnalysisContext) error {
	outNames := ctx.Strings("outs")
	if len(outNames) == 0 {
		return ctx.Errorf("genrule: outs is empty; a genrule must declare the files it writes")
	}
	srcs := ctx.Files("srcs")
	tools := ctx.Files("tools")
	var outs []*engine.File
	for _, n := range outNames {
		outs = append(outs, ctx.Declare(n))
	}
	cmd, err := expandCommand(ctx, ctx.String("cmd"), srcs, outs)
	if err != nil {
		return ctx.Errorf("genrule: cmd: %v", err)
	}
	ws := ctx.Workspace()
	env := map[string]string{"PATH": ws.Settings.Path}
	for _, name := range ws.Settings.ActionEnv {
		if v, ok := ctx.LookupEnv(name); ok {
			env[name] = v
		}
	}
	for k, v := range ctx.Dict("env") {
		env[k] = v
	}
	inputs := append(append([]*engine.File(nil), srcs...), tools...)
	desc := ctx.String("message")
	if desc == "" {
		desc = "Executing genrule " + ctx.Label().String()
	}
	ctx.AddAction(&engine.Action{
		Mnemonic:    "Genrule",
		Description: desc,
		Inputs:      inputs,
		Outputs:     outs,
		Argv:        []string{shell, "-eo", "pipefail", "-c", cmd},
		Env:         env,
		Tools:       []string{ctx.ToolIdentity(shell)},
		Sandbox:     true,
	})
	ctx.Provide(outs...)
	return nil
}

// expandCommand replaces Bazel's make variables in a genrule command.
func expandCommand(ctx *engine.AnalysisContext, cmd string, srcs, outs []*engine.File) (string, error) {
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(cmd) {
			return "", fmt.Errorf("trailing $: write $$ for a literal $")
		}
		switch next := cmd[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '@':
			if len(outs) != 1 {
				return "", fmt.Errorf("$@ needs exactly one output, and outs has %d; use $(OUTS) or $(location NAME)", len(outs))
			}
			b.WriteString(quote(outs[0].Path))
			i++
		case '<':
			if len(srcs) != 1 {
				return "", fmt.Errorf("$< needs exactly one source, and srcs has %d files; use $(SRCS) or $(location LABEL)", len(srcs))
			}
			b.WriteString(quote(srcs[0].Path))
			i++
		case '(':
			end := strings.IndexByte(cmd[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("unterminated $( at offset %d", i)
			}
			expr := cmd[i+2 : i+end]
			val, err := makeVariable(ctx, expr, srcs, outs)
			if err != nil {
				return "", err
			}
			b.WriteString(val)
			i += end
		default:
			word := cmd[i+1:]
			if end := strings.IndexFunc(word, func(r rune) bool {
				return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '{' || r == '}')
			}); end >= 0 {
				word = word[:end]
			}
			if word == "" {
				word = string(next)
			}
			return "", fmt.Errorf("$%s: pipe expands $(...), $@, $< and $$ only; write $$%s for a shell variable", word, word)
		}
	}
	return b.String(), nil
}

func makeVariable(ctx *engine.AnalysisContext, expr string, srcs, outs []*engine.File) (string, error) {
	fn, arg, hasArg := strings.Cut(strings.TrimSpace(expr), " ")
	arg = strings.TrimSpace(arg)
	switch fn {
	case "SRCS":
		return joinPaths(srcs), nil
	case "OUTS":
		return joinPaths(outs), nil
	case "RULEDIR":
		return quote(ctx.OutDir()), nil
	case "location", "locations", "execpath", "execpaths", "rootpath", "rootpaths":
		if !hasArg || arg == "" {
			return "", fmt.Errorf("$(%s) needs a label, as in $(%s :name)", fn, fn)
		}
		files, err := locate(ctx, arg, outs)
		if err != nil {
			return "", fmt.Errorf("$(%s %s): %v", fn, arg, err)
		}
		if !strings.HasSuffix(fn, "s") && len(files) != 1 {
			return "", fmt.Errorf("$(%s %s) names %d files; use $(%ss %s)", fn, arg, len(files), fn, arg)
		}
		return joinPaths(files), nil
	}
	return "", fmt.Errorf("unknown make variable $(%s): pipe knows $(SRCS), $(OUTS), $(RULEDIR), $(location L) and $(locations L); write $$(...) for shell command substitution", expr)
}

// locate finds the files of label s among the genrule's srcs, tools and outs.
func locate(ctx *engine.AnalysisContext, s string, outs []*engine.File) ([]*engine.File, error) {
	l, err := engine.ParseLabel(s, ctx.Label().Pkg)
	if err != nil {
		return nil, err
	}
	if l.Pkg == ctx.Label().Pkg {
		for _, o := range outs {
			if o.Path == ctx.OutDir()+"/"+l.Name {
				return []*engine.File{o}, nil
			}
		}
	}
	for _, attr := range []string{"srcs", "tools"} {
		for _, dl := range ctx.Labels(attr) {
			if dl == l {
				files := ctx.FilesOf(dl)
				if len(files) == 0 {
					return nil, fmt.Errorf("%s provides no files", l)
				}
				return files, nil
			}
		}
	}
	return nil, fmt.Errorf("%s is not in srcs, tools or outs of this genrule; add it to one of them", l)
}

func joinPaths(files []*engine.File) string {
	ps := make([]string, len(files))
	for i, f := range files {
		ps[i] = quote(f.Path)
	}
	return strings.Join(ps, " ")
}

// quote shell-quotes p when it holds characters the shell would interpret.
func quote(p string) string {
	safe := true
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@", r)) {
			safe = false
			break
		}
	}
	if safe && p != "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
