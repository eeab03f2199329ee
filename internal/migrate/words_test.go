package migrate

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [][]string
	}{
		{`uv run python a.py "dist/x y/openapi.json"`, [][]string{{"uv", "run", "python", "a.py", "dist/x y/openapi.json"}}},
		{`cdk synth && echo 'done; ok' ; ls`, [][]string{{"cdk", "synth"}, {"echo", "done; ok"}, {"ls"}}},
		{"a \\\n b\nc", [][]string{{"a", "b"}, {"c"}}},
		{`--opt="a \"b\"" ''`, [][]string{{`--opt=a "b"`, ""}}},
		{`x || y`, [][]string{{"x"}, {"y"}}},
		{`   `, nil},
	} {
		got, err := splitCommand(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`echo 'x`, `echo "x`} {
		if _, err := splitCommand(bad); err == nil {
			t.Errorf("splitCommand(%q): no error for an unterminated quote", bad)
		}
	}
}

// quoteWords is the inverse of splitCommand for one command.
func quoteWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// FuzzSplitCommand: never panics; what it reads, quoted again, reads back
// the same.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		`uv pip install -n --python-platform x86_64-manylinux2014 --target dist/p/bundle-x86 -r r.txt`,
		`nx g @aws/nx-plugin:open-api#ts-metadata --openApiSpecPath="dist/a/openapi.json" --outputPath="src/gen"`,
		`a && b || c; d` + "\n" + `e \` + "\n" + `f`,
		`'it'\''s' "a\"b" \$x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmds, err := splitCommand(line)
		if err != nil {
			return
		}
		for _, words := range cmds {
			if len(words) == 0 {
				t.Fatalf("an empty command in %q", cmds)
			}
			again, err := splitCommand(quoteWords(words))
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], words) {
				t.Fatalf("%q: words %q quote to %q, which reads back as %q (%v)", line, words, quoteWords(words), again, err)
			}
		}
	})
}
