package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Regression: parallel genrules whose tool is a script failed now and then
// with "Text file busy": a staged copy of the script was still open for
// writing in one goroutine while another forked, so the child held the
// descriptor when the script was executed. Stress it.
func TestExecutableToolsUnderParallelism(t *testing.T) {
	files := map[string]string{}
	var build strings.Builder
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&build, "genrule(name = \"g%d\", outs = [\"g%d.txt\"], tools = [\"bin/tool%d.sh\"], cmd = \"$(location bin/tool%d.sh) %d > $@\")\n", i, i, i, i, i)
		files[fmt.Sprintf("bin/tool%d.sh", i)] = fmt.Sprintf("#!/bin/sh\necho tool %d \"$@\"\n", i)
	}
	files["BUILD.star"] = build.String()
	ws := newWorkspace(t, files)
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	for r := 0; r < rounds; r++ {
		os.RemoveAll(ws.Cache)
		os.RemoveAll(ws.path("dist"))
		b := ws.build(t, "--jobs", "16")
		if b.code != 0 {
			t.Fatalf("round %d: exit %d\n%s", r, b.code, b.stderr)
		}
	}
}
