package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

func TestHTTPBackendProtocol(t *testing.T) {
	ng := testenv.StartNginx(t, "")
	ctx := context.Background()
	b, err := NewHTTPBackend(ng.URL+"/prefix/", nil)
	if err != nil {
		t.Fatal(err)
	}
	key := ActionKey(Sum([]byte("key")))
	if _, err := b.GetAC(ctx, key); !errors.Is(err, ErrMiss) {
		t.Fatalf("GetAC of absent key: %v", err)
	}
	if err := b.PutAC(ctx, key, []byte("value")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.GetAC(ctx, key); err != nil || string(v) != "value" {
		t.Fatalf("GetAC = %q, %v", v, err)
	}
	// Bazel's layout, so other clients and servers agree on it.
	if data, err := os.ReadFile(filepath.Join(ng.Root, "prefix", "ac", key.String())); err != nil || string(data) != "value" {
		t.Fatalf("nginx stored %q, %v", data, err)
	}
	blob := []byte("blob contents")
	d := Sum(blob)
	if has, err := hasBlob(ctx, b, SizedDigest{d, int64(len(blob))}); err != nil || has {
		t.Fatalf("HasCAS of absent blob = %v, %v", has, err)
	}
	var buf bytes.Buffer
	if _, err := b.GetCAS(ctx, SizedDigest{d, int64(len(blob))}, &buf); !errors.Is(err, ErrMiss) {
		t.Fatalf("GetCAS of absent blob: %v", err)
	}
	if err := b.PutCAS(ctx, SizedDigest{d, int64(len(blob))}, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if has, err := hasBlob(ctx, b, SizedDigest{d, int64(len(blob))}); err != nil || !has {
		t.Fatalf("HasCAS = %v, %v", has, err)
	}
	if n, err := b.GetCAS(ctx, SizedDigest{d, int64(len(blob))}, &buf); err != nil || n != int64(len(blob)) || buf.String() != string(blob) {
		t.Fatalf("GetCAS = %d %q, %v", n, buf.String(), err)
	}
	if _, err := os.Stat(filepath.Join(ng.Root, "prefix", "cas", d.String())); err != nil {
		t.Fatal(err)
	}
	if err := b.PutCAS(ctx, SizedDigest{emptyDigest, 0}, bytes.NewReader(nil)); err != nil {
		t.Fatalf("empty PUT: %v", err)
	}
}

func TestHTTPBackendAuth(t *testing.T) {
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:{PLAIN}hunter2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := ActionKey(Sum([]byte("k")))
	try := func(t *testing.T, b Backend) error {
		t.Helper()
		if err := b.PutAC(ctx, key, []byte("v")); err != nil {
			return err
		}
		_, err := b.GetAC(ctx, key)
		return err
	}
	noEnv := func(t *testing.T) {
		for _, k := range []string{"PIPE_REMOTE_CACHE_USER", "PIPE_REMOTE_CACHE_PASSWORD", "PIPE_REMOTE_CACHE_TOKEN"} {
			t.Setenv(k, "")
		}
	}

	t.Run("basic", func(t *testing.T) {
		noEnv(t)
		ng := testenv.StartNginx(t, `auth_basic "pipe cache"; auth_basic_user_file `+htpasswd+`;`)
		host := strings.TrimPrefix(ng.URL, "http://")
		anon, _ := NewHTTPBackend(ng.URL, nil)
		err := try(t, anon)
		var se *HTTPStatusError
		if !errors.As(err, &se) || se.Code != 401 {
			t.Fatalf("without credentials: %v", err)
		}
		inURL, err := NewHTTPBackend("http://ci:hunter2@"+host+"/c", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := try(t, inURL); err != nil {
			t.Fatalf("credentials in URL: %v", err)
		}
		if s := inURL.String(); strings.Contains(s, "hunter2") {
			t.Errorf("String() shows the password: %s", s)
		}
		wrong, _ := NewHTTPBackend("http://ci:wrong@"+host+"/c", nil)
		if err := try(t, wrong); err == nil {
			t.Fatal("wrong password accepted")
		} else if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error shows the password: %v", err)
		}
		t.Setenv("PIPE_REMOTE_CACHE_USER", "ci")
		t.Setenv("PIPE_REMOTE_CACHE_PASSWORD", "hunter2")
		fromEnv, _ := NewHTTPBackend(ng.URL+"/c", nil)
		if err := try(t, fromEnv); err != nil {
			t.Fatalf("credentials from environment: %v", err)
		}
	})

	t.Run("bearer", func(t *testing.T) {
		noEnv(t)
		ng := testenv.StartNginx(t, `if ($http_authorization != "Bearer tok-123") { return 401; }`)
		anon, _ := NewHTTPBackend(ng.URL, nil)
		if err := try(t, anon); err == nil {
			t.Fatal("no token accepted")
		}
		t.Setenv("PIPE_REMOTE_CACHE_TOKEN", "tok-123")
		withToken, _ := NewHTTPBackend(ng.URL, nil)
		if err := try(t, withToken); err != nil {
			t.Fatalf("token from environment: %v", err)
		}
		if strings.Contains(withToken.String(), "tok-123") {
			t.Errorf("String() shows the token")
		}
	})

	t.Run("refused credentials warn once and stay misses", func(t *testing.T) {
		noEnv(t)
		ng := testenv.StartNginx(t, `auth_basic "pipe cache"; auth_basic_user_file `+htpasswd+`;`)
		b, _ := NewHTTPBackend(ng.URL, nil)
		r, _, w := newReader(t, b, RemoteOptions{AcceptCached: true, Upload: true})
		for i := range 3 {
			if _, ok := r.Fetch(ctx, ActionKey(Sum([]byte{byte(i)}))); ok {
				t.Fatal("hit without credentials")
			}
		}
		w.expect(t, 1, "401")
		r.Upload(ctx, key, remoteSample(t, r.local))
		r.Upload(ctx, key, remoteSample(t, r.local))
		r.Wait(ctx)
		w.expect(t, 2)
		if !strings.Contains(w.list()[1], "refused an upload") {
			t.Errorf("upload warning: %q", w.list()[1])
		}
	})
}
