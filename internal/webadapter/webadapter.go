// Package webadapter holds what pipe writes for the AWS Lambda Web
// Adapter: the run.sh it starts. python_bundle puts it in every bundle and
// `pipe new fastapi` puts the same file in a new service, so the service
// starts locally exactly as the adapter starts it on Lambda. It is its own
// package so that the scaffold, which must not depend on the rules, and
// the python rules share one text.
package webadapter

import "fmt"

// RunScript is the run.sh the AWS Lambda Web Adapter starts: uvicorn
// serving app ("module.path:attribute") on $PORT, else on port.
func RunScript(app string, port int64) string {
	return fmt.Sprintf(`#!/bin/sh
# Started by the AWS Lambda Web Adapter; the bundle root is the import root.
cd "$(dirname "$0")" || exit 1
exec python -m uvicorn %s --host 0.0.0.0 --port ${PORT:-%d}
`, app, port)
}
