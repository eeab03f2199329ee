//go:build tools

// Package tools pins OpenTofu, which the terraform rule and deploy tests
// run as the terraform binary. It is a module of its own so pipe's go.mod
// does not carry OpenTofu's dependencies.
package tools

import _ "github.com/opentofu/opentofu/cmd/tofu"
