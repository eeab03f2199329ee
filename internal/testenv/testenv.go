// Package testenv is what pipe's tests need from the machine, in one
// place: the real servers they run against (nginx with WebDAV for the HTTP
// cache, MinIO and moto for S3, bazel-remote for REAPI over gRPC, moto for
// CloudFormation), and the rule for
// a component that is missing. That rule is Need: the test is skipped
// loudly, or fails when PIPE_REQUIRE_ALL=1, so CI, which installs every
// component, cannot pass by skipping.
//
// It imports none of pipe's packages, so the tests of any of them can use
// it.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Need stops a test that cannot run because what is missing, saying how
// to fix it. The skip is printed on stderr too, so it shows without -v.
// Under PIPE_REQUIRE_ALL=1 (CI, after .ci/run installed everything) the
// test fails instead.
//
// Main, which every package whose tests call Need runs from TestMain,
// sums the skips up where plain go test ./... shows them.
func Need(t testing.TB, what, fix string) {
	t.Helper()
	msg := fmt.Sprintf("%s: %s is missing: %s", t.Name(), what, fix)
	if os.Getenv("PIPE_REQUIRE_ALL") == "1" {
		t.Fatal(msg + " (PIPE_REQUIRE_ALL=1: every component must be present)")
	}
	skipped.add(t.Name(), what, fix)
	fmt.Fprintln(os.Stderr, "SKIP "+msg)
	t.Skip(msg)
}

// moduleRoot is the directory of the go.mod above the working directory:
// the checkout, which a test's working directory (its package's) is in.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// CDKNodeModules returns the node_modules of the cdk tests' npm fixture
// (aws-cdk-lib, constructs, typescript, @types/node and the CDK CLI, the
// versions `pipe new fastapi` pins), after checking that node and the
// fixture are there; without them the test stops as Need says.
func CDKNodeModules(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		Need(t, "node", "install Node.js 20 or later")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	nm := filepath.Join(root, "internal", "rules", "cdk", "testdata", "npm", "node_modules")
	for _, f := range []string{"aws-cdk-lib/package.json", "constructs/package.json", "typescript/package.json", "@types/node/package.json", ".bin/cdk"} {
		if _, err := os.Stat(filepath.Join(nm, filepath.FromSlash(f))); err != nil {
			Need(t, "the cdk test fixture's node_modules ("+f+")", "run npm ci --prefix internal/rules/cdk/testdata/npm")
		}
	}
	return nm
}

// installHint says how to install the programs RequireBinary is asked for.
func installHint(name string) string {
	switch name {
	case "nginx":
		return "apt-get install -y nginx"
	case "minio":
		return "go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c (the version .ci/run pins)"
	case "bazel-remote":
		return bazelRemoteHint
	}
	return "install " + name
}

// RequireBinary returns the path of a program a test needs: name on PATH,
// else the first of also that is an executable file. Without it the test
// stops as Need says.
func RequireBinary(t testing.TB, name string, also ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range also {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Need(t, name, installHint(name))
	return ""
}

// goBin lists where `go install` puts the program name: each
// $GOPATH/bin, $GOBIN and ~/go/bin. Tests look there too because a
// developer's PATH often lacks them.
func goBin(name string) []string {
	var dirs []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		for _, d := range filepath.SplitList(gp) {
			dirs = append(dirs, filepath.Join(d, "bin", name))
		}
	}
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, filepath.Join(gb, name))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin", name))
	}
	return dirs
}

// FreePort returns a loopback TCP port that was free a moment ago, for
// servers that cannot be told to pick their own.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
