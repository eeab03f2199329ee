package migrate

import (
	"fmt"
	"strings"
)

// splitCommand splits a shell command line into its commands (separated
// by &&, ||, ; or a line break) and each command into words, removing the
// quotes a POSIX shell would. It understands what Nx targets contain:
// words, single and double quotes, backslash escapes; anything it cannot
// read (an unterminated quote) is an error, and the target is reported as
// not translated rather than guessed at.
func splitCommand(line string) ([][]string, error) {
	var (
		cmds  [][]string
		words []string
		word  strings.Builder
		in    bool // a word has started (possibly empty, as in "")
	)
	endWord := func() {
		if in {
			words = append(words, word.String())
			word.Reset()
			in = false
		}
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' at offset %d", i)
			}
			word.WriteString(line[i+1 : i+1+j])
			in = true
			i += j + 1
		case c == '"':
			in = true
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`\n", line[i+1]) >= 0 {
					i++
				}
				word.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
		case c == '\\':
			if i+1 < len(line) {
				i++
				if line[i] != '\n' {
					word.WriteByte(line[i])
					in = true
				}
			}
		case c == ' ' || c == '\t':
			endWord()
		case c == '\n' || c == ';':
			endCmd()
		case c == '&' && i+1 < len(line) && line[i+1] == '&', c == '|' && i+1 < len(line) && line[i+1] == '|':
			endCmd()
			i++
		default:
			word.WriteByte(c)
			in = true
		}
	}
	endCmd()
	return cmds, nil
}

// flagValue returns the value of --name in words, given as --name=V or
// --name V; ok is false when the flag is absent.
func flagValue(words []string, name string) (string, bool) {
	for i, w := range words {
		if v, found := strings.CutPrefix(w, name+"="); found {
			return v, true
		}
		if w == name && i+1 < len(words) {
			return words[i+1], true
		}
	}
	return "", false
}
