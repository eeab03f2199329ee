package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeToken: a token file of any content decodes or is refused;
// what decodes encodes back to the same bytes.
func FuzzDecodeToken(f *testing.F) {
	var stamp [40]byte
	copy(stamp[:], "0123456789012345678901234567890123456789")
	f.Add(EncodeToken(stamp, Token{Instance: [16]byte{1, 2, 3}, Seq: 42}))
	f.Add(EncodeToken([40]byte{}, Token{}))
	f.Add([]byte(tokenMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, tok, ok := DecodeToken(b)
		if !ok {
			if st != ([40]byte{}) || !tok.IsZero() {
				t.Fatalf("a refused token decoded to %x %+v", st, tok)
			}
			return
		}
		if again := EncodeToken(st, tok); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x %+v, which encodes to %q, not %q", st, tok, again, b)
		}
	})
}

// FuzzReadMessage: a line of any bytes on the socket reads as one
// request or fails; what reads survives a write and a read.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte(`{"protocol":1,"op":"since","token":{"instance":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],"seq":7},"version":"v"}` + "\n"))
	f.Add([]byte(`{"protocol":1,"op":"shutdown"}`))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"token":{"instance":[256]}}` + "\n"))
	f.Add([]byte(strings.Repeat("[", 5000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req Request
		err := readMessage(bufio.NewReaderSize(bytes.NewReader(b), 16), &req)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeMessage(&out, req); err != nil {
			t.Fatalf("a request read cannot be written: %v", err)
		}
		var again Request
		if err := readMessage(bufio.NewReader(&out), &again); err != nil {
			t.Fatalf("a request written cannot be read: %v (%q)", err, out.Bytes())
		}
		if !reflect.DeepEqual(req, again) && utf8Clean(req) {
			t.Fatalf("round trip: %+v became %+v", req, again)
		}
		// A response carrying changes read from the wire also survives.
		var resp Response
		if readMessage(bufio.NewReader(bytes.NewReader(b)), &resp) == nil && resp.Changes != nil {
			resp.Changes.Unchanged("a/b")
			if _, err := json.Marshal(resp); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// utf8Clean reports whether req's strings survive JSON unchanged (JSON
// replaces what is not UTF-8).
func utf8Clean(req Request) bool {
	b, _ := json.Marshal(req)
	return !bytes.Contains(b, []byte(`\ufffd`))
}
