package webadapter

import "testing"

// TestRunScript pins the text: it is in every bundle's bytes (and so in
// every bundle.zip's digest) and in every generated service.
func TestRunScript(t *testing.T) {
	want := `#!/bin/sh
# Started by the AWS Lambda Web Adapter; the bundle root is the import root.
cd "$(dirname "$0")" || exit 1
exec python -m uvicorn my_api.main:app --host 0.0.0.0 --port ${PORT:-8000}
`
	if got := RunScript("my_api.main:app", 8000); got != want {
		t.Errorf("RunScript =\n%s\nwant\n%s", got, want)
	}
}
