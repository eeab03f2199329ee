package apimeta

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.gen.ts from the generator's output")

const operationsLine = "/**\n * Type for all operation names as a string union\n */\nexport type Operations = keyof typeof OPERATION_DETAILS;\n"

func goldenInputs(t testing.TB) []string {
	specs, err := filepath.Glob("testdata/*.json")
	if err != nil || len(specs) == 0 {
		t.Fatalf("no testdata/*.json: %v", err)
	}
	return specs
}

func goldenPath(spec string) string { return strings.TrimSuffix(spec, ".json") + ".gen.ts" }

func TestGolden(t *testing.T) {
	for _, spec := range goldenInputs(t) {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			in, err := os.ReadFile(spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Generate(in, filepath.ToSlash(spec))
			if err != nil {
				t.Fatal(err)
			}
			golden := goldenPath(spec)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Generate(%s) differs from %s (run with -update if the change is intended):\n--- got\n%s--- want\n%s", spec, golden, got, want)
			}
		})
	}
}

// TestGoldenPrettier checks that prettier leaves the golden files as they
// are. It needs node; point PIPE_PRETTIER at a prettier binary to run it.
func TestGoldenPrettier(t *testing.T) {
	prettier := os.Getenv("PIPE_PRETTIER")
	if prettier == "" {
		t.Skip("set PIPE_PRETTIER to a prettier binary to check formatter stability")
	}
	var goldens []string
	for _, spec := range goldenInputs(t) {
		goldens = append(goldens, goldenPath(spec))
	}
	out, err := exec.Command(prettier, append([]string{"--single-quote", "--check"}, goldens...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("prettier would reformat golden files: %v\n%s", err, out)
	}
}

func TestCamelCase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"read_item_items__item_id__get", "readItemItemsItemIdGet"},
		{"root__get", "rootGet"},
		{"createItem", "createItem"},
		{"CreateItem", "createItem"},
		{"list", "list"},
		{"LIST", "list"},
		{"getHTTPResponse", "getHttpResponse"},
		{"HTTPServerStatus", "httpServerStatus"},
		{"getV2Items", "getV2Items"},
		{"v2_items", "v2Items"},
		{"item2name", "item2name"},
		{"2fa-verify", "2faVerify"},
		{"items.list", "itemsList"},
		{"  spaced  out  ", "spacedOut"},
		{"kebab-case-id", "kebabCaseId"},
		{"élément_list", "élémentList"},
		{"_items__id__get", "itemsIdGet"},
		{"___", ""},
		{"", ""},
	} {
		if got := camelCase(tc.in); got != tc.want {
			t.Errorf("camelCase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPropertyKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"createItem", "createItem"},
		{"class", "class"},
		{"élémentList", "élémentList"},
		{"2faVerify", "'2faVerify'"},
		{"items.list", "'items.list'"},
		{"Items API.list", "'Items API.list'"},
		{"it's.list", `"it's.list"`},
	} {
		if got := propertyKey(tc.in); got != tc.want {
			t.Errorf("propertyKey(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestJSString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/items/{item_id}", `'/items/{item_id}'`},
		{"it's", `"it's"`},
		{`say "hi"`, `'say "hi"'`},
		{`a'b"c`, `'a\'b"c'`},
		{`a''b"c`, `"a''b\"c"`},
		{`back\slash`, `'back\\slash'`},
		{"new\nline\ttab\r\x00\x1f\x7f", `'new\nline\ttab\r\x00\x1f\x7f'`},
		{"sep\u2028\u2029", `'sep\u2028\u2029'`},
		{"ünï", "'ünï'"},
	} {
		if got := jsString(tc.in); got != tc.want {
			t.Errorf("jsString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestErrors(t *testing.T) {
	const file = "dist/p/openapi/openapi.json"
	for _, tc := range []struct{ name, spec, want string }{
		{"empty", ``, file + ":1:1: not valid JSON: unexpected end of JSON input"},
		{"truncated", "{\n  \"paths\": {", file + ":2:13: not valid JSON: unexpected end of JSON input"},
		{"bad char", "{\n  \"paths\": {},\n  oops\n}", file + `:3:3: not valid JSON: invalid character 'o' looking for beginning of object key string`},
		{"bad char after multibyte", "{\"é\": x}", file + `:1:7: not valid JSON: invalid character 'x' looking for beginning of value`},
		{"trailing", `{"paths": {}} {}`, file + `:1:15: not valid JSON: invalid character '{' after top-level value`},
		{"array", `[]`, file + `: the document is an array, not an OpenAPI object`},
		{"swagger", `{"swagger": "2.0", "paths": {}}`, file + `: this is a Swagger 2.0 document`},
		{"version", `{"openapi": "4.0.0", "paths": {}}`, file + `: openapi version "4.0.0" is not supported`},
		{"no paths", `{"openapi": "3.0.0"}`, file + `: no "paths" object`},
		{"paths array", `{"openapi": "3.0.0", "paths": []}`, file + `: "paths" is an array, not an object`},
		{"paths null", `{"openapi": "3.0.0", "paths": null}`, file + `: "paths" is null, not an object`},
		{"path item", `{"paths": {"/a": "x"}}`, file + `: paths["/a"] is a string, not a path item object`},
		{"operation", `{"paths": {"/a": {"get": 1}}}`, file + `: paths["/a"].get is a number, not an operation object`},
		{"operationId type", `{"paths": {"/a": {"get": {"operationId": 7}}}}`, file + `: GET /a: operationId is a number, not a string`},
		{"operationId empty", `{"paths": {"/a": {"get": {"operationId": "--"}}}}`, file + `: GET /a (operationId "--"): the operationId has no letters or digits`},
		{"duplicate operationId", `{"paths": {"/a": {"get": {"operationId": "list"}}, "/b": {"get": {"operationId": "list"}}}}`,
			file + `: GET /a (operationId "list") and GET /b (operationId "list") are both named "list", and GET /a (operationId "list") has no tag to tell them apart`},
		{"duplicate operationId one tag", `{"paths": {"/a": {"get": {"operationId": "list", "tags": ["a"]}}, "/b": {"get": {"operationId": "list"}}}}`,
			file + `: GET /a (operationId "list") and GET /b (operationId "list") are both named "list", and GET /b (operationId "list") has no tag`},
		{"camelCase collision same tag", `{"paths": {"/a": {"get": {"operationId": "list_items", "tags": ["x"]}, "put": {"operationId": "listItems", "tags": ["x", "y"]}}}}`,
			file + `: GET /a (operationId "list_items") and PUT /a (operationId "listItems") are both named "listItems" and share the first tag "x"`},
		{"derived collision", `{"paths": {"/a-b": {"get": {}}, "/a_b": {"get": {}}}}`,
			file + `: GET /a-b (no operationId; derived "_a_b_get") and GET /a_b (no operationId; derived "_a_b_get") are both named "aBGet"`},
		{"external ref", `{"paths": {"/a": {"$ref": "other.json#/x"}}}`, file + `: paths["/a"]: $ref "other.json#/x" points outside this document`},
		{"dangling ref", `{"paths": {"/a": {"$ref": "#/components/pathItems/nope"}}}`, file + `: paths["/a"]: $ref "#/components/pathItems/nope" points to nothing`},
		{"ref cycle", `{"paths": {"/a": {"$ref": "#/paths/~1a"}}}`, file + `: paths["/a"]: $ref chain longer than 32`},
		{"bom then bad char", "\ufeff{x", file + `:1:2: not valid JSON: invalid character 'x' looking for beginning of object key string`},
		{"long version", `{"openapi": "2.0.0000000000000000000000000000000000000000000é", "paths": {}}`, file + `: openapi version "2.0.00000000000000000000000000000000000… is not supported`},
		{"response ref cycle", `{"paths": {"/a": {"get": {"responses": {"200": {"$ref": "#/r"}}}}}, "r": {"$ref": "#/r"}}`,
			file + `: GET /a responses.200: $ref chain longer than 32`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Generate([]byte(tc.spec), file)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n  %s\nwant it to start with\n  %s", err, tc.want)
			}
		})
	}
}

func TestIgnoredFields(t *testing.T) {
	spec := `{"openapi": "3.0.0", "paths": {"/a": {
		"summary": "s", "description": "d", "servers": [], "parameters": [{"name": "x", "in": "query"}],
		"x-ext": {"get": {}}, "GET": {"operationId": "upper"}, "connect": {"operationId": "c"},
		"get": {"operationId": "only"}}}}`
	got, err := Generate([]byte(spec), "s.json")
	if err != nil {
		t.Fatal(err)
	}
	want := "// Generated by pipe from s.json; do not edit.\n\n/**\n * Operation details for API\n */\nexport const OPERATION_DETAILS = {\n  only: {\n    path: '/a',\n    method: 'GET',\n  },\n} as const;\n\n" + operationsLine
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestByteOrderMark(t *testing.T) {
	got, err := Generate([]byte("\ufeff{\"paths\": {}}"), "bom.json")
	if err != nil || !strings.HasSuffix(string(got), operationsLine) {
		t.Errorf("Generate with a byte order mark: %v\n%s", err, got)
	}
}

func TestHeaderStaysOneLine(t *testing.T) {
	got, err := Generate([]byte(`{"paths": {}}`), "a\nb\u2028c.json")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(got), "\n"); first != "// Generated by pipe from a?b?c.json; do not edit." {
		t.Errorf("header %q", first)
	}
}

// manySpec has enough paths, methods and collisions that Go's randomized
// map iteration would show in the output if anything depended on it.
func manySpec() []byte {
	var b strings.Builder
	b.WriteString(`{"openapi": "3.1.0", "paths": {`)
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"/r%d/{id}": {"parameters": [], `, i)
		fmt.Fprintf(&b, `"get": {"operationId": "get_%d", "tags": ["t%d"]}, `, i, i)
		fmt.Fprintf(&b, `"post": {"operationId": "shared", "tags": ["t%d"], "responses": {"200": {"content": {"application/json": {}, "text/event-stream": {}}}}}, `, i)
		fmt.Fprintf(&b, `"delete": {}, "patch": {"operationId": "P%d", "x-streaming": %v}}`, i, i%3 == 0)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

func TestDeterministic(t *testing.T) {
	spec := manySpec()
	first, err := Generate(spec, "many.json")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(first), "path: "); n != 160 {
		t.Fatalf("%d operations, want 160", n)
	}
	for range 20 {
		got, err := Generate(spec, "many.json")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, first) {
			t.Fatalf("output changed between runs:\n%s\nthen\n%s", first, got)
		}
	}
	// Errors are reported in a fixed order too.
	bad := bytes.ReplaceAll(spec, []byte(`"tags": ["t1"]`), []byte(`"tags": ["t0"]`))
	bad = bytes.ReplaceAll(bad, []byte(`"tags": ["t3"]`), []byte(`"tags": []`))
	_, firstErr := Generate(bad, "many.json")
	if firstErr == nil {
		t.Fatal("no error for colliding tags")
	}
	for range 20 {
		if _, err := Generate(bad, "many.json"); err == nil || err.Error() != firstErr.Error() {
			t.Fatalf("error changed between runs: %v, then %v", firstErr, err)
		}
	}
}

func FuzzGenerate(f *testing.F) {
	for _, spec := range goldenInputs(f) {
		b, err := os.ReadFile(spec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, filepath.ToSlash(spec))
	}
	f.Add(manySpec(), "many.json")
	f.Add([]byte(`{"paths": {"/a": {"$ref": "#/paths/~1a"}}}`), "cycle.json")
	f.Add([]byte(`{"paths": {"/{x}": {"get": {"operationId": "a'b\"c\\d", "tags": ["\u2028"]}, "put": {"operationId": "a_b_c_d", "tags": [""]}}}}`), "odd.json")
	f.Fuzz(func(t *testing.T, spec []byte, file string) {
		out, err := Generate(spec, file)
		if err != nil {
			if out != nil {
				t.Fatalf("output beside error %v", err)
			}
			return
		}
		s := string(out)
		if !strings.HasSuffix(s, "\n} as const;\n\n"+operationsLine) && !strings.HasSuffix(s, " = {} as const;\n\n"+operationsLine) {
			t.Fatalf("output does not end with the Operations type:\n%s", s)
		}
		if first, _, _ := strings.Cut(s, "\n"); !strings.HasPrefix(first, "// Generated by pipe from ") {
			t.Fatalf("header spans lines: %q", first)
		}
		again, err := Generate(spec, file)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second run differs: %v", err)
		}
	})
}

// TestMatchesNxGenerator compares Generate with what the Nx generator's
// open-api#ts-metadata writes for the same documents (testdata/nx/*.nx.ts
// are its output for them): the files are the same byte for byte below
// pipe's first line.
func TestMatchesNxGenerator(t *testing.T) {
	specs, err := filepath.Glob("testdata/nx/*.json")
	if err != nil || len(specs) == 0 {
		t.Fatalf("no testdata/nx/*.json: %v", err)
	}
	for _, spec := range specs {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			in, err := os.ReadFile(spec)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(spec, ".json") + ".nx.ts")
			if err != nil {
				t.Fatal(err)
			}
			got, err := Generate(in, filepath.ToSlash(spec))
			if err != nil {
				t.Fatal(err)
			}
			header := "// Generated by pipe from " + filepath.ToSlash(spec) + "; do not edit.\n\n"
			rest, ok := bytes.CutPrefix(got, []byte(header))
			if !ok {
				t.Fatalf("Generate(%s) does not start with pipe's header %q:\n%s", spec, header, got)
			}
			if !bytes.Equal(rest, want) {
				t.Errorf("Generate(%s) below the header differs from the Nx generator's output:\n--- got\n%s--- want\n%s", spec, rest, want)
			}
		})
	}
}

func TestClassName(t *testing.T) {
	for in, want := range map[string]string{
		"TestApi": "TestApi", "my-api": "MyApi", "my api": "MyApi", "2fa api": "_2faApi",
		"Orders_v2": "OrdersV2", "": "API", "*/ evil": "Evil", "ápi": "Pi",
	} {
		if got := className(in); got != want {
			t.Errorf("className(%q) = %q, want %q", in, got, want)
		}
	}
}
