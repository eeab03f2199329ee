package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// tofuHint says how to get OpenTofu; .ci/run does this.
const tofuHint = "build it from the pinned tools module: (cd tools/tofu && go build -o \"$(go env GOPATH)/bin/tofu\" github.com/opentofu/opentofu/cmd/tofu), as .ci/run does"

// Tofu returns the path of OpenTofu's tofu binary, which the terraform
// rules and deploys run. Without it the test stops as Need says.
func Tofu(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("tofu"); err == nil {
		return p
	}
	for _, p := range goBin("tofu") {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Need(t, "tofu (OpenTofu)", tofuHint)
	return ""
}
