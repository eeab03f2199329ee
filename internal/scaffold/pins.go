package scaffold

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/pelletier/go-toml/v2"
)

// pins are the versions a generated pyproject.toml requires, each exactly
// (==), as the Nx generator pins its dependencies.
type pins struct {
	FastAPI, Uvicorn, Powertools, Pytest, Ruff string
}

// defaultPins are the versions pinned when the workspace has no lock:
// those the Nx generator 0.64.1 pins, and current pytest and ruff.
var defaultPins = pins{
	FastAPI:    "0.123.0",
	Uvicorn:    "0.38.0",
	Powertools: "3.23.0",
	Pytest:     "8.4.2",
	Ruff:       "0.14.0",
}

// readPins takes the versions from the workspace's uv.lock when it locks
// them, so a new service uses what the other services already run and
// the lock needs no new resolution; defaultPins for the rest.
func readPins(root string) (pins, error) {
	p := defaultPins
	file := filepath.Join(root, "uv.lock")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	var lock struct {
		Package []struct {
			Name    string `toml:"name"`
			Version string `toml:"version"`
		} `toml:"package"`
	}
	if err := toml.Unmarshal(b, &lock); err != nil {
		return p, usagef("uv.lock: %v: fix the file (or run uv lock) and run pipe new again", describeTOMLError(err))
	}
	for _, pkg := range lock.Package {
		// The version goes into a TOML string and a requirement: only
		// what a PEP 440 version may hold, anything else is ignored.
		if !versionRE().MatchString(pkg.Version) {
			continue
		}
		switch pkg.Name {
		case "fastapi":
			p.FastAPI = pkg.Version
		case "uvicorn":
			p.Uvicorn = pkg.Version
		case "aws-lambda-powertools":
			p.Powertools = pkg.Version
		case "pytest":
			p.Pytest = pkg.Version
		case "ruff":
			p.Ruff = pkg.Version
		}
	}
	return p, nil
}

// describeTOMLError gives a TOML decoding error with its line and column
// when go-toml knows them.
func describeTOMLError(err error) string {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return fmt.Sprintf("line %d, column %d: %s", line, col, de.Error())
	}
	return err.Error()
}

var versionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9][0-9A-Za-z.!+_-]*$`) })
