package cdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/files"
)

// Context keys the CDK CLI adds to every synth (toolkit-lib's
// contextFromSettings, aws-cdk 2.1148), with the cdk.json settings that
// turn them off.
const (
	ctxPathMetadata     = "aws:cdk:enable-path-metadata"
	ctxAssetMetadata    = "aws:cdk:enable-asset-metadata"
	ctxVersionReporting = "aws:cdk:version-reporting"
	ctxNoVersionReport  = "aws:cdk:disable-version-reporting"
	ctxDisableStaging   = "aws:cdk:disable-asset-staging"
	ctxBundlingStacks   = "aws:cdk:bundling-stacks"
	ctxFailOnValidation = "@aws-cdk/core:failSynthOnValidationErrors"
)

// contextEnvLimit is the most context CDK_CONTEXT_JSON carries; more goes
// to the file CONTEXT_OVERFLOW_LOCATION_ENV names, which aws-cdk-lib also
// reads: Linux refuses a single environment string over 128 KiB.
const contextEnvLimit = 100 << 10

type synthSpec struct {
	tools           *toolchain
	inputs          []*engine.File
	appJS, outDir   *engine.File
	cdkJSON         *engine.File // nil when the package has none
	cdkContext      *engine.File // cdk.context.json, nil when absent
	context         map[string]string
	account, region string
	stacks          []string
	label           engine.Label
	pathEnv         string
	format          string // formatESM or formatCJS, as the app was bundled
}

// buildContext merges context the way the CDK CLI does, lowest precedence
// first: cdk.context.json (cached lookups), cdk.json's "context", the
// target's context attribute (the CLI's -c), then the keys the CLI always
// sets from cdk.json's settings.
// pkg is the package directory, for messages.
func buildContext(pkg string, cdkJSON, cdkContext []byte, attr map[string]string) (map[string]any, map[string]any, error) {
	merged := map[string]any{}
	if cdkContext != nil {
		var m map[string]any
		if err := json.Unmarshal(cdkContext, &m); err != nil {
			return nil, nil, fmt.Errorf("%s: not a JSON object: %v", path.Join(pkg, "cdk.context.json"), err)
		}
		for k, v := range m {
			merged[k] = v
		}
	}
	settings := map[string]any{}
	if cdkJSON != nil {
		if err := json.Unmarshal(cdkJSON, &settings); err != nil {
			return nil, nil, fmt.Errorf("%s: not a JSON object: %v", path.Join(pkg, "cdk.json"), err)
		}
		if c, ok := settings["context"]; ok {
			m, ok := c.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("%s: \"context\" must be an object", path.Join(pkg, "cdk.json"))
			}
			for k, v := range m {
				merged[k] = v
			}
		}
	}
	for k, v := range attr {
		merged[k] = v
	}
	on := func(name string) bool {
		b, ok := settings[name].(bool)
		return !ok || b
	}
	if on("pathMetadata") {
		merged[ctxPathMetadata] = true
	}
	if on("assetMetadata") {
		merged[ctxAssetMetadata] = true
	}
	if on("versionReporting") {
		merged[ctxVersionReporting] = true
	} else {
		merged[ctxNoVersionReport] = true
	}
	if !on("staging") {
		merged[ctxDisableStaging] = true
	}
	if bs, ok := settings["bundlingStacks"]; ok {
		merged[ctxBundlingStacks] = bs
	} else {
		merged[ctxBundlingStacks] = []string{"**"}
	}
	merged[ctxFailOnValidation] = false
	return merged, settings, nil
}

