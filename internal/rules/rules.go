// Package rules assembles the registry of every rule family pipe ships.
package rules

import (
	"github.com/pipebuild/pipe/internal/engine"
	"github.com/pipebuild/pipe/internal/rules/apimeta"
	"github.com/pipebuild/pipe/internal/rules/cdk"
	"github.com/pipebuild/pipe/internal/rules/core"
	"github.com/pipebuild/pipe/internal/rules/python"
	"github.com/pipebuild/pipe/internal/rules/terraform"
)

// Registry returns a registry holding all of pipe's rules.
func Registry() *engine.Registry {
	reg := engine.NewRegistry()
	core.Register(reg)
	apimeta.Register(reg)
	python.Register(reg)
	cdk.Register(reg)
	terraform.Register(reg)
	return reg
}
