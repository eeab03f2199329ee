// examples/ holds pipe workspaces, not Go code. This go.mod makes it a
// module of its own, so the repository's go build, go vet and go test
// ./... never walk into it: `npm ci` in an example installs packages whose
// .go templates (aws-cdk's %name%.template.go) are not valid Go.
module github.com/pipebuild/pipe/examples

go 1.26.0