func (s *synthSpec) run(ctx context.Context, ec *engine.ExecContext) error {
	if err := s.tools.checkCDK(); err != nil {
		return err
	}
	var conf engine.Confinement
	if ec.Confined() {
		// Bound read-only by the sandbox: a link would let the app
		// write through to the workspace's file.
		conf.Inputs = s.inputs
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ec.Dir, filepath.FromSlash(s.appJS.Path))), 0o755); err != nil {
			return err
		}
	} else {
		for _, f := range s.inputs {
			if err := mirror(ec.Input(f), filepath.Join(ec.Dir, filepath.FromSlash(f.Path)), f.Dir); err != nil {
				return fmt.Errorf("stage input %s: %w", f.Path, err)
			}
		}
	}
	read := func(f *engine.File) ([]byte, error) {
		if f == nil {
			return nil, nil
		}
		return os.ReadFile(ec.Input(f))
	}
	cdkJSON, err := read(s.cdkJSON)
	if err != nil {
		return err
	}
	cdkContext, err := read(s.cdkContext)
	if err != nil {
		return err
	}
	merged, settings, err := buildContext(s.label.Pkg, cdkJSON, cdkContext, s.context)
	if err != nil {
		return err
	}
	contextJSON, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	tmp := filepath.Join(ec.Dir, ".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	// node looks for packages in node_modules directories above the
	// script before NODE_PATH: one at the top of the staged workspace
	// makes the configured node_modules win over any other up the tree.
	if _, err := os.Lstat(filepath.Join(ec.Dir, "node_modules")); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink(s.tools.NodeModules, filepath.Join(ec.Dir, "node_modules")); err != nil {
			return err
		}
	}
	outDir := ec.Output(s.outDir)
	env := map[string]string{
		"PATH":       s.pathEnv,
		"NODE_PATH":  s.tools.NodeModules,
		"HOME":       tmp,
		"TMPDIR":     tmp,
		"CDK_OUTDIR": outDir,
	}
	if len(contextJSON) > contextEnvLimit {
		overflow := filepath.Join(tmp, "context-overflow.json")
		if err := os.WriteFile(overflow, contextJSON, 0o644); err != nil {
			return err
		}
		env["CDK_CONTEXT_JSON"] = "{}"
		env["CONTEXT_OVERFLOW_LOCATION_ENV"] = overflow
	} else {
		env["CDK_CONTEXT_JSON"] = string(contextJSON)
	}
	// The CLI's --no-validation, or "validation": false in cdk.json,
	// turns off aws-cdk-lib's built-in template validation, most of the
	// synth's time in small apps.
	if v, ok := settings["validation"].(bool); ok && !v {
		env["CDK_VALIDATION"] = "false"
	}
	if s.account != "" {
		env["CDK_DEFAULT_ACCOUNT"] = s.account
	}
	if s.region != "" {
		env["CDK_DEFAULT_REGION"] = s.region
	}

	appAbs := filepath.Join(ec.Dir, filepath.FromSlash(s.appJS.Path))
	// node loads app.js as the "type" of the nearest package.json says.
	// Without one of its own beside the bundle, node would look above the
	// scratch directory and find the workspace's: an undeclared input that
	// decides whether the bundle runs at all.
	if err := writeModuleType(filepath.Dir(appAbs), s.format); err != nil {
		return err
	}
	bundle, err := os.ReadFile(ec.Input(s.appJS))
	if err != nil {
		return err
	}
	// node and process.cwd() name files by their physical path, which
	// differs from ec.Dir when the workspace is reached through a symlink.
	scratches := []string{ec.Dir}
	if real, err := filepath.EvalSymlinks(ec.Dir); err == nil && real != ec.Dir {
		scratches = append(scratches, real)
	}
	var apps []string
	for _, d := range scratches {
		apps = append(apps, filepath.Join(d, filepath.FromSlash(s.appJS.Path)))
	}
	// aws-cdk-lib's validation report names files relative to the cwd.
	apps = append(apps, s.appJS.Path)
	pos := newPositions(bundle, s.appJS.Path, apps...)
	// clean turns what node printed into what the user can open: TypeScript
	// positions, workspace paths.
	clean := func(text string) string {
		text = pos.translate(text)
		for _, d := range scratches {
			text = strings.ReplaceAll(text, d+"/", "")
		}
		return text
	}
	stdout, stderr, runErr := runNode(ctx, ec, s.tools, ec.Dir, env, conf, appAbs)
	if out := clean(stdout); strings.TrimSpace(out) != "" {
		ec.Stdout.Write([]byte(out))
	}
	errText := strings.TrimLeft(shortenLines(clean(stderr)), "\n")
	if strings.TrimSpace(errText) != "" {
		ec.Stderr.Write([]byte(errText))
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := errorLine(errText)
		if msg == "" {
			msg = runErr.Error()
		}
		if strings.Contains(msg, "Cannot find asset at ") {
			msg += fmt.Sprintf(" (node sees only the declared inputs: add the target that builds it to deps of %s)", s.label)
		}
		if where := pos.firstSource(stderr); where != "" {
			return fmt.Errorf("synth failed at %s: %s", where, msg)
		}
		return fmt.Errorf("synth failed: %s", msg)
	}
	if err := relocate(outDir, s.appJS.Path, scratches, clean); err != nil {
		return err
	}
	return s.checkAssembly(ec, outDir)
}

