package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// A build of part of a snapshot's graph (one edited file, and the ten
// actions downstream of it out of 10,000) used to rewrite the whole
// snapshot, and remove it first so that a build killed half way could not
// leave it speaking for outputs it had changed. Both now cost a small
// append to a second file, `snapshot.patches`, of records
//
//	u32 payload length | u32 crc32c of the payload | payload
//	payload: the checksum of the snapshot file it applies to | kind | …
//
// A "void" record, appended before the part is built, withdraws the
// snapshot; an "actions" record, appended when the part succeeded, puts
// the part's actions in place of the snapshot's and reinstates it. Loading
// applies, in order, the records naming the snapshot file's checksum; a
// damaged or partial record (a process killed while appending) withdraws
// the snapshot, so the next build takes the long way. When the patches
// reach a quarter of the snapshot's size, the merged snapshot is written
// again instead (Save), which starts an empty patches file.

const (
	patchVoid    byte = 1
	patchActions byte = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// patchesFile is where the patches of the snapshot at file go.
func patchesFile(file string) string { return file + ".patches" }

// applyPatches applies the patch records b holds to s, and reports whether
// s still stands.
func (s *Snapshot) applyPatches(b []byte) bool {
	valid := true
	for len(b) > 0 {
		if len(b) < 8 {
			return false
		}
		n := uint64(binary.LittleEndian.Uint32(b))
		if n > uint64(len(b)-8) || n < uint64(len(s.id))+1 {
			return false
		}
		payload := b[8 : 8+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
			return false
		}
		b = b[8+n:]
		s.patched += int64(8 + n)
		if [32]byte(payload[:32]) != s.id {
			continue // a patch of a snapshot since replaced
		}
		switch payload[32] {
		case patchVoid:
			valid = false
		case patchActions:
			d := snapDecoder{b: payload[33:]}
			count := d.uvarint()
			if count > uint64(len(d.b)) {
				return false
			}
			for range count {
				i := d.uvarint()
				a, ok := d.action(uint64(len(s.Actions)))
				if !ok || i >= uint64(len(s.Actions)) {
					return false
				}
				s.Actions[i] = a
			}
			if d.err || len(d.b) != 0 {
				return false
			}
			valid = true
		default:
			return false
		}
	}
	return valid
}

func (s *Snapshot) appendPatch(file string, kind byte, body []byte) error {
	payload := append(append(append([]byte(nil), s.id[:]...), kind), body...)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(payload, castagnoli))
	rec = append(rec, payload...)
	f, err := os.OpenFile(patchesFile(file), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	// One write: a process killed during it leaves a partial record, which
	// withdraws the snapshot.
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.patched += int64(len(rec))
	return nil
}

// Void withdraws the snapshot at file, which s was loaded from, before a
// build of part of its graph changes what it recorded: until SavePart
// records the part, the snapshot answers nothing. When the withdrawal
// cannot be appended, the snapshot is removed.
func (s *Snapshot) Void(file string) error {
	if err := s.appendPatch(file, patchVoid, nil); err == nil {
		return nil
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the build snapshot: %w", err)
	}
	return nil
}

// SavePart records that a build of part of s's graph, whose snapshot is
// part (RecordSnapshot with ActionsOnly), succeeded: part's actions take
// the place of s's, in an appended patch, or by writing the merged
// snapshot when the patches have grown to a quarter of its size. It fails
// with ErrNoSnapshot when part holds an action s does not: the graph is
// not the same.
//
// It returns the stamp of the snapshot as saved.
func (s *Snapshot) SavePart(file string, part *Snapshot) ([40]byte, error) {
	where, ok := s.where(part)
	if !ok {
		return [40]byte{}, &ErrNoSnapshot{Reason: "the build declared actions the snapshot does not hold"}
	}
	body := binary.AppendUvarint(nil, uint64(len(part.Actions)))
	for i := range part.Actions {
		a := placed(part.Actions[i], where)
		body = binary.AppendUvarint(body, uint64(where[i]))
		body = appendAction(body, &a)
	}
	if s.id == ([32]byte{}) || 4*(s.patched+int64(len(body))) > s.size {
		merged, _ := s.Merge(part)
		err := merged.Save(file)
		return merged.Stamp(), err
	}
	if err := s.appendPatch(file, patchActions, body); err != nil {
		return [40]byte{}, fmt.Errorf("save build snapshot: %w", err)
	}
	return s.Stamp(), nil
}
