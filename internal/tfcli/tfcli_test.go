package tfcli

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// validate -json writes one document; plan and apply -json one message
// per line. Errors become "file:line:col: summary: detail" under the
// directory messages name; warnings are left out.
func TestDiagnostics(t *testing.T) {
	validate := `{"format_version":"1.0","valid":false,"error_count":1,"warning_count":1,"diagnostics":[
{"severity":"error","summary":"Reference to undeclared input variable","detail":"An input variable with the name \"x\" has not been declared.","range":{"filename":"main.tf","start":{"line":3,"column":11,"byte":40},"end":{"line":3,"column":16,"byte":45}}},
{"severity":"warning","summary":"Deprecated","detail":"old"}]}`
	got := Diagnostics([]byte(validate), "infra")
	want := `infra/main.tf:3:11: Reference to undeclared input variable: An input variable with the name "x" has not been declared.`
	if len(got) != 1 || got[0] != want {
		t.Errorf("validate: %q\nwant %q", got, want)
	}
	stream := `{"@level":"info","@message":"Plan: 1 to add","type":"change_summary"}
{"@level":"error","@message":"Error: local-exec provisioner error","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"exit status 1","range":{"filename":"main.tf","start":{"line":8,"column":28,"byte":143},"end":{"line":8,"column":29,"byte":144}}},"type":"diagnostic"}
{"@level":"error","diagnostic":{"severity":"error","summary":"No configuration files"},"type":"diagnostic"}
not json`
	got = Diagnostics([]byte(stream), "infra")
	if strings.Join(got, "\n") != "infra/main.tf:8:28: local-exec provisioner error: exit status 1\nNo configuration files" {
		t.Errorf("stream: %q", got)
	}
}

// A failing command is an *Error with its exit status and diagnostics,
// or the tail of its output when it printed none; a missing binary says
// how to name one.
func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-terraform")
	body := "#!/bin/sh\n" +
		"if [ \"$1\" = plan ]; then echo '{\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"error\",\"summary\":\"Bad\",\"range\":{\"filename\":\"a.tf\",\"start\":{\"line\":2,\"column\":3}}}}'; exit 1; fi\n" +
		"echo \"TF_CLI_ARGS=$TF_CLI_ARGS\" >&2; exit 2\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_CLI_ARGS", "-lock=false")
	c := &CLI{Path: script, CacheDir: dir, PathEnv: "/usr/bin:/bin", ShowDir: "infra"}
	err := c.Run(context.Background(), dir, nil, "plan", "-json")
	var te *Error
	if !errors.As(err, &te) || te.ExitCode != 1 || len(te.Diagnostics) != 1 || te.Diagnostics[0] != "infra/a.tf:2:3: Bad" {
		t.Fatalf("plan: %#v", err)
	}
	err = c.Run(context.Background(), dir, nil, "init")
	if !errors.As(err, &te) || te.ExitCode != 2 || te.Output != "TF_CLI_ARGS=" {
		t.Fatalf("init: %#v (the user's TF_CLI_ARGS must not reach terraform)", err)
	}
	if !strings.Contains(err.Error(), "terraform init in infra failed (exit 2)") {
		t.Errorf("message: %v", err)
	}
	c.Path = filepath.Join(dir, "none")
	if err := c.Run(context.Background(), dir, nil, "init"); err == nil || !strings.Contains(err.Error(), "workspace(terraform = ...)") {
		t.Errorf("missing binary: %v", err)
	}
}

// FuzzDiagnostics: terraform's JSON output of any shape gives lines or
// nothing, never a panic.
func FuzzDiagnostics(f *testing.F) {
	f.Add([]byte(`{"format_version":"1.0","diagnostics":[{"severity":"error","summary":"x","range":{"filename":"a.tf","start":{"line":1,"column":1}}}]}`))
	f.Add([]byte("{\"type\":\"diagnostic\",\"diagnostic\":null}\n{\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"error\"}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		Diagnostics(b, "d")
	})
}

// TestRunThroughExec: with Exec set, the command runs through it with the
// same argv, environment and directory, and its exit status and output
// become the same *Error as a child process's.
func TestRunThroughExec(t *testing.T) {
	dir := t.TempDir()
	var gotArgv, gotEnv []string
	var gotDir string
	c := &CLI{Path: "/opt/tofu", CacheDir: dir, PathEnv: "/usr/bin:/bin", ShowDir: "infra",
		Exec: func(ctx context.Context, argv, env []string, d string, stdout, stderr io.Writer) (int, error) {
			gotArgv, gotEnv, gotDir = argv, env, d
			io.WriteString(stdout, `{"format_version":"1.0","valid":false,"diagnostics":[{"severity":"error","summary":"Bad","range":{"filename":"a.tf","start":{"line":2,"column":3}}}]}`)
			return 1, nil
		}}
	err := c.Run(context.Background(), dir, nil, "validate", "-json")
	var te *Error
	if !errors.As(err, &te) || te.ExitCode != 1 || len(te.Diagnostics) != 1 || te.Diagnostics[0] != "infra/a.tf:2:3: Bad" {
		t.Fatalf("validate: %#v", err)
	}
	if strings.Join(gotArgv, " ") != "/opt/tofu validate -json" || gotDir != dir || !slices.Contains(gotEnv, "TF_PLUGIN_CACHE_DIR="+filepath.Join(dir, "terraform", "plugins")) {
		t.Errorf("Exec got argv %q, dir %q, env %q", gotArgv, gotDir, gotEnv)
	}
	c.Exec = func(context.Context, []string, []string, string, io.Writer, io.Writer) (int, error) {
		return 0, errors.New("no sandbox")
	}
	if err := c.Run(context.Background(), dir, nil, "init"); err == nil || !strings.Contains(err.Error(), "run /opt/tofu: no sandbox") {
		t.Errorf("Exec that could not run: %v", err)
	}
}
