// Package deploy reads CDK cloud assemblies and deploys their stacks to
// CloudFormation in two steps: Plan finds, with read calls only, what
// deploying each stack would do; Apply carries the plans out (asset
// publishing, change sets, approval, execution, or with a hotswap plan
// Lambda calls) and reports each step as a StackEvent. It prints nothing:
// showing plans and events is the caller's.
package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Artifact types of a cloud assembly manifest that pipe understands; other
// types (cdk:tree, feature-flag reports…) carry nothing to deploy.
const (
	artifactStack         = "aws:cloudformation:stack"
	artifactAssetManifest = "cdk:asset-manifest"
	artifactNested        = "cdk:cloud-assembly"
)

// Stack is one CloudFormation stack of a cloud assembly.
type Stack struct {
	// ID is the artifact id in its manifest; DisplayName is the construct
	// path ("Prod/Api") users know it by.
	ID, DisplayName string
	// StackName is the CloudFormation stack name.
	StackName string
	// Account and Region are the stack's environment, "" when the app left
	// them to the deploy-time credentials (aws://unknown-account/...).
	Account, Region string
	// AssemblyDir is the directory of the (nested) assembly holding it.
	AssemblyDir  string
	TemplateFile string // absolute
	// Template is the template file's bytes, read when the assembly is.
	Template []byte
	// Parameters and Tags are what the manifest asks for.
	Parameters            map[string]string
	Tags                  map[string]string
	TerminationProtection bool
	NotificationARNs      []string
	// ExecRoleARN is the role CloudFormation acts with (placeholders
	// unresolved), TemplateURL the template asset's s3:// URL.
	ExecRoleARN string
	TemplateURL string
	// RequiresBootstrap is the smallest bootstrap version the stack and its
	// asset manifests need; BootstrapParam the SSM parameter holding the
	// environment's version.
	RequiresBootstrap int
	BootstrapParam    string
	Assets            []*FileAsset
	// DockerImages counts container image assets, which pipe cannot publish.
	DockerImages int
	// Deps are the stacks this one needs deployed first.
	Deps []*Stack
	// NoHotswap, when set, says why the stack must never be hotswapped
	// (its cdk_stack target says hotswap = False): pipe deploy --hotswap
	// refuses it. A stack tagged pipe:hotswap=false is refused too.
	NoHotswap string
}

// Name is how messages name the stack: its construct path, with the
// CloudFormation name when that differs.
func (s *Stack) Name() string {
	if s.DisplayName == "" || s.DisplayName == s.StackName {
		return s.StackName
	}
	return s.DisplayName + " (" + s.StackName + ")"
}

// FileAsset is one file or directory to publish to S3.
type FileAsset struct {
	ID, DisplayName string
	// Source is the absolute path of the file or directory; Zip says the
	// directory (or file) is uploaded as a zip.
	Source string
	Zip    bool
	// Bucket and Key may hold ${AWS::AccountId}-style placeholders; Region
	// is "" for the stack's region.
	Bucket, Key, Region string
	// Executable is set for assets built by a command, which pipe does not
	// run (the CDK CLI's "executable" sources).
	Executable bool
}

// manifest is the subset of manifest.json pipe reads.
type manifest struct {
	Version   string               `json:"version"`
	Artifacts map[string]*artifact `json:"artifacts"`
}

type artifact struct {
	Type         string          `json:"type"`
	Environment  string          `json:"environment"`
	Properties   json.RawMessage `json:"properties"`
	Dependencies []string        `json:"dependencies"`
	DisplayName  string          `json:"displayName"`
}

type stackProps struct {
	TemplateFile                      string            `json:"templateFile"`
	StackName                         string            `json:"stackName"`
	Parameters                        map[string]string `json:"parameters"`
	Tags                              map[string]string `json:"tags"`
	TerminationProtection             bool              `json:"terminationProtection"`
	NotificationArns                  []string          `json:"notificationArns"`
	CloudFormationExecutionRoleArn    string            `json:"cloudFormationExecutionRoleArn"`
	StackTemplateAssetObjectURL       string            `json:"stackTemplateAssetObjectUrl"`
	RequiresBootstrapStackVersion     int               `json:"requiresBootstrapStackVersion"`
	BootstrapStackVersionSsmParameter string            `json:"bootstrapStackVersionSsmParameter"`
}

