// Package python holds the Python rules: python_bundle (uv.lock → Lambda
// bundle with run.sh), openapi_schema, fastapi_serve, py_test, py_lint and
// the fastapi_project macro; the toolchains (interpreters found or
// downloaded) and the locked host environment the Python actions run on;
// and the uv.lock reader, PEP 508 markers and PEP 425 wheel selection
// they rest on.
package python

import "github.com/pipebuild/pipe/internal/engine"

// Register adds the Python rules and macros to reg.
func Register(reg *engine.Registry) {
	reg.Register(Bundle)
	reg.Register(OpenAPISchema)
	reg.Register(FastAPIServe)
	reg.Register(PyTest)
	reg.Register(PyLint)
	reg.RegisterMacro(FastAPIProject)
}
