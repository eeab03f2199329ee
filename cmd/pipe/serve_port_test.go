package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestServePortBanner: `pipe run :serve` serves on fastapi_project's port
// (pipe new gives each service its own) and says where before uvicorn
// starts; arguments after -- could change the port, so then it says
// nothing.
func TestServePortBanner(t *testing.T) {
	t.Parallel()
	ws, _, env, _ := fastAPIWorkspace(t)
	port := freePort(t)
	ws.write(t, "packages/my-api/BUILD.star", fmt.Sprintf(
		"fastapi_project(\n    name = \"my-api\",\n    python_version = \"3.11\",\n    architecture = \"x86_64\",\n    port = %d,\n)\n", port))
	cmd := pipeCmdEnv(ws, env, "run", "//packages/my-api:serve")
	exited, out := startGroup(t, cmd)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/openapi.json", port), exited, out)
	banner := fmt.Sprintf("//packages/my-api:serve: serving my_api.main:app on http://127.0.0.1:%d (docs at /docs); port = in packages/my-api/BUILD.star changes it\n", port)
	text := out.String()
	at := strings.Index(text, banner)
	if at < 0 {
		t.Fatalf("pipe run does not print %q:\n%s", banner, text)
	}
	if uv := strings.Index(text, "Uvicorn running on"); uv >= 0 && uv < at {
		t.Errorf("the banner comes after uvicorn's start-up lines:\n%s", text)
	}

	other := freePort(t)
	cmd = pipeCmdEnv(ws, env, "run", "//packages/my-api:serve", "--", "--port", fmt.Sprint(other))
	exited, out = startGroup(t, cmd)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/openapi.json", other), exited, out)
	if strings.Contains(out.String(), "serving my_api.main:app") {
		t.Errorf("with --port after --, pipe run still prints the BUILD.star port:\n%s", out.String())
	}
}
