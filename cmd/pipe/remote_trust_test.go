package main

// The remote cache's trust model: poisoned entries are never written,
// signed or not, and --remote-require-signed insists on signatures.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/testenv"
)

const trustBuild = `genrule(name = "g", srcs = ["src.txt"], outs = ["out.txt"], cmd = "cat $(SRCS) > $@")
genrule(name = "h", srcs = [":g"], outs = ["h.txt"], cmd = "cat $(SRCS) > $@")
`

func trustWorkspace(t *testing.T) *workspace {
	return newWorkspace(t, map[string]string{"src.txt": "source\n", "BUILD.star": trustBuild})
}

// putEntry writes res under the key of label's action straight into the
// remote at url, signed with key (nil: unsigned), as someone who can write
// the bucket would. Its blobs come from ws's local cache.
func putEntry(t *testing.T, ws *workspace, b build, url, label string, key []byte, edit func(c *cache.Cache, r *cache.ActionResult)) {
	t.Helper()
	var ak cache.ActionKey
	if err := ak.UnmarshalText([]byte(b.event(t, label).Key)); err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(ws.Cache)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.GetAC(ak)
	if err != nil {
		t.Fatal(err)
	}
	edit(c, res)
	be, err := cache.NewHTTPBackend(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	r := cache.NewRemote(c, be, cache.RemoteOptions{Upload: true, InlineUploads: true, SigningKey: key, Warn: func(m string) { warned = append(warned, m) }})
	r.Upload(context.Background(), ak, res)
	r.Close(context.Background())
	if st := r.Stats(); st.Uploaded != 1 || len(warned) > 0 {
		t.Fatalf("writing the poisoned entry of %s: %+v %q", label, st, warned)
	}
}

// Entries that name outputs their actions do not declare — a git hook,
// the action's own source, a symbolic link out of the workspace in one
// entry and a file under it in another — are rejected whether the reader
// checks signatures or not, and whether the writer had the key or not.
// Nothing is written; the actions run here.
func TestPoisonedRemoteEntriesRejected(t *testing.T) {
	t.Parallel()
	const key = "the writers' key"
	for _, c := range []struct {
		name                 string
		writerKey, poisonKey string // "" is unsigned
		readerKey            string
		args                 []string
		warning              string
		warnings             int
	}{
		// Pull requests read with no key: the declared outputs are the
		// only guard, and it holds for each entry.
		{"no signing", "", "", "", nil, "does not declare", 2},
		// Whoever wrote the poison had no key: a signing reader takes
		// the entries for misses, with one warning.
		{"unsigned poison, signing reader", key, "", key, []string{"--remote-require-signed"}, "not signed", 1},
		{"poison signed with another key", key, "another key", key, []string{"--remote-require-signed"}, "different key", 1},
		// A writer with the key went rogue: the signature is good, the
		// outputs are still not the action's.
		{"poison signed with the key", key, key, key, []string{"--remote-require-signed"}, "does not declare", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartNginx(t, "")
			url := srv.URL + "/pipe"
			env := func(k string) []string {
				if k == "" {
					return nil
				}
				return []string{"PIPE_REMOTE_CACHE_KEY=" + k}
			}
			writer := trustWorkspace(t)
			b := writer.buildEnvOK(t, env(c.writerKey), "//...", "--remote-cache", url, "--remote-upload")

			outside := t.TempDir()
			hook, err := os.ReadFile(writer.path("dist/g/out.txt"))
			if err != nil {
				t.Fatal(err)
			}
			var poisonKey []byte
			if c.poisonKey != "" {
				poisonKey = []byte(c.poisonKey)
			}
			putEntry(t, writer, b, url, "//:g", poisonKey, func(lc *cache.Cache, r *cache.ActionResult) {
				d, err := lc.PutBytes([]byte("#!/bin/sh\necho owned\n"))
				if err != nil {
					t.Fatal(err)
				}
				r.Outputs = append(r.Outputs,
					cache.OutputFile{Path: ".git/hooks/pre-commit", Digest: d, Size: 21, Executable: true},
					cache.OutputFile{Path: "src.txt", Digest: d, Size: 21})
				r.Symlinks = map[string]string{"dist/g/escape": outside}
			})
			putEntry(t, writer, b, url, "//:h", poisonKey, func(lc *cache.Cache, r *cache.ActionResult) {
				d, err := lc.PutBytes(hook)
				if err != nil {
					t.Fatal(err)
				}
				r.Outputs = append(r.Outputs, cache.OutputFile{Path: "dist/g/escape/planted", Digest: d, Size: int64(len(hook))})
			})

			reader := trustWorkspace(t)
			b = reader.buildEnvOK(t, env(c.readerKey), append([]string{"//...", "--remote-cache", url}, c.args...)...)
			if got := b.labels("executed"); !equalStrings(got, []string{"//:g", "//:h"}) {
				t.Errorf("executed %q, want both actions run here:\n%s", got, b.stderr)
			}
			if reader.exists(".git/hooks/pre-commit") {
				t.Error("a poisoned remote entry wrote .git/hooks/pre-commit")
			}
			if got := reader.read(t, "src.txt"); got != "source\n" {
				t.Errorf("a poisoned remote entry overwrote the source: %q", got)
			}
			if reader.exists("dist/g/escape") {
				t.Error("a poisoned remote entry made an undeclared symbolic link")
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("poisoned remote entries wrote outside the workspace: %v", ents)
			}
			if got := reader.read(t, "dist/h/h.txt"); got != "source\n" {
				t.Errorf("dist/h/h.txt = %q", got)
			}
			n := 0
			for _, line := range strings.Split(b.stderr, "\n") {
				if strings.Contains(strings.ToLower(line), "warning") && strings.Contains(line, c.warning) {
					n++
				}
			}
			if n != c.warnings {
				t.Errorf("%d warnings saying %q, want %d:\n%s", n, c.warning, c.warnings, b.stderr)
			}
			// Nothing of the poison reached the local cache: a build
			// without the remote is a no-op with the same outputs.
			b = reader.buildOK(t, "//...")
			if n := len(b.labels("executed")); n != 0 {
				t.Errorf("a local build after the rejected entries executed %d actions", n)
			}
			if _, err := os.Lstat(filepath.Join(reader.Root, ".git")); err == nil {
				t.Error(".git appeared in the reader's workspace")
			}
		})
	}
}

