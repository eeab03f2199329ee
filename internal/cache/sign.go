package cache

// Signing protects a shared cache against poisoning: anyone who can write
// the bucket could otherwise store a result that makes every reader ship
// their bytes. With PIPE_REMOTE_CACHE_KEY set, pipe signs each AC entry it
// uploads, and a reader holding the key accepts only entries signed with it.
// CAS blobs need no signature: they are named by their sha256 and verified
// on download, and the signed ActionResult names them (Tree blobs included),
// so the signature covers the whole result transitively.
//
// Placement: ExecutedActionMetadata.auxiliary_metadata is REAPI's slot for
// "whatever extra metadata the worker wants to attach", a repeated
// google.protobuf.Any that servers store without interpreting. We add one
// Any of type signatureTypeURL whose value is this message, encoded by hand
// with protowire so no generated code is needed:
//
//	message ActionResultSignature {
//	  string algorithm = 1; // "hmac-sha256"
//	  bytes key_id = 2;     // first 8 bytes of HMAC(key, "pipe-remote-key-id")
//	  bytes mac = 3;        // HMAC-SHA256, see macInput
//	}
//
// The MAC covers a domain-separation tag, the action key, and the
// deterministic serialization of the ActionResult with every signature Any
// removed. Verifying re-serializes the parsed message rather than trusting
// byte offsets, so a server that re-encodes entries (bazel-remote validates
// and may rewrite AC entries) does not break signatures. The key id lets the
// reader say "signed with another key" rather than just "bad signature".

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	signatureTypeURL = "type.googleapis.com/pipebuild.pipe.remote.v1.ActionResultSignature"
	signatureAlg     = "hmac-sha256"
)

// Signature problems a reader with a key reports.
var (
	ErrUnsigned     = errors.New("entry is not signed")
	ErrOtherKey     = errors.New("entry is signed with a different key")
	ErrBadSignature = errors.New("entry's signature does not match its contents")
)

func keyID(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pipe-remote-key-id"))
	return m.Sum(nil)[:8]
}

// macOf computes the MAC of ar (which must carry no signature) for action.
func macOf(key []byte, action ActionKey, ar *repb.ActionResult) ([]byte, error) {
	body, err := marshalDet(ar)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pipe-remote-ac-v1\x00"))
	m.Write(action[:])
	m.Write(body)
	return m.Sum(nil), nil
}

// signResult adds a signature to ar, which must not carry one yet.
func signResult(key []byte, action ActionKey, ar *repb.ActionResult) error {
	if ar.ExecutionMetadata == nil {
		ar.ExecutionMetadata = &repb.ExecutedActionMetadata{}
	}
	mac, err := macOf(key, action, ar)
	if err != nil {
		return err
	}
	var v []byte
	v = protowire.AppendTag(v, 1, protowire.BytesType)
	v = protowire.AppendString(v, signatureAlg)
	v = protowire.AppendTag(v, 2, protowire.BytesType)
	v = protowire.AppendBytes(v, keyID(key))
	v = protowire.AppendTag(v, 3, protowire.BytesType)
	v = protowire.AppendBytes(v, mac)
	ar.ExecutionMetadata.AuxiliaryMetadata = append(ar.ExecutionMetadata.AuxiliaryMetadata,
		&anypb.Any{TypeUrl: signatureTypeURL, Value: v})
	return nil
}

type signature struct {
	alg        string
	keyID, mac []byte
}

func parseSignature(b []byte) (signature, error) {
	var s signature
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			s.alg = string(v)
		case 2:
			s.keyID = v
		case 3:
			s.mac = v
		}
	}
	return s, nil
}

// verifyResult checks ar's signature against key and action. It reports
// ErrUnsigned, ErrOtherKey or ErrBadSignature.
func verifyResult(key []byte, action ActionKey, ar *repb.ActionResult) error {
	var sigs []signature
	stripped := proto.Clone(ar).(*repb.ActionResult)
	if m := stripped.ExecutionMetadata; m != nil {
		var keep []*anypb.Any
		for _, a := range m.AuxiliaryMetadata {
			if a.TypeUrl != signatureTypeURL {
				keep = append(keep, a)
				continue
			}
			s, err := parseSignature(a.Value)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadSignature, err)
			}
			sigs = append(sigs, s)
		}
		m.AuxiliaryMetadata = keep
	}
	if len(sigs) == 0 {
		return ErrUnsigned
	}
	want, err := macOf(key, action, stripped)
	if err != nil {
		return err
	}
	id := keyID(key)
	ours := false
	for _, s := range sigs {
		if s.alg != signatureAlg || !hmac.Equal(s.keyID, id) {
			continue
		}
		ours = true
		if hmac.Equal(s.mac, want) {
			return nil
		}
	}
	if !ours {
		return ErrOtherKey
	}
	return ErrBadSignature
}
