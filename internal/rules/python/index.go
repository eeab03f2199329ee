package python

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// DefaultIndex is where a requirements.txt bundle looks for wheels when the
// workspace names no mirror.
const DefaultIndex = "https://pypi.org/simple"

// A requirements.txt pins versions and hashes but not files, so a bundle
// built from one finds its wheels on a PEP 503 "simple" index: the page
// <index>/<name>/ links every file, with #sha256= fragments. Only files
// whose hash the requirement allows are candidates; tag priority picks one.

var anchorRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?is)<a\s[^>]*href\s*=\s*["']([^"']+)["'][^>]*>(.*?)</a>`)
})

// indexWheels lists the wheels of req on index that the requirement's
// hashes allow. index is an http(s) simple-index base or file://DIR, a flat
// directory of wheel files (pip's --find-links).
func indexWheels(ctx context.Context, client *http.Client, index string, req Requirement) ([]Wheel, error) {
	allowed := map[string]bool{}
	for _, h := range req.Hashes {
		allowed[strings.ToLower(h)] = true
	}
	name := NormalizeName(req.Name)
	if dir, ok := strings.CutPrefix(index, "file://"); ok {
		return dirWheels(dir, name, req.Version, allowed)
	}
	page := strings.TrimSuffix(index, "/") + "/" + name + "/"
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, page, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(r)
	if err != nil {
		return nil, fmt.Errorf("list %s %s on %s: %w", req.Name, req.Version, page, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list %s %s on %s: HTTP %s", req.Name, req.Version, page, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("list %s %s on %s: %w", req.Name, req.Version, page, err)
	}
	base, _ := url.Parse(page)
	var out []Wheel
	for _, m := range anchorRE().FindAllStringSubmatch(string(body), -1) {
		href, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil {
			continue
		}
		file := html.UnescapeString(strings.TrimSpace(stripTags(m[2])))
		if file == "" {
			file = filepath.Base(href.Path)
		}
		digest, ok := strings.CutPrefix(href.Fragment, "sha256=")
		if !ok || !allowed[strings.ToLower(digest)] || !wheelFor(file, name, req.Version) {
			continue
		}
		href.Fragment = ""
		out = append(out, Wheel{URL: base.ResolveReference(href).String(), Filename: file, SHA256: strings.ToLower(digest)})
	}
	return out, nil
}

var tagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`<[^>]*>`) })

func stripTags(s string) string { return tagRE().ReplaceAllString(s, "") }

// wheelFor reports whether file is a wheel of distribution name at version.
func wheelFor(file, name, version string) bool {
	dist, v, _, err := ParseWheelFilename(file)
	return err == nil && NormalizeName(dist) == name && v == version
}

// dirWheels finds the wheels of name==version in a flat directory, hashing
// each candidate to match the requirement's hashes.
func dirWheels(dir, name, version string, allowed map[string]bool) ([]Wheel, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("python index file://%s: %w", dir, err)
	}
	var out []Wheel
	for _, e := range ents {
		if e.IsDir() || !wheelFor(e.Name(), name, version) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		digest := hex.EncodeToString(sum[:])
		if allowed[digest] {
			out = append(out, Wheel{URL: (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String(), Filename: e.Name(), SHA256: digest, Size: int64(len(b))})
		}
	}
	return out, nil
}
