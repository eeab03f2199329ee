// Package example writes the workspace pipe's CDK benchmarks time: a copy
// of examples/fastapi/packages/infra (sources, BUILD.star, cdk.json) with
// stand-ins for what it depends on that need Python: the bundle is a
// genrule copying the example's my_api and a run.sh, and metadata.gen.ts is
// a checked-in file (a filegroup). The synth is the example's own.
package example

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pipebuild/pipe/internal/files"
)

// WriteWorkspace copies the example's infra package into ws and writes
// stand-ins for its Python-built dependencies; nm is the node_modules with
// aws-cdk-lib. It runs from the repository root.
func WriteWorkspace(ws, nm string) error {
	example := filepath.Join("examples", "fastapi")
	if _, err := os.Stat(filepath.Join(example, "packages", "infra", "src", "main.ts")); err != nil {
		return fmt.Errorf("run from the repository root: %v", err)
	}
	infra := filepath.Join(example, "packages", "infra")
	err := filepath.WalkDir(infra, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(infra, p)
		if d.IsDir() {
			if d.Name() == "node_modules" || d.Name() == "cdk.out" {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case rel == "BUILD.star", rel == "cdk.json", rel == "tsconfig.json", rel == "package.json", strings.HasPrefix(rel, "src"+string(filepath.Separator)):
			dst := filepath.Join(ws, "packages", "infra", rel)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return files.Copy(p, dst, files.CopyOptions{Perm: 0o644})
		}
		return nil
	})
	if err != nil {
		return err
	}
	metadata := filepath.Join(example, "packages/common/constructs/src/generated/my-api/metadata.gen.ts")
	meta, err := os.ReadFile(metadata)
	if err != nil {
		meta = []byte(metadataStandIn)
	}
	mainPy, err := os.ReadFile(filepath.Join(example, "packages/my-api/my_api/main.py"))
	if err != nil {
		return err
	}
	files := map[string]string{
		"WORKSPACE.star": fmt.Sprintf("workspace(name = \"bench\", node_modules = %q)\n", nm),
		"packages/common/constructs/BUILD.star": `# Stand-in for api_metadata (which needs the app's Python to run).
filegroup(name = "my-api-metadata", srcs = ["src/generated/my-api/metadata.gen.ts"])
`,
		"packages/common/constructs/src/generated/my-api/metadata.gen.ts": string(meta),
		"packages/my-api/my_api/__init__.py":                              "",
		"packages/my-api/my_api/main.py":                                  string(mainPy),
		"packages/my-api/run.sh":                                          "#!/bin/sh\nexec python -m uvicorn my_api.main:app --host 0.0.0.0 --port ${PORT:-8000}\n",
		"packages/my-api/BUILD.star": `# Stand-in for python_bundle: the app and run.sh, without dependencies.
genrule(
    name = "bundle",
    srcs = ["run.sh"] + glob(["my_api/**/*.py"]),
    outs = ["bundle/run.sh", "bundle/my_api/__init__.py", "bundle/my_api/main.py"],
    cmd = "mkdir -p $(RULEDIR)/bundle/my_api && cp packages/my-api/run.sh $(RULEDIR)/bundle/run.sh && cp packages/my-api/my_api/*.py $(RULEDIR)/bundle/my_api/",
)
`,
	}
	for rel, content := range files {
		p := filepath.Join(ws, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

const metadataStandIn = `export const OPERATION_DETAILS = {
  createItemItemsPost: { path: '/items', method: 'POST' },
  getItemItemsItemIdGet: { path: '/items/{item_id}', method: 'GET' },
  'items.list': { path: '/items', method: 'GET' },
} as const;
`

// CleanEnv is the environment without the developer's AWS, CDK and pipe
// settings.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "CDK_") || strings.HasPrefix(kv, "PIPE_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// NodeVersion is node's version, or "missing".
func NodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "missing"
	}
	return strings.TrimSpace(string(out))
}
