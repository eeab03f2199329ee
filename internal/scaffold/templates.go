package scaffold

import (
	"bytes"
	"embed"
	"fmt"
	"sync"
	"text/template"
)

// The templates are whole files with text/template actions, named by
// their path below templates/ with a .tmpl suffix; dot files drop their
// dot there.
//
//go:embed all:templates
var templateFS embed.FS

// parsedTemplates caches templates by path: a generation renders each
// per-service template once per combination of options.
var parsedTemplates sync.Map // name → *template.Template

// previousVersions are the directories below templates/ holding the
// templates of earlier pipe releases that differ from the current ones,
// newest first. A file one of them renders was written by that release
// and not edited since, so generation may replace it.
var previousVersions = []string{"v1"}

// previousRenderings renders every earlier release's version of the
// template at name on data; none when no release had another version.
func previousRenderings(name string, data any) ([][]byte, error) {
	var out [][]byte
	for _, v := range previousVersions {
		prev := v + "/" + name
		if _, err := templateFS.ReadFile("templates/" + prev); err != nil {
			continue
		}
		b, err := render(prev, data)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// render executes the template at name (relative to templates/) on data.
func render(name string, data any) ([]byte, error) {
	t, err := lookupTemplate(name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("scaffold: template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

func lookupTemplate(name string) (*template.Template, error) {
	if t, ok := parsedTemplates.Load(name); ok {
		return t.(*template.Template), nil
	}
	src, err := templateFS.ReadFile("templates/" + name)
	if err != nil {
		return nil, fmt.Errorf("scaffold: no template %s", name)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("scaffold: template %s: %w", name, err)
	}
	parsedTemplates.Store(name, t)
	return t, nil
}