// --remote-require-signed without a key refuses to start, naming where
// the key comes from; with it, an unsigned entry is a miss and one
// warning, and a signed one a hit.
func TestRemoteRequireSigned(t *testing.T) {
	t.Parallel()
	srv := testenv.StartNginx(t, "")
	url := srv.URL + "/pipe"
	ws := trustWorkspace(t)
	b := ws.build(t, "//...", "--remote-cache", url, "--remote-require-signed")
	if b.code != 2 || !strings.Contains(b.stderr, "PIPE_REMOTE_CACHE_KEY") || !strings.Contains(b.stderr, "--remote-require-signed") {
		t.Errorf("exit %d, want 2 naming PIPE_REMOTE_CACHE_KEY:\n%s", b.code, b.stderr)
	}
	if ws.exists("dist") {
		t.Error("a build refused at the start wrote dist/")
	}

	// An unsigned writer.
	trustWorkspace(t).buildOK(t, "//...", "--remote-cache", url, "--remote-upload")
	key := []string{"PIPE_REMOTE_CACHE_KEY=k1"}
	b = trustWorkspace(t).buildEnvOK(t, key, "//...", "--remote-cache", url, "--remote-require-signed")
	if n := len(b.labels("executed")); n != 2 {
		t.Errorf("executed %d actions with unsigned entries, want 2:\n%s", n, b.stderr)
	}
	if n := strings.Count(b.stderr, "warning: remote cache"); n != 1 || !strings.Contains(b.stderr, "not signed") {
		t.Errorf("%d remote warnings, want one saying the entries are not signed:\n%s", n, b.stderr)
	}

	// A signing writer: its entries are hits.
	trustWorkspace(t).buildEnvOK(t, key, "//...", "--remote-cache", url, "--remote-upload")
	b = trustWorkspace(t).buildEnvOK(t, key, "//...", "--remote-cache", url, "--remote-require-signed")
	if n := len(b.labels("cached")); n != 2 || strings.Contains(b.stderr, "warning") {
		t.Errorf("cached %d of 2 signed entries:\n%s", n, b.stderr)
	}
}
