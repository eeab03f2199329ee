package cdk

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

func TestEsbuildVersion(t *testing.T) {
	mod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/evanw/esbuild (v\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != esbuildModule {
		t.Errorf("go.mod requires esbuild %s; update esbuildModule (%s) to match", m[1], esbuildModule)
	}
}

func TestBuildContext(t *testing.T) {
	got, _, err := buildContext("p",
		[]byte(`{"app": "x", "versionReporting": false, "bundlingStacks": ["A"], "context": {"a": "json", "b": "json", "n": 1}}`),
		[]byte(`{"a": "lookup", "c": "lookup"}`),
		map[string]string{"b": "attr"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"@aws-cdk/core:failSynthOnValidationErrors":false,"a":"json","aws:cdk:bundling-stacks":["A"],"aws:cdk:disable-version-reporting":true,"aws:cdk:enable-asset-metadata":true,"aws:cdk:enable-path-metadata":true,"b":"attr","c":"lookup","n":1}`
	if string(b) != want {
		t.Errorf("context\n  %s\nwant\n  %s", b, want)
	}
	if _, _, err := buildContext("p", []byte(`{"context": []}`), nil, nil); err == nil || err.Error() != `p/cdk.json: "context" must be an object` {
		t.Errorf("error %v", err)
	}
}

func TestStripJSONC(t *testing.T) {
	in := "{\n  // a comment\n  \"a\": \"http://x\", /* block */\n  \"b\": [1, 2,],\n}\n"
	var v map[string]any
	if err := json.Unmarshal(stripJSONC([]byte(in)), &v); err != nil {
		t.Fatalf("%v:\n%s", err, stripJSONC([]byte(in)))
	}
	if v["a"] != "http://x" {
		t.Errorf("got %v", v)
	}
}

func TestPositions(t *testing.T) {
	// A two-line bundle whose map sends line 2, column 5 to src/a.ts:10:3.
	m := `{"version":3,"sources":["../../../p/src/a.ts"],"mappings":";IASE"}`
	bundle := "x\n    y();\n" + inlineMapPrefix + base64.StdEncoding.EncodeToString([]byte(m)) + "\n"
	p := newPositions([]byte(bundle), "dist/p/app/app.js", "/s/dist/p/app/app.js")
	got := p.translate("at f (/s/dist/p/app/app.js:2:5)\n/s/dist/p/app/app.js:2\nat g (/s/dist/p/app/app.js:1:1)")
	want := "at f (p/src/a.ts:10:3)\np/src/a.ts:10\nat g (dist/p/app/app.js:1:1)"
	if got != want {
		t.Errorf("translate:\n%s\nwant\n%s", got, want)
	}
}
