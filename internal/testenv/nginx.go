package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
	"time"
)

// Nginx is nginx serving a temp directory with WebDAV PUT.
type Nginx struct {
	URL  string // http://127.0.0.1:PORT
	Root string // what it serves
	Dir  string
}

// StartNginx runs nginx as the current user with the configuration Bazel's
// docs give for an HTTP cache; location adds directives (auth) to the
// served location.
func StartNginx(t testing.TB, location string) *Nginx {
	t.Helper()
	bin := RequireBinary(t, "nginx", "/usr/sbin/nginx")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	userLine := ""
	if os.Geteuid() == 0 {
		// As root nginx would drop its workers to "nobody", who cannot
		// write the test's temp dir.
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		userLine = fmt.Sprintf("user %s %s;", u.Username, g.Name)
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
%[1]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 512; }
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen 127.0.0.1:%[3]d;
		root %[4]s;
		client_max_body_size 0;
		location / {
			dav_methods PUT;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
			%[5]s
		}
	}
}
`, userLine, dir, port, root, location)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := startProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = p.WaitReady(func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second)
	if err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		p.Stop()
		t.Fatalf("nginx: %v\n%s", err, out)
	}
	t.Cleanup(p.Stop)
	return &Nginx{URL: "http://" + addr, Root: root, Dir: dir}
}
