package journal

import (
	"encoding/binary"
	"hash/crc32"
	"os"

	"github.com/pipebuild/pipe/internal/files"
)

// A build keeps the token it was handed beside its snapshot, with the
// snapshot's stamp (engine.Snapshot.Stamp): the token vouches only for the
// snapshot that build verified or wrote. Any other build that changes the
// snapshot changes its stamp, and the token no longer applies.
//
//	magic | stamp (40) | instance (16) | seq (8, little-endian) | crc32c of all before

const tokenMagic = "pipe-journal-token-1\n"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// tokenSize is the size of a token file.
const tokenSize = len(tokenMagic) + 40 + 16 + 8 + 4

// EncodeToken encodes the token file's content.
func EncodeToken(stamp [40]byte, tok Token) []byte {
	b := append([]byte(tokenMagic), stamp[:]...)
	b = append(b, tok.Instance[:]...)
	b = binary.LittleEndian.AppendUint64(b, tok.Seq)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeToken decodes a token file's content; ok is false when it is
// damaged.
func DecodeToken(b []byte) (stamp [40]byte, tok Token, ok bool) {
	if len(b) != tokenSize || string(b[:len(tokenMagic)]) != tokenMagic {
		return stamp, tok, false
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return stamp, tok, false
	}
	r := body[len(tokenMagic):]
	copy(stamp[:], r[:40])
	copy(tok.Instance[:], r[40:56])
	tok.Seq = binary.LittleEndian.Uint64(r[56:64])
	return stamp, tok, true
}

// SaveToken records tok as the token of the snapshot with stamp.
func SaveToken(file string, stamp [40]byte, tok Token) error {
	return files.WriteAtomic(file, EncodeToken(stamp, tok), 0o644)
}

// LoadToken returns the token recorded for the snapshot with stamp, or the
// zero token.
func LoadToken(file string, stamp [40]byte) Token {
	b, err := os.ReadFile(file)
	if err != nil {
		return Token{}
	}
	st, tok, ok := DecodeToken(b)
	if !ok || st != stamp {
		return Token{}
	}
	return tok
}