type assetManifestProps struct {
	File                              string `json:"file"`
	RequiresBootstrapStackVersion     int    `json:"requiresBootstrapStackVersion"`
	BootstrapStackVersionSsmParameter string `json:"bootstrapStackVersionSsmParameter"`
}

type nestedProps struct {
	DirectoryName string `json:"directoryName"`
	DisplayName   string `json:"displayName"`
}

// assetManifest is a *.assets.json file.
type assetManifest struct {
	Version string `json:"version"`
	Files   map[string]struct {
		DisplayName string `json:"displayName"`
		Source      struct {
			Path       string   `json:"path"`
			Packaging  string   `json:"packaging"`
			Executable []string `json:"executable"`
		} `json:"source"`
		Destinations map[string]struct {
			BucketName string `json:"bucketName"`
			ObjectKey  string `json:"objectKey"`
			Region     string `json:"region"`
		} `json:"destinations"`
	} `json:"files"`
	DockerImages map[string]json.RawMessage `json:"dockerImages"`
}

// DefaultBootstrapParam is where `cdk bootstrap` records the version of the
// default ("hnb659fds") bootstrap stack.
const DefaultBootstrapParam = "/cdk-bootstrap/hnb659fds/version"

// LoadAssemblies reads the cloud assemblies in dirs, nested assemblies
// (stages) included, and returns every stack, each after the stacks it
// depends on. Two artifacts that would deploy to the same stack are an
// error: one would silently overwrite the other.
func LoadAssemblies(dirs []string) ([]*Stack, error) {
	var all []*Stack
	for _, d := range dirs {
		st, err := loadAssembly(d, "")
		if err != nil {
			return nil, err
		}
		all = append(all, st...)
	}
	seen := map[string]*Stack{}
	for _, s := range all {
		k := s.Account + "/" + s.Region + "/" + s.StackName
		if o := seen[k]; o != nil {
			return nil, fmt.Errorf("two cloud assembly stacks deploy to stack %s: %s in %s and %s in %s", s.StackName, o.DisplayName, o.AssemblyDir, s.DisplayName, s.AssemblyDir)
		}
		seen[k] = s
	}
	return order(all)
}

