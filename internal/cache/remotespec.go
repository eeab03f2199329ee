package cache

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// RemoteSpec is what a command knows about the remote cache before one is
// opened: the URL from each place it can be set, and the options. The CLI
// fills it from its flags and the workspace; choosing among them is the
// cache's business, so every command chooses the same way.
type RemoteSpec struct {
	// URL is --remote-cache. It wins over $PIPE_REMOTE_CACHE, which wins
	// over WorkspaceURL: the command line overrides the environment (a CI
	// job), which overrides the default checked in with the workspace.
	URL string
	// WorkspaceURL is workspace(remote_cache = …).
	WorkspaceURL string
	// Endpoint is --remote-instance-name, --remote-header and
	// --remote-tls-ca; WorkspaceEndpoint is workspace(remote_instance_name
	// = …, remote_headers = […], remote_tls_ca = …), with a relative CA
	// path already joined to the workspace root. The environment sits
	// between them as for the URL: $PIPE_REMOTE_INSTANCE_NAME,
	// $PIPE_REMOTE_HEADERS (one KEY=VALUE per line), $PIPE_REMOTE_TLS_CA.
	// Headers from all three are sent, the later source winning for one
	// name.
	Endpoint, WorkspaceEndpoint EndpointSettings
	// Options configure the Remote. An empty SigningKey is taken from
	// $PIPE_REMOTE_CACHE_KEY: a secret belongs in the environment, not on
	// a command line that ps shows.
	Options RemoteOptions
	// RequireSigned (--remote-require-signed) refuses to open a remote
	// without a signing key: a job that must not trust unsigned content
	// fails at once rather than reading it.
	RequireSigned bool
}

// Open opens the remote cache the spec names in front of local, or returns
// nil and no error when no URL is set anywhere. Its errors are all about
// the settings (a bad URL, upload without a remote), so the CLI reports
// them as usage errors.
func (s RemoteSpec) Open(ctx context.Context, local *Cache) (*Remote, error) {
	url := s.URL
	if url == "" {
		url = os.Getenv("PIPE_REMOTE_CACHE")
	}
	if url == "" {
		url = s.WorkspaceURL
	}
	if url == "" {
		if s.Options.Upload {
			// Asked to share results: silently not sharing them would
			// look like success.
			return nil, errors.New("--remote-upload needs a remote cache: --remote-cache URL, PIPE_REMOTE_CACHE or workspace(remote_cache = …)")
		}
		return nil, nil
	}
	opt := s.Options
	ep, err := s.endpoint()
	if err != nil {
		return nil, err
	}
	opt.Endpoint = ep
	if len(opt.SigningKey) == 0 {
		if k := os.Getenv("PIPE_REMOTE_CACHE_KEY"); k != "" {
			opt.SigningKey = []byte(k)
		}
	}
	if s.RequireSigned && len(opt.SigningKey) == 0 {
		return nil, errors.New("--remote-require-signed: no signing key to check entries with; set PIPE_REMOTE_CACHE_KEY to the key the cache's writers sign with (or drop --remote-require-signed to trust whoever can write the cache)")
	}
	return OpenRemote(ctx, local, url, opt)
}

// EndpointSettings are endpoint settings as the user wrote them; Open
// checks them and reads the CA file.
type EndpointSettings struct {
	InstanceName string
	Headers      []string // KEY=VALUE
	TLSCA        string   // a file of PEM certificates
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// endpoint resolves the endpoint settings of every source.
func (s RemoteSpec) endpoint() (Endpoint, error) {
	var ep Endpoint
	ep.InstanceName = firstSet(s.Endpoint.InstanceName, os.Getenv("PIPE_REMOTE_INSTANCE_NAME"), s.WorkspaceEndpoint.InstanceName)
	if err := CheckInstanceName(ep.InstanceName); err != nil {
		return ep, err
	}
	parseAll := func(where string, list []string) ([]Header, error) {
		var out []Header
		for _, v := range list {
			h, err := ParseHeader(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			out = append(out, h)
		}
		return out, nil
	}
	ws, err := parseAll("workspace(remote_headers = …)", s.WorkspaceEndpoint.Headers)
	if err != nil {
		return ep, err
	}
	env, err := ParseHeaderList(os.Getenv("PIPE_REMOTE_HEADERS"))
	if err != nil {
		return ep, fmt.Errorf("$PIPE_REMOTE_HEADERS: %w", err)
	}
	flags, err := parseAll("--remote-header", s.Endpoint.Headers)
	if err != nil {
		return ep, err
	}
	ep.Headers = mergeHeaders(ws, env, flags)
	if ca := firstSet(s.Endpoint.TLSCA, os.Getenv("PIPE_REMOTE_TLS_CA"), s.WorkspaceEndpoint.TLSCA); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return ep, fmt.Errorf("remote cache TLS roots: %w", err)
		}
		ep.TLSRoots = x509.NewCertPool()
		if !ep.TLSRoots.AppendCertsFromPEM(pem) {
			return ep, fmt.Errorf("remote cache TLS roots: %s holds no PEM certificate", ca)
		}
	}
	return ep, nil
}

// reservedSegments may not be path segments of an instance name: REAPI
// resource names use them as keywords.
var reservedSegments = map[string]bool{
	"blobs": true, "uploads": true, "actions": true, "actionResults": true,
	"operations": true, "capabilities": true, "compressed-blobs": true,
}

// CheckInstanceName reports an instance name REAPI resource names cannot
// carry. The empty name is the server's default instance.
func CheckInstanceName(name string) error {
	if name == "" {
		return nil
	}
	for _, seg := range strings.Split(name, "/") {
		switch {
		case seg == "" || seg == "." || seg == "..":
			return fmt.Errorf("remote instance name %q: empty, . or .. path segment", name)
		case reservedSegments[seg]:
			return fmt.Errorf("remote instance name %q: %q is a keyword of REAPI resource names", name, seg)
		}
		for _, c := range seg {
			if c <= ' ' || c == 0x7f || c > 0x7e {
				return fmt.Errorf("remote instance name %q: only printable ASCII without spaces", name)
			}
		}
	}
	return nil
}
