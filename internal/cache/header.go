package cache

import (
	"fmt"
	"strings"
)

// Header is one name and value sent with every request to a remote cache
// (--remote-header KEY=VALUE): gRPC metadata for grpc(s)://, an HTTP header
// for http(s)://. Services such as BuildBuddy take their API key this way.
type Header struct {
	Name  string // lower case: gRPC metadata keys are
	Value string
}

// reservedHeaders are set by the transport itself; sending them would
// break the connection rather than configure it.
var reservedHeaders = map[string]bool{
	"content-type": true, "content-length": true, "te": true, "host": true,
	"connection": true, "transfer-encoding": true, "upgrade": true, "user-agent": true,
}

// ParseHeader parses "KEY=VALUE". The key is made lower case. Errors never
// repeat the value: it is often a secret.
func ParseHeader(s string) (Header, error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok {
		// Not echoed: "x-api-key: SECRET" is the likely mistake.
		return Header{}, fmt.Errorf("remote header has no '=' (%d characters, not shown in case it is a secret); want KEY=VALUE", len(s))
	}
	if name == "" {
		return Header{}, fmt.Errorf("remote header: empty name before '='; want KEY=VALUE")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return Header{}, fmt.Errorf("remote header %q: a name holds only letters, digits, '-', '_' and '.'", truncateForMessage(name))
		}
	}
	name = strings.ToLower(name)
	switch {
	case strings.HasPrefix(name, "grpc-"):
		return Header{}, fmt.Errorf("remote header %q: names starting with grpc- are gRPC's own", name)
	case strings.HasSuffix(name, "-bin"):
		return Header{}, fmt.Errorf("remote header %q: binary (-bin) headers are not supported", name)
	case reservedHeaders[name]:
		return Header{}, fmt.Errorf("remote header %q: the connection sets it itself", name)
	}
	value = strings.TrimSpace(value)
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c > 0x7e {
			return Header{}, fmt.Errorf("remote header %q: its value holds byte %#02x at offset %d; values are printable ASCII", name, c, i)
		}
	}
	return Header{Name: name, Value: value}, nil
}

// ParseHeaderList parses one KEY=VALUE per line ($PIPE_REMOTE_HEADERS):
// a value never holds a newline, so the list needs no quoting. Blank lines
// and lines starting with # are skipped.
func ParseHeaderList(s string) ([]Header, error) {
	var out []Header
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h, err := ParseHeader(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// mergeHeaders joins header lists; a later list's header replaces an
// earlier one of the same name, so the command line overrides the
// environment, which overrides the workspace.
func mergeHeaders(lists ...[]Header) []Header {
	var out []Header
	at := map[string]int{}
	for _, l := range lists {
		for _, h := range l {
			if i, ok := at[h.Name]; ok {
				out[i] = h
				continue
			}
			at[h.Name] = len(out)
			out = append(out, h)
		}
	}
	return out
}

func truncateForMessage(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
