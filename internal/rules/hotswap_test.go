package rules

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/deploy"
	"github.com/pipebuild/pipe/internal/engine"
)

const (
	outDir   = "dist/infra/infra/cdk.out"
	bundle   = "dist/api/bundle"
	bundleZ  = "dist/api/bundle.zip"
	siteDir  = "dist/web/site"
	appJS    = "dist/infra/infra/app.js"
	cdkJSON  = "infra/cdk.json"
	dataFile = "dist/data/table.json"
)

var (
	hashA = strings.Repeat("a", 64) // the bundle's staged copy
	hashB = strings.Repeat("b", 64) // the site's
)

func digestOf(s string) cache.Digest { return cache.Digest(sha256.Sum256([]byte(s))) }

// synthFixture is a synth action of a cdk_stack whose app stages a
// python_bundle directory and a genrule's files as assets, with the
// assembly it made.
type synthFixture struct {
	root   string
	synth  *engine.Action
	parts  *engine.KeyParts
	result *cache.ActionResult
	bases  *SynthBases
	zips   map[string]string
}

// bundleTree is the python_bundle directory's tree digest for its files.
func bundleTree(files map[string]string) cache.Digest {
	r := &cache.ActionResult{Dirs: []string{bundle}}
	for rel, content := range files {
		r.Outputs = append(r.Outputs, cache.OutputFile{Path: bundle + "/" + rel, Digest: digestOf(content), Executable: rel == "run.sh"})
	}
	return engine.TreeDigest(r, bundle)
}

