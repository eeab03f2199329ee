package sandbox

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzReadMessage: any bytes on a supervisor's connection read as one
// reply or fail; a length that promises more than arrives allocates no
// more than what arrived.
func FuzzReadMessage(f *testing.F) {
	frame := func(body string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(body)))
		return append(b, body...)
	}
	f.Add(frame(`{"code":0}`))
	f.Add(frame(`{"setup":"x","code":0,"retire":true}`))
	f.Add(frame(`{"code":-1,"signal":9}`))
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<40))
	f.Add(binary.LittleEndian.AppendUint64(nil, 60<<20))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rep reply
		if err := readMessage(bytes.NewReader(b), &rep); err != nil {
			return
		}
		// What read as a reply is a frame whose length is that of the
		// rest of its body.
		if len(b) < 8 || binary.LittleEndian.Uint64(b) > uint64(len(b)-8) {
			t.Fatalf("read a reply from a short frame: %q", b)
		}
		_ = rep.result.err(Spec{Argv: []string{"x"}})
	})
}
