package scaffold

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/pipebuild/pipe/internal/engine"
)

var (
	projectCallRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^fastapi_project\(`) })
	portRE        = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^\s*port\s*=\s*(\d+)\s*,?\s*$`) })
)

// servePort is the port svc's :serve listens on. A service generated
// before keeps the port its BUILD.star declares; a new one takes the
// lowest port from FirstPort up that no other fastapi_project of the
// workspace uses, as the Nx generator assigns them, so every service can
// be served at once and a service's port never changes when another is
// added.
func servePort(root string, svc service) (int, error) {
	own := filepath.Join(root, filepath.FromSlash(svc.Dir), engine.BuildFile)
	if b, err := os.ReadFile(own); err == nil {
		if ports := projectPorts(b); len(ports) == 1 {
			return ports[0], nil
		}
	}
	used := map[int]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // an unreadable directory holds no service pipe can build
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "dist" || name == "__pycache__") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() != engine.BuildFile || p == own {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, port := range projectPorts(b) {
			used[port] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	port := FirstPort
	for used[port] {
		port++
	}
	return port, nil
}

// projectPorts lists the port of every fastapi_project call in a BUILD
// file: its port attribute, or the rule's default, FirstPort.
func projectPorts(build []byte) []int {
	var ports []int
	calls := projectCallRE().FindAllIndex(build, -1)
	for i, c := range calls {
		end := len(build)
		if i+1 < len(calls) {
			end = calls[i+1][0]
		}
		// The call ends at the first line that is a lone ")".
		body := build[c[1]:end]
		if close := strings.Index(string(body), "\n)"); close >= 0 {
			body = body[:close]
		}
		port := FirstPort
		if m := portRE().FindSubmatch(body); m != nil {
			if n, err := strconv.Atoi(string(m[1])); err == nil {
				port = n
			}
		}
		ports = append(ports, port)
	}
	return ports
}