func newSynthFixture(t *testing.T) *synthFixture {
	t.Helper()
	root := t.TempDir()
	gen := &engine.Action{Mnemonic: "Gen"}
	file := func(p string, dir bool) *engine.File { return &engine.File{Path: p, Dir: dir, Generator: gen} }
	synth := &engine.Action{
		Owner: engine.Label{Pkg: "infra", Name: "infra"}, Mnemonic: SynthMnemonic,
		Inputs: []*engine.File{
			file(appJS, false), file(bundle, true), file(bundleZ, false),
			file(siteDir+"/index.html", false), file(siteDir+"/css/a.css", false),
			file(dataFile, false), {Path: cdkJSON},
		},
		Outputs: []*engine.File{{Path: outDir, Dir: true}},
	}
	bundleFiles := map[string]string{"run.sh": "exec python\n", "my_api/main.py": "v1\n"}
	parts := &engine.KeyParts{Rule: "cdk_stack 1", Mnemonic: SynthMnemonic, Identity: "cdksynth context={}", Tools: []string{"node 20"}, Outputs: []string{outDir + "/"}}
	for _, in := range []engine.KeyInput{
		{Path: appJS, Digest: digestOf("app v1")},
		{Path: bundle, Digest: bundleTree(bundleFiles)},
		{Path: bundleZ, Digest: digestOf("zip v1")},
		{Path: dataFile, Digest: digestOf("table v1")},
		{Path: siteDir + "/css/a.css", Digest: digestOf("css v1")},
		{Path: siteDir + "/index.html", Digest: digestOf("html v1")},
		{Path: cdkJSON, Digest: digestOf("cdk.json v1")},
	} {
		parts.Inputs = append(parts.Inputs, in)
	}
	sortInputs(parts)
	r := &cache.ActionResult{Dirs: []string{outDir}}
	put := func(rel, content string, exec bool) {
		p := outDir + "/" + rel
		r.Outputs = append(r.Outputs, cache.OutputFile{Path: p, Digest: digestOf(content), Executable: exec})
		abs := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(abs, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("manifest.json", "{}", false)
	put("Api.template.json", `{"Resources":{"Fn":{"Properties":{"Code":{"S3Key":"`+hashA+`.zip"}}}}}`, false)
	for rel, content := range bundleFiles {
		put("asset."+hashA+"/"+rel, content, rel == "run.sh")
	}
	put("asset."+hashB+"/index.html", "html v1", false)
	put("asset."+hashB+"/css/a.css", "css v1", false)
	return &synthFixture{root: root, synth: synth, parts: parts, result: r,
		bases: &SynthBases{Dir: filepath.Join(root, ".pipe", "hotswap", "synth")}, zips: map[string]string{bundleZ: bundle}}
}

func sortInputs(p *engine.KeyParts) {
	in := p.Inputs
	for i := range in {
		for j := i + 1; j < len(in); j++ {
			if in[j].Path < in[i].Path {
				in[i], in[j] = in[j], in[i]
			}
		}
	}
}

// with returns a copy of the fixture's parts with the input at path given
// another digest.
func (f *synthFixture) with(path string, content string) *engine.KeyParts {
	p := *f.parts
	p.Inputs = append([]engine.KeyInput(nil), f.parts.Inputs...)
	for i := range p.Inputs {
		if p.Inputs[i].Path == path {
			p.Inputs[i].Digest = digestOf(content)
			return &p
		}
	}
	panic("no input " + path)
}

func (f *synthFixture) keep(t *testing.T) {
	t.Helper()
	if err := f.bases.Keep(f.root, f.synth, f.parts, f.result); err != nil {
		t.Fatal(err)
	}
}

func TestSynthBaseReusableForAssetsOnly(t *testing.T) {
	f := newSynthFixture(t)
	if r, why := f.bases.Reusable(f.synth, f.parts, f.zips); r != nil || !strings.Contains(why, "no assembly kept") {
		t.Fatalf("before Keep: %v %q, want no assembly", r, why)
	}
	f.keep(t)
	// The kept assembly holds the CDK's files, not the staged copies of
	// input directories.
	kept := filepath.Join(f.bases.dir(f.synth), "cdk.out")
	if _, err := os.Stat(filepath.Join(kept, "Api.template.json")); err != nil {
		t.Errorf("template not kept: %v", err)
	}
	for _, h := range []string{hashA, hashB} {
		if _, err := os.Stat(filepath.Join(kept, "asset."+h)); !os.IsNotExist(err) {
			t.Errorf("staged asset.%s… kept (%v), want it read from its input directory", h[:4], err)
		}
	}

	r, why := f.bases.Reusable(f.synth, f.parts, f.zips)
	if r == nil || len(r.Changed) != 0 {
		t.Fatalf("same inputs: %v %q, want a reuse with nothing changed", r, why)
	}

	// The bundle directory and its zip changed: the bundle's asset.
	p := f.with(bundle, "tree v2")
	for i := range p.Inputs {
		if p.Inputs[i].Path == bundleZ {
			p.Inputs[i].Digest = digestOf("zip v2")
		}
	}
	r, why = f.bases.Reusable(f.synth, p, f.zips)
	if r == nil || len(r.Changed) != 1 || r.Changed["asset."+hashA] != bundle {
		t.Fatalf("bundle changed: %+v %q, want asset.%s… from %s changed", r, why, hashA[:4], bundle)
	}
	// A genrule's file, in a directory staged whole.
	r, why = f.bases.Reusable(f.synth, f.with(siteDir+"/css/a.css", "css v2"), f.zips)
	if r == nil || r.Changed["asset."+hashB] != siteDir {
		t.Fatalf("site file changed: %+v %q, want asset.%s… from %s changed", r, why, hashB[:4], siteDir)
	}
}

func TestSynthBaseNotReusable(t *testing.T) {
	f := newSynthFixture(t)
	f.keep(t)
	identity := *f.parts
	identity.Identity = `cdksynth context={"stage":"prod"}`
	tools := *f.parts
	tools.Tools = []string{"node 22"}
	fewer := *f.parts
	fewer.Inputs = f.parts.Inputs[1:]
	for _, c := range []struct {
		name  string
		parts *engine.KeyParts
		why   string
	}{
		{"the app", f.with(appJS, "app v2"), "input " + appJS + " changed, and it is not a directory the assembly stages as an asset"},
		{"cdk.json", f.with(cdkJSON, "cdk.json v2"), "input " + cdkJSON + " changed"},
		{"a generated file no asset copies", f.with(dataFile, "table v2"), "input " + dataFile + " changed"},
		{"the context", &identity, "step parameters changed"},
		{"a tool", &tools, "tool identity changed"},
		{"the inputs", &fewer, "not the same files"},
	} {
		if r, why := f.bases.Reusable(f.synth, c.parts, f.zips); r != nil || !strings.Contains(why, c.why) {
			t.Errorf("%s changed: %+v %q, want no reuse because %q", c.name, r, why, c.why)
		}
	}
	// A zip whose directory is no asset is an input like any other.
	if r, why := f.bases.Reusable(f.synth, f.with(bundleZ, "zip v2"), map[string]string{}); r != nil {
		t.Errorf("a zip no asset copies changed: %+v %q, want no reuse", r, why)
	}
}

// Two input directories with the same content: which one the app staged
// cannot be told, so a change to either synthesizes.
func TestSynthBaseAmbiguousAsset(t *testing.T) {
	f := newSynthFixture(t)
	gen := f.synth.Inputs[0].Generator
	twin := "dist/web/twin"
	f.synth.Inputs = append(f.synth.Inputs, &engine.File{Path: twin + "/index.html", Generator: gen}, &engine.File{Path: twin + "/css/a.css", Generator: gen})
	f.parts.Inputs = append(f.parts.Inputs, engine.KeyInput{Path: twin + "/index.html", Digest: digestOf("html v1")}, engine.KeyInput{Path: twin + "/css/a.css", Digest: digestOf("css v1")})
	sortInputs(f.parts)
	f.keep(t)
	// The twin's copy is kept: no input directory stands for it.
	if _, err := os.Stat(filepath.Join(f.bases.dir(f.synth), "cdk.out", "asset."+hashB, "index.html")); err != nil {
		t.Errorf("the ambiguous staged asset was not kept: %v", err)
	}
	if r, why := f.bases.Reusable(f.synth, f.with(siteDir+"/index.html", "html v2"), f.zips); r != nil || !strings.Contains(why, "input "+siteDir+"/index.html changed") {
		t.Errorf("ambiguous asset's input changed: %+v %q, want no reuse", r, why)
	}
}

func TestReuseApply(t *testing.T) {
	f := newSynthFixture(t)
	f.keep(t)
	p := f.with(bundle, "tree v2")
	r, why := f.bases.Reusable(f.synth, p, f.zips)
	if r == nil {
		t.Fatal(why)
	}
	tpl := `{"Resources":{"Fn":{"Properties":{"Code":{"S3Key":"` + hashA + `.zip"}}},"Web":{"Properties":{"Key":"` + hashB + `.zip"}}}}`
	stack := func() *deploy.Stack {
		return &deploy.Stack{ID: "Api", Template: []byte(tpl), Assets: []*deploy.FileAsset{
			{ID: hashA, Source: filepath.Join(r.Dir, "asset."+hashA), Zip: true, Key: hashA + ".zip"},
			{ID: hashB, Source: filepath.Join(r.Dir, "asset."+hashB), Zip: true, Key: hashB + ".zip"},
		}}
	}
	s := stack()
	if err := r.Apply(f.root, []*deploy.Stack{s}); err != nil {
		t.Fatal(err)
	}
	a, b := s.Assets[0], s.Assets[1]
	if a.Source != filepath.Join(f.root, bundle) || a.Key == hashA+".zip" || len(a.Key) != 68 || !strings.Contains(string(s.Template), `"S3Key":"`+a.Key+`"`) || strings.Contains(string(s.Template), hashA) {
		t.Errorf("changed asset: source %s key %s template %s; want the bundle directory under a new key the template names", a.Source, a.Key, s.Template)
	}
	if b.Source != filepath.Join(f.root, siteDir) || b.Key != hashB+".zip" || !strings.Contains(string(s.Template), hashB) {
		t.Errorf("unchanged asset: source %s key %s; want its input directory under its own key", b.Source, b.Key)
	}
	// The same content gives the same key; other content another.
	s2 := stack()
	r2, _ := f.bases.Reusable(f.synth, p, f.zips)
	if err := r2.Apply(f.root, []*deploy.Stack{s2}); err != nil || s2.Assets[0].Key != a.Key {
		t.Errorf("same content: key %s, want %s (%v)", s2.Assets[0].Key, a.Key, err)
	}
	s3 := stack()
	r3, _ := f.bases.Reusable(f.synth, f.with(bundle, "tree v3"), f.zips)
	if err := r3.Apply(f.root, []*deploy.Stack{s3}); err != nil || s3.Assets[0].Key == a.Key {
		t.Errorf("other content: key %s, want another than %s (%v)", s3.Assets[0].Key, a.Key, err)
	}
	// Versions are named by the synth after the code.
	s5 := stack()
	s5.Template = []byte(strings.Replace(tpl, `"Web":`, `"FnVersion1234":{"Type":"AWS::Lambda::Version","Properties":{"FunctionName":{"Ref":"Fn"}}},"Web":`, 1))
	if err := r.Apply(f.root, []*deploy.Stack{s5}); err == nil || !strings.Contains(err.Error(), "publishes Lambda versions") {
		t.Errorf("a stack with versions: %v, want an error", err)
	}
	// A key that does not name the asset's hash cannot be rewritten.
	s4 := stack()
	s4.Assets[0].Key = "code.zip"
	if err := r.Apply(f.root, []*deploy.Stack{s4}); err == nil || !strings.Contains(err.Error(), `object key "code.zip" does not name its hash`) {
		t.Errorf("custom key: %v, want an error", err)
	}
}
