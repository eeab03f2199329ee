package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pipebuild/pipe/internal/cache"
	"github.com/pipebuild/pipe/internal/files"
)

// KeyParts is everything an action key covers: rule kind and version,
// mnemonic, in-process identity and pipe's version (in-process steps only),
// argv, the whole environment, tool identities, the sandbox flag, every
// input's path and digest, and every output path. The key is their hash;
// the parts themselves are kept for the last execution of each action so
// `pipe build --explain` can say what changed. All but the input digests
// come from staticKeyParts, which pipe affected compares too.
type KeyParts struct {
	Rule     string            `json:"rule"`
	Mnemonic string            `json:"mnemonic"`
	Identity string            `json:"identity,omitempty"`
	Pipe     string            `json:"pipe,omitempty"`
	Argv     []string          `json:"argv,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Tools    []string          `json:"tools,omitempty"`
	Sandbox  bool              `json:"sandbox,omitempty"`
	Inputs   []KeyInput        `json:"inputs"` // sorted by path
	Outputs  []string          `json:"outputs"`
}

// KeyInput is one input of an action key. Whether the file is executable
// is part of it, as in REAPI's FileNode: a chmod changes what a command can
// do with the file (run it, or fail) and what a bundle ships.
type KeyInput struct {
	Path       string       `json:"path"`
	Digest     cache.Digest `json:"digest"`
	Executable bool         `json:"executable,omitempty"`
}

// Key hashes the parts with length-prefixed fields, so no two different
// part lists hash alike.
func (p *KeyParts) Key() cache.ActionKey {
	h := sha256.New()
	field := func(s string) { writeField(h, s) }
	field("pipe-action-key-3")
	field(p.Rule)
	field(p.Mnemonic)
	field(p.Identity)
	field(p.Pipe)
	field(strconv.Itoa(len(p.Argv)))
	for _, s := range p.Argv {
		field(s)
	}
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	field(strconv.Itoa(len(keys)))
	for _, k := range keys {
		field(k)
		field(p.Env[k])
	}
	field(strconv.Itoa(len(p.Tools)))
	for _, t := range p.Tools {
		field(t)
	}
	field(strconv.FormatBool(p.Sandbox))
	field(strconv.Itoa(len(p.Inputs)))
	var entry [33]byte // digest, then the exec bit: one write per input
	for _, in := range p.Inputs {
		field(in.Path)
		copy(entry[:32], in.Digest[:])
		entry[32] = 0
		if in.Executable {
			entry[32] = 1
		}
		h.Write(entry[:])
	}
	field(strconv.Itoa(len(p.Outputs)))
	for _, o := range p.Outputs {
		field(o)
	}
	var d cache.ActionKey
	h.Sum(d[:0])
	return d
}

// recordPath names where an action's last executed key parts live: by
// owner, mnemonic and outputs, which stay put while inputs change.
func (e *Executor) recordPath(a *Action) string {
	h := sha256.New()
	io.WriteString(h, a.Owner.String()+"\x00"+a.Mnemonic)
	for _, o := range a.Outputs {
		io.WriteString(h, "\x00"+o.Path)
	}
	return filepath.Join(e.WS.StateDir(), "keys", hex.EncodeToString(h.Sum(nil))[:24]+".json")
}

// recordKey keeps the parts of an executed action's key; losing them only
// makes --explain less specific.
func (e *Executor) recordKey(a *Action, p *KeyParts) {
	if b, err := json.Marshal(p); err == nil {
		files.WriteAtomic(e.recordPath(a), b, 0o644)
	}
}

// explain compares p with the parts recorded when a last executed.
func (e *Executor) explain(a *Action, p *KeyParts) string {
	b, err := os.ReadFile(e.recordPath(a))
	if err != nil {
		return "no earlier execution recorded in this workspace (first build, or after pipe clean)"
	}
	var old KeyParts
	if json.Unmarshal(b, &old) != nil {
		return "the earlier execution's record is unreadable"
	}
	return DiffKeys(&old, p)
}

// DiffKeys lists what differs between two keys' parts, most useful first:
// inputs, then environment, tools, command and the rest.
func DiffKeys(old, cur *KeyParts) string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	oldIn := map[string]KeyInput{}
	for _, in := range old.Inputs {
		oldIn[in.Path] = in
	}
	curIn := map[string]bool{}
	for _, in := range cur.Inputs {
		curIn[in.Path] = true
		o, ok := oldIn[in.Path]
		switch {
		case !ok:
			add("input %s is new", in.Path)
		case o.Digest != in.Digest:
			add("input %s changed (%s… → %s…)", in.Path, o.Digest.String()[:12], in.Digest.String()[:12])
		case o.Executable != in.Executable:
			add("input %s %s", in.Path, map[bool]string{true: "became executable", false: "is no longer executable"}[in.Executable])
		}
	}
	for _, in := range old.Inputs {
		if !curIn[in.Path] {
			add("input %s was removed", in.Path)
		}
	}
	for _, k := range unionKeys(old.Env, cur.Env) {
		ov, oOK := old.Env[k]
		cv, cOK := cur.Env[k]
		switch {
		case !oOK:
			add("environment variable %s is new (%q)", k, cv)
		case !cOK:
			add("environment variable %s was removed (was %q)", k, ov)
		case ov != cv:
			add("environment variable %s changed (%q → %q)", k, ov, cv)
		}
	}
	if strings.Join(old.Tools, "\n") != strings.Join(cur.Tools, "\n") {
		add("tool identity changed (%s → %s)", strings.Join(old.Tools, ", "), strings.Join(cur.Tools, ", "))
	}
	if strings.Join(old.Argv, "\x00") != strings.Join(cur.Argv, "\x00") {
		add("command changed: %s", midDiff(strings.Join(old.Argv, " "), strings.Join(cur.Argv, " ")))
	}
	if old.Identity != cur.Identity {
		add("step parameters changed: %s", lineDiff(old.Identity, cur.Identity))
	}
	if old.Rule != cur.Rule {
		add("rule implementation changed (%s → %s)", old.Rule, cur.Rule)
	}
	if old.Pipe != cur.Pipe {
		add("pipe's version changed (%s → %s)", old.Pipe, cur.Pipe)
	}
	if old.Sandbox != cur.Sandbox {
		add("sandboxing changed")
	}
	if strings.Join(old.Outputs, "\n") != strings.Join(cur.Outputs, "\n") {
		add("declared outputs changed (%s → %s)", strings.Join(old.Outputs, " "), strings.Join(cur.Outputs, " "))
	}
	if len(out) == 0 {
		return "the key matches the last execution's, but its result is no longer in the cache (cache cleaned, or an output blob was corrupt)"
	}
	const most = 8
	if len(out) > most {
		out = append(out[:most], fmt.Sprintf("… and %d more differences", len(out)-most))
	}
	return strings.Join(out, "; ")
}

func unionKeys(a, b map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// midDiff shows where two strings differ: the differing middle of each,
// with a little shared context, as "…a b c…" → "…a x c…".
func midDiff(a, b string) string {
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	sfx := 0
	for sfx < len(a)-p && sfx < len(b)-p && a[len(a)-1-sfx] == b[len(b)-1-sfx] {
		sfx++
	}
	const ctx = 12
	start := max(0, p-ctx)
	cut := func(s string) string {
		end := min(len(s), len(s)-sfx+ctx)
		out := s[start:end]
		if start > 0 {
			out = "…" + out
		}
		if end < len(s) {
			out += "…"
		}
		return fmt.Sprintf("%q", shorten(out))
	}
	return cut(a) + " → " + cut(b)
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:77] + "…"
	}
	return s
}

// lineDiff names the first lines that differ between two multi-line
// identities (a bundle's wheel list, say).
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := func(l string, list []string) bool {
		for _, x := range list {
			if x == l {
				return true
			}
		}
		return false
	}
	var parts []string
	for _, l := range al {
		if l != "" && !in(l, bl) {
			parts = append(parts, "-"+shorten(l))
		}
	}
	for _, l := range bl {
		if l != "" && !in(l, al) {
			parts = append(parts, "+"+shorten(l))
		}
	}
	if len(parts) > 4 {
		parts = append(parts[:4], "…")
	}
	return strings.Join(parts, " ")
}