// writeModuleType writes the package.json that makes node load the .js
// files of dir in the given format.
func writeModuleType(dir, format string) error {
	typ := "commonjs"
	if format == formatESM {
		typ = "module"
	}
	f, err := os.OpenFile(filepath.Join(dir, "package.json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write the bundle's package.json: %w", err)
	}
	if _, err := fmt.Fprintf(f, "{\"type\": %q}\n", typ); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// relocate rewrites the paths the CDK records in the assembly's metadata
// (creation stack traces, validation reports) from the scratch directory
// the app ran in to workspace paths, and bundle positions to TypeScript
// ones: the assembly is then the same wherever it was synthesized, and its
// traces point at files the user has.
func relocate(outDir, appRel string, scratches []string, clean func(string) string) error {
	return filepath.WalkDir(outDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if strings.HasPrefix(de.Name(), "asset.") {
				return filepath.SkipDir // the user's files, not the CDK's
			}
			return nil
		}
		if !strings.HasSuffix(de.Name(), ".json") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, d := range scratches {
			if bytes.Contains(b, []byte(d)) || bytes.Contains(b, []byte(appRel)) {
				return os.WriteFile(p, []byte(clean(string(b))), 0o644)
			}
		}
		return nil
	})
}

// runNode runs node with args in dir through the build's sandbox
// (ExecContext.Run, see confine.go): a process group of its own, killed
// with everything it started on cancel or when pipe dies.
func runNode(ctx context.Context, ec *engine.ExecContext, tools *toolchain, dir string, env map[string]string, conf engine.Confinement, args ...string) (string, string, error) {
	var stdout, stderr capped
	conf.Reads = append(conf.Reads, tools.reads()...)
	err := ec.Run(ctx, engine.Command{
		Argv: append([]string{tools.Node}, args...), Env: env, Dir: dir,
		Stdout: &stdout, Stderr: &stderr, Confinement: conf,
	})
	var ce *engine.CommandError
	if errors.As(err, &ce) {
		if ce.ExitCode < 0 {
			err = fmt.Errorf("node killed by signal %s", ce.Signal)
		} else {
			err = fmt.Errorf("node exited with status %d", ce.ExitCode)
		}
	}
	return stdout.String(), stderr.String(), err
}

// capped keeps the first MiB of a stream: enough for any stack trace,
// bounded for an app that prints in a loop.
type capped struct {
	buf     bytes.Buffer
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	room := max((1<<20)-c.buf.Len(), 0)
	if room < len(p) {
		c.dropped += len(p) - room
		p = p[:room]
	}
	c.buf.Write(p)
	return n, nil
}

func (c *capped) String() string {
	if c.dropped > 0 {
		return c.buf.String() + fmt.Sprintf("\n… %d more bytes not shown\n", c.dropped)
	}
	return c.buf.String()
}