// loadAssembly reads one assembly directory. prefix is the display path of
// the stage it belongs to, for nested assemblies.
func loadAssembly(dir, prefix string) ([]*Stack, error) {
	mpath := filepath.Join(dir, "manifest.json")
	b, err := os.ReadFile(mpath)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%s is not a cloud assembly: no manifest.json (synthesize the CDK app first)", dir)
		}
		return nil, fmt.Errorf("read cloud assembly: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", mpath, err)
	}
	if m.Version == "" {
		return nil, fmt.Errorf("%s: no schema version; is this a cloud assembly manifest?", mpath)
	}
	ids := make([]string, 0, len(m.Artifacts))
	for id := range m.Artifacts {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	// Asset manifests first: stacks name them among their dependencies.
	type assetsInfo struct {
		assets       []*FileAsset
		docker       int
		requires     int
		requireParam string
	}
	assetManifests := map[string]*assetsInfo{}
	for _, id := range ids {
		a := m.Artifacts[id]
		if a.Type != artifactAssetManifest {
			continue
		}
		var p assetManifestProps
		if err := json.Unmarshal(a.Properties, &p); err != nil {
			return nil, fmt.Errorf("%s: artifact %s: %w", mpath, id, err)
		}
		assets, docker, err := readAssetManifest(dir, p.File)
		if err != nil {
			return nil, err
		}
		assetManifests[id] = &assetsInfo{assets, docker, p.RequiresBootstrapStackVersion, p.BootstrapStackVersionSsmParameter}
	}

	var stacks []*Stack
	byID := map[string]*Stack{}
	deps := map[*Stack][]string{}
	for _, id := range ids {
		a := m.Artifacts[id]
		switch a.Type {
		case artifactNested:
			var p nestedProps
			if err := json.Unmarshal(a.Properties, &p); err != nil {
				return nil, fmt.Errorf("%s: artifact %s: %w", mpath, id, err)
			}
			if p.DirectoryName == "" || filepath.IsAbs(p.DirectoryName) || strings.Contains(p.DirectoryName, "..") {
				return nil, fmt.Errorf("%s: nested assembly %s: bad directoryName %q", mpath, id, p.DirectoryName)
			}
			name := p.DisplayName
			if name == "" {
				name = strings.TrimPrefix(id, "assembly-")
			}
			if prefix != "" && !strings.HasPrefix(name, prefix+"/") {
				name = prefix + "/" + name
			}
			nested, err := loadAssembly(filepath.Join(dir, p.DirectoryName), name)
			if err != nil {
				return nil, err
			}
			stacks = append(stacks, nested...)
		case artifactStack:
			s, err := readStack(dir, mpath, id, a, prefix)
			if err != nil {
				return nil, err
			}
			stacks = append(stacks, s)
			byID[id] = s
			deps[s] = a.Dependencies
		}
	}
	for s, ds := range deps {
		for _, d := range ds {
			if dep := byID[d]; dep != nil {
				s.Deps = append(s.Deps, dep)
				continue
			}
			if am := assetManifests[d]; am != nil {
				s.Assets = append(s.Assets, am.assets...)
				s.DockerImages += am.docker
				if am.requires > s.RequiresBootstrap {
					s.RequiresBootstrap = am.requires
				}
				if s.BootstrapParam == "" {
					s.BootstrapParam = am.requireParam
				}
			}
			// Other artifacts (trees, reports) need nothing deployed.
		}
		sort.Slice(s.Deps, func(i, j int) bool { return s.Deps[i].ID < s.Deps[j].ID })
	}
	return stacks, nil
}

func readStack(dir, mpath, id string, a *artifact, prefix string) (*Stack, error) {
	var p stackProps
	if err := json.Unmarshal(a.Properties, &p); err != nil {
		return nil, fmt.Errorf("%s: stack %s: %w", mpath, id, err)
	}
	if p.TemplateFile == "" {
		return nil, fmt.Errorf("%s: stack %s has no templateFile", mpath, id)
	}
	s := &Stack{
		ID:                    id,
		DisplayName:           a.DisplayName,
		StackName:             p.StackName,
		AssemblyDir:           dir,
		TemplateFile:          filepath.Join(dir, p.TemplateFile),
		Parameters:            p.Parameters,
		Tags:                  p.Tags,
		TerminationProtection: p.TerminationProtection,
		NotificationARNs:      p.NotificationArns,
		ExecRoleARN:           p.CloudFormationExecutionRoleArn,
		TemplateURL:           p.StackTemplateAssetObjectURL,
		RequiresBootstrap:     p.RequiresBootstrapStackVersion,
		BootstrapParam:        p.BootstrapStackVersionSsmParameter,
	}
	if s.StackName == "" {
		s.StackName = id
	}
	if s.DisplayName == "" {
		s.DisplayName = id
		if prefix != "" {
			s.DisplayName = prefix + "/" + id
		}
	}
	var err error
	if s.Account, s.Region, err = parseEnvironment(a.Environment); err != nil {
		return nil, fmt.Errorf("%s: stack %s: %w", mpath, s.DisplayName, err)
	}
	if s.Template, err = os.ReadFile(s.TemplateFile); err != nil {
		return nil, fmt.Errorf("stack %s: read template: %w", s.DisplayName, err)
	}
	if !json.Valid(s.Template) {
		return nil, fmt.Errorf("stack %s: template %s is not valid JSON", s.DisplayName, s.TemplateFile)
	}
	return s, nil
}

