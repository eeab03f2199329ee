package python

import (
	"fmt"

	"github.com/pelletier/go-toml/v2"

	"github.com/pipebuild/pipe/internal/engine"
)

// Pyproject is the part of pyproject.toml a bundle needs.
type Pyproject struct {
	Name         string
	Dependencies []string
}

func readPyproject(ctx *engine.AnalysisContext, path string) (*Pyproject, error) {
	b, err := ctx.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Project struct {
			Name         string   `toml:"name"`
			Dependencies []string `toml:"dependencies"`
		} `toml:"project"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if doc.Project.Name == "" {
		return nil, fmt.Errorf("%s has no [project] name", path)
	}
	return &Pyproject{Name: doc.Project.Name, Dependencies: doc.Project.Dependencies}, nil
}
