//go:build tools

// Package tools pins bazel-remote, the REAPI cache server pipe's tests run
// against. It is a module of its own so that its dependencies never enter
// pipe's go.mod; .ci/run builds it with
//
//	go build -o BIN github.com/buchgr/bazel-remote/v2
package tools

import _ "github.com/buchgr/bazel-remote/v2"