// shortenLines cuts lines no one can read: node shows the source line an
// uncaught error was thrown from, and aws-cdk-lib's are minified, so one
// throw prints kilobytes of code and a caret line as wide.
func shortenLines(text string) string {
	const limit = 400
	lines := strings.Split(text, "\n")
	out := lines[:0]
	for _, l := range lines {
		if len(l) > limit {
			if t := strings.TrimSpace(l); t == "" || t == "^" {
				continue
			}
			// The "file.js:1" header above a minified line says where in
			// a library the throw was: no help without the line.
			if n := len(out); n > 0 && throwSiteRE().MatchString(out[n-1]) {
				out = out[:n-1]
				continue
			}
			l = l[:160] + fmt.Sprintf(" … (%d more bytes)", len(l)-160)
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

var (
	// errorLineRE finds the message of an uncaught error in node's
	// stderr: "Error: boom", "ValidationError: ...", "TypeError [ERR_X]: ...".
	errorLineRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:[A-Za-z_$][\w$]*)?(?:Error|Exception)(?: \[[^\]]*\])?: .+`)
	})
	throwSiteRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\S+\.[cm]?js:\d+$`) })
	// cdkErrorRE is how aws-cdk-lib's own errors print: "«CannotFindAsset» Cannot find asset at ...".
	cdkErrorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^«([^»]+)» (.+)`) })
)

func errorLine(stderr string) string {
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := cdkErrorRE().FindStringSubmatch(l); m != nil {
			return m[1] + ": " + m[2]
		}
		if errorLineRE().MatchString(l) {
			return l
		}
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Node.js v") && !strings.HasPrefix(l, "at ") {
			last = l
		}
	}
	return last
}

// metadata maps construct paths to their metadata entries.
type metadata map[string][]struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// manifest is the part of a cloud assembly's manifest.json pipe checks.
type manifest struct {
	Artifacts map[string]struct {
		Type        string `json:"type"`
		DisplayName string `json:"displayName"`
		Properties  struct {
			DirectoryName string `json:"directoryName"`
		} `json:"properties"`
		Metadata metadata `json:"metadata"`
		// Newer assemblies keep a stack's metadata in a file of its own.
		AdditionalMetadataFile string `json:"additionalMetadataFile"`
	} `json:"artifacts"`
	Missing []struct {
		Key      string `json:"key"`
		Provider string `json:"provider"`
	} `json:"missing"`
}

// checkAssembly does what the CDK CLI does after running an app: it fails
// on error annotations and on context lookups the app still needs, and
// shows warnings. It also checks that every stack the target names exists.
func (s *synthSpec) checkAssembly(ec *engine.ExecContext, outDir string) error {
	var stacks, errs, missing []string
	var walk func(dir, prefix string) error
	walk = func(dir, prefix string) error {
		b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			return fmt.Errorf("the app exited without writing a cloud assembly (%v): does it call app.synth() or construct an App?", err)
		}
		var m manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: %v", filepath.Join(dir, "manifest.json"), err)
		}
		for _, miss := range m.Missing {
			missing = append(missing, fmt.Sprintf("%s (%s)", miss.Key, miss.Provider))
		}
		ids := make([]string, 0, len(m.Artifacts))
		for id := range m.Artifacts {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			a := m.Artifacts[id]
			switch a.Type {
			case "aws:cloudformation:stack":
				name := a.DisplayName
				if name == "" {
					name = prefix + id
				}
				stacks = append(stacks, name)
			case "cdk:cloud-assembly":
				if d := a.Properties.DirectoryName; d != "" {
					name := a.DisplayName
					if name == "" {
						name = id
					}
					if err := walk(filepath.Join(dir, d), name+"/"); err != nil {
						return err
					}
				}
			}
			md := a.Metadata
			if f := a.AdditionalMetadataFile; f != "" {
				b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
				if err != nil {
					return fmt.Errorf("the assembly's %s: %v", f, err)
				}
				var more metadata
				if err := json.Unmarshal(b, &more); err != nil {
					return fmt.Errorf("the assembly's %s: %v", f, err)
				}
				if md == nil {
					md = metadata{}
				}
				for p, es := range more {
					md[p] = append(md[p], es...)
				}
			}
			paths := make([]string, 0, len(md))
			for p := range md {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				for _, e := range md[p] {
					text, ok := e.Data.(string)
					if !ok {
						b, _ := json.Marshal(e.Data)
						text = string(b)
					}
					switch e.Type {
					case "aws:cdk:error":
						errs = append(errs, fmt.Sprintf("[Error at %s] %s", p, text))
					case "aws:cdk:warning":
						ec.Logf("[Warning at %s] %s", p, text)
					}
				}
			}
		}
		return nil
	}
	if err := walk(outDir, ""); err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("the app reported %d error(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("the app needs context lookups, which pipe does not make (a build never calls AWS): %s; record their values in %s (the CDK CLI writes them there when it synthesizes the app with AWS credentials) and commit it",
			strings.Join(missing, ", "), path.Join(s.label.Pkg, "cdk.context.json"))
	}
	for _, want := range s.stacks {
		found := false
		for _, st := range stacks {
			if ok, _ := path.Match(want, st); ok {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("stacks: %q matches no stack of the assembly (it has %s)", want, strings.Join(stacks, ", "))
		}
	}
	return nil
}

// mirror puts an input at its workspace path in the scratch directory the
// app runs in, so the app sees the declared inputs and nothing else. Hard
// links, not copies: a Python bundle has thousands of files, and copying
// them cost more than the synth itself. Copies where linking fails (another
// file system).
func mirror(src, dst string, dir bool) error {
	return engine.StageTree(src, dst, dir, files.LinkOrCopy)
}
