package fcgi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Param is one name-value pair: a CGI meta-variable sent in PARAMS, or a
// variable of GET_VALUES.
type Param struct {
	Name, Value string
}

// maxPairLength is the longest name or value the 31-bit length form can
// express (§3.4).
const maxPairLength = 1<<31 - 1

// appendLength appends a name-value length in the form of §3.4: one byte
// (high bit clear) up to 127, otherwise four bytes big-endian with the high
// bit set. This is what Go's net/http/fcgi and libfcgi write.
func appendLength(b []byte, n int) []byte {
	if n <= 127 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// AppendPair appends the §3.4 encoding of one name-value pair. Names and
// values longer than 2³¹−1 bytes cannot be encoded and are an error.
func AppendPair(b []byte, name, value string) ([]byte, error) {
	if len(name) > maxPairLength || len(value) > maxPairLength {
		return b, fmt.Errorf("fastcgi: name-value pair %.40q too long for the protocol (%d, %d bytes)", name, len(name), len(value))
	}
	b = appendLength(b, len(name))
	b = appendLength(b, len(value))
	b = append(b, name...)
	return append(b, value...), nil
}

// readLength decodes one §3.4 length at the start of b and returns it with
// the number of bytes it took, or n == 0 if b is too short.
func readLength(b []byte) (length, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0]&0x80 == 0 {
		return int(b[0]), 1
	}
	if len(b) < 4 {
		return 0, 0
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4
}

// DecodePairs decodes a complete sequence of §3.4 name-value pairs, as sent
// in a GET_VALUES_RESULT record. It is strict: a truncated length, a length
// that runs past the end of b, or more than maxPairs pairs is a
// *ProtocolError. Lengths are checked against len(b) before anything is
// copied, so it never allocates more than a small multiple of len(b).
func DecodePairs(b []byte, maxPairs int) ([]Param, error) {
	var out []Param
	for off := 0; off < len(b); {
		if len(out) == maxPairs {
			return out, &ProtocolError{Cause: CauseBadPair, Detail: fmt.Sprintf("more than %d pairs", maxPairs)}
		}
		nameLen, n := readLength(b[off:])
		if n == 0 {
			return out, &ProtocolError{Cause: CauseBadPair, Detail: fmt.Sprintf("name length truncated at byte %d", off)}
		}
		off += n
		valueLen, n := readLength(b[off:])
		if n == 0 {
			return out, &ProtocolError{Cause: CauseBadPair, Detail: fmt.Sprintf("value length truncated at byte %d", off)}
		}
		off += n
		// Compare without adding, so that two 31-bit lengths cannot
		// overflow on a 32-bit int.
		rest := len(b) - off
		if nameLen > rest || valueLen > rest-nameLen {
			return out, &ProtocolError{Cause: CauseBadPair, Detail: fmt.Sprintf("pair of %d+%d bytes at byte %d runs past the %d bytes of content", nameLen, valueLen, off, len(b))}
		}
		name := string(b[off : off+nameLen])
		off += nameLen
		value := string(b[off : off+valueLen])
		off += valueLen
		out = append(out, Param{name, value})
	}
	return out, nil
}

// EnvParams turns a CGI environment (KEY=VALUE strings, as internal/cgi
// builds them) into params. Entries without '=' are skipped.
func EnvParams(env []string) []Param {
	out := make([]Param, 0, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out = append(out, Param{k, v})
		}
	}
	return out
}
