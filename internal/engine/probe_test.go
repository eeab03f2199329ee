package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/pipebuild/pipe/internal/engine"
)

// TestProbeByStat: a probe decided by stat runs once per command, and every
// target that asks for it records the host paths it declared, so a build
// snapshot can revalidate it; a probe that calls Volatile, or fails, is
// recorded as a plain probe, which keeps the snapshot from being written.
func TestProbeByStat(t *testing.T) {
	host := t.TempDir()
	tool := filepath.Join(host, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[string]int{}
	probe := func(key string, f func(r *engine.HostReads) error) func(c *engine.AnalysisContext) error {
		return func(c *engine.AnalysisContext) error {
			_, err := c.ProbeByStat(key, func(ctx context.Context, r *engine.HostReads) (any, error) {
				mu.Lock()
				runs[key]++
				mu.Unlock()
				return key, f(r)
			})
			if key == "fails" && err == nil {
				t.Errorf("the failing probe returned no error")
			}
			return nil
		}
	}
	var seen []string
	reg := engine.NewRegistry()
	reg.Register(markRule("stat_probe", &seen, probe("stats", func(r *engine.HostReads) error {
		r.Stat(host)
		r.Stat(tool)
		r.Stat(tool) // once is enough
		r.Stat(filepath.Join(host, "absent"))
		return nil
	})))
	reg.Register(markRule("volatile_probe", &seen, probe("volatile", func(r *engine.HostReads) error {
		r.Stat(tool)
		r.Volatile("asked a process")
		return nil
	})))
	reg.Register(markRule("failing_probe", &seen, probe("fails", func(r *engine.HostReads) error {
		r.Stat(tool)
		return errors.New("no such interpreter")
	})))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"WORKSPACE.star": "workspace(name = \"probes\")\n",
		"BUILD.star": `stat_probe(name = "a")
stat_probe(name = "b")
volatile_probe(name = "v")
failing_probe(name = "f")
`,
	})
	ag, err := engine.Analyze(context.Background(), load(t, root, reg))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"stats": 1, "volatile": 1, "fails": 1}; !reflect.DeepEqual(runs, want) {
		t.Errorf("probe runs %v, want %v", runs, want)
	}
	want := []engine.AnalysisInput{
		{Kind: engine.InputProbe, Name: "stats", Value: engine.ProbeDecidedByStat},
		{Kind: engine.InputHostPath, Name: host, Value: "stats"},
		{Kind: engine.InputHostPath, Name: tool, Value: "stats"},
		{Kind: engine.InputHostPath, Name: filepath.Join(host, "absent"), Value: "stats"},
	}
	for _, l := range []string{"//:a", "//:b"} {
		if got := ag.AnalysisInputs(engine.MustParseLabel(l)); !reflect.DeepEqual(got, want) {
			t.Errorf("analysis inputs of %s:\n got %+v\nwant %+v", l, got, want)
		}
	}
	for l, key := range map[string]string{"//:v": "volatile", "//:f": "fails"} {
		want := []engine.AnalysisInput{{Kind: engine.InputProbe, Name: key}}
		if got := ag.AnalysisInputs(engine.MustParseLabel(l)); !reflect.DeepEqual(got, want) {
			t.Errorf("analysis inputs of %s:\n got %+v\nwant %+v", l, got, want)
		}
	}
}
