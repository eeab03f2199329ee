package cache

import (
	"context"
	"strings"
	"testing"
)

func TestRemoteSpecPrecedence(t *testing.T) {
	ctx := context.Background()
	c := openTemp(t)
	host := func(r *Remote) string {
		t.Helper()
		if r == nil {
			return ""
		}
		return r.Backend().String()
	}
	t.Setenv("PIPE_REMOTE_CACHE", "")
	t.Setenv("PIPE_REMOTE_CACHE_KEY", "")

	// Nothing set anywhere: no remote, no error.
	r, err := RemoteSpec{}.Open(ctx, c)
	if r != nil || err != nil {
		t.Fatalf("no URL: %v, %v", r, err)
	}
	// The workspace's default…
	r, err = RemoteSpec{WorkspaceURL: "http://workspace.example/c"}.Open(ctx, c)
	if err != nil || !strings.Contains(host(r), "workspace.example") {
		t.Fatalf("workspace URL: %q, %v", host(r), err)
	}
	// …is overridden by the environment…
	t.Setenv("PIPE_REMOTE_CACHE", "http://env.example/c")
	r, err = RemoteSpec{WorkspaceURL: "http://workspace.example/c"}.Open(ctx, c)
	if err != nil || !strings.Contains(host(r), "env.example") {
		t.Fatalf("environment over workspace: %q, %v", host(r), err)
	}
	// …which is overridden by the flag.
	r, err = RemoteSpec{URL: "http://flag.example/c", WorkspaceURL: "http://workspace.example/c"}.Open(ctx, c)
	if err != nil || !strings.Contains(host(r), "flag.example") {
		t.Fatalf("flag over environment: %q, %v", host(r), err)
	}
}

func TestRemoteSpecErrors(t *testing.T) {
	ctx := context.Background()
	c := openTemp(t)
	t.Setenv("PIPE_REMOTE_CACHE", "")
	_, err := RemoteSpec{Options: RemoteOptions{Upload: true}}.Open(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "--remote-upload needs a remote cache") {
		t.Errorf("upload without a remote: %v", err)
	}
	if _, err := (RemoteSpec{URL: "ftp://host/x"}).Open(ctx, c); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
		t.Errorf("bad URL: %v", err)
	}
}

func TestRemoteSpecSigningKey(t *testing.T) {
	ctx := context.Background()
	c := openTemp(t)
	t.Setenv("PIPE_REMOTE_CACHE", "")
	t.Setenv("PIPE_REMOTE_CACHE_KEY", "from-env")
	r, err := RemoteSpec{URL: "http://cache.example/c"}.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.opt.SigningKey) != "from-env" {
		t.Errorf("signing key %q, want the environment's", r.opt.SigningKey)
	}
	// A key given in the options is kept.
	r, err = RemoteSpec{URL: "http://cache.example/c", Options: RemoteOptions{SigningKey: []byte("given")}}.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.opt.SigningKey) != "given" {
		t.Errorf("signing key %q, want the one given", r.opt.SigningKey)
	}
}
