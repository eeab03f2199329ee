package cache

import (
	"context"
	"errors"
	"os"
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
	// Options configure the Remote. An empty SigningKey is taken from
	// $PIPE_REMOTE_CACHE_KEY: a secret belongs in the environment, not on
	// a command line that ps shows.
	Options RemoteOptions
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
	if len(opt.SigningKey) == 0 {
		if k := os.Getenv("PIPE_REMOTE_CACHE_KEY"); k != "" {
			opt.SigningKey = []byte(k)
		}
	}
	return OpenRemote(ctx, local, url, opt)
}
