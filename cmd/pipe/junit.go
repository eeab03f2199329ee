package main

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// junitSuites returns the <testsuite> elements of a JUnit XML report, each
// as XML text, for a report of many targets. Their content is kept as the
// test runner wrote it.
func junitSuites(data []byte) ([]string, error) {
	var root struct {
		XMLName xml.Name
		Attrs   []xml.Attr     `xml:",any,attr"`
		Inner   string         `xml:",innerxml"`
		Suites  []junitElement `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	switch root.XMLName.Local {
	case "testsuite":
		return []string{junitElement{Attrs: root.Attrs, Inner: root.Inner}.render()}, nil
	case "testsuites":
		var out []string
		for _, s := range root.Suites {
			out = append(out, s.render())
		}
		return out, nil
	}
	return nil, fmt.Errorf("not a JUnit XML report: its root is <%s>", root.XMLName.Local)
}

// junitElement is a <testsuite> element as read: its attributes and its
// content, unparsed.
type junitElement struct {
	Attrs []xml.Attr `xml:",any,attr"`
	Inner string     `xml:",innerxml"`
}

func (e junitElement) render() string {
	var b strings.Builder
	b.WriteString("<testsuite")
	for _, a := range e.Attrs {
		fmt.Fprintf(&b, " %s=\"%s\"", a.Name.Local, xmlEscape(a.Value))
	}
	b.WriteString(">")
	b.WriteString(e.Inner)
	b.WriteString("</testsuite>")
	return b.String()
}