// parseEnvironment splits "aws://ACCOUNT/REGION"; the CDK's "unknown-"
// values mean "whatever the credentials say".
func parseEnvironment(env string) (account, region string, err error) {
	if env == "" {
		return "", "", nil
	}
	rest, ok := strings.CutPrefix(env, "aws://")
	if !ok {
		return "", "", fmt.Errorf("environment %q: want aws://ACCOUNT/REGION", env)
	}
	account, region, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("environment %q: want aws://ACCOUNT/REGION", env)
	}
	if account == "unknown-account" {
		account = ""
	}
	if region == "unknown-region" {
		region = ""
	}
	return account, region, nil
}

// readAssetManifest reads the file assets of a *.assets.json, one FileAsset
// per destination.
func readAssetManifest(dir, file string) ([]*FileAsset, int, error) {
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, 0, fmt.Errorf("read asset manifest: %w", err)
	}
	var am assetManifest
	if err := json.Unmarshal(b, &am); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", p, err)
	}
	ids := make([]string, 0, len(am.Files))
	for id := range am.Files {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*FileAsset
	for _, id := range ids {
		f := am.Files[id]
		src := f.Source.Path
		if src != "" && !filepath.IsAbs(src) {
			src = filepath.Join(dir, src)
		}
		var zip bool
		switch f.Source.Packaging {
		case "", "file":
		case "zip":
			zip = true
		default:
			return nil, 0, fmt.Errorf("%s: asset %s: unknown packaging %q", p, id, f.Source.Packaging)
		}
		dests := make([]string, 0, len(f.Destinations))
		for k := range f.Destinations {
			dests = append(dests, k)
		}
		sort.Strings(dests)
		for _, k := range dests {
			d := f.Destinations[k]
			out = append(out, &FileAsset{
				ID:          id,
				DisplayName: f.DisplayName,
				Source:      src,
				Zip:         zip,
				Bucket:      d.BucketName,
				Key:         d.ObjectKey,
				Region:      d.Region,
				Executable:  len(f.Source.Executable) > 0,
			})
		}
	}
	return out, len(am.DockerImages), nil
}

// order sorts stacks so each comes after its dependencies, keeping the
// input order otherwise, and reports a cycle by naming its stacks.
func order(stacks []*Stack) ([]*Stack, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*Stack]int{}
	var out []*Stack
	var path []*Stack
	var visit func(s *Stack) error
	visit = func(s *Stack) error {
		switch state[s] {
		case done:
			return nil
		case visiting:
			var names []string
			start := 0
			for i, p := range path {
				if p == s {
					start = i
				}
			}
			for _, p := range path[start:] {
				names = append(names, p.DisplayName)
			}
			return fmt.Errorf("stack dependency cycle: %s -> %s", strings.Join(names, " -> "), s.DisplayName)
		}
		state[s] = visiting
		path = append(path, s)
		for _, d := range s.Deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[s] = done
		out = append(out, s)
		return nil
	}
	for _, s := range stacks {
		if err := visit(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Select returns the stacks whose display name or stack name matches one of
// the globs, with the stacks they depend on (a stack cannot deploy before
// its dependencies exist), in deployment order. No globs selects all. A
// glob matching nothing is an error naming the glob and the stacks;
// callers prefix where the glob came from (--stacks, a target).
func Select(stacks []*Stack, globs []string) ([]*Stack, error) {
	if len(globs) == 0 {
		return stacks, nil
	}
	want := map[*Stack]bool{}
	var add func(s *Stack)
	add = func(s *Stack) {
		if want[s] {
			return
		}
		want[s] = true
		for _, d := range s.Deps {
			add(d)
		}
	}
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%q: %w", g, err)
		}
		n := 0
		for _, s := range stacks {
			m1, _ := path.Match(g, s.DisplayName)
			m2, _ := path.Match(g, s.StackName)
			if m1 || m2 {
				add(s)
				n++
			}
		}
		if n == 0 {
			var names []string
			for _, s := range stacks {
				names = append(names, s.DisplayName)
			}
			return nil, fmt.Errorf("%q matches no stack; the stacks are: %s", g, strings.Join(names, ", "))
		}
	}
	var out []*Stack
	for _, s := range stacks {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}
