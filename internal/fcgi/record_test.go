package fcgi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// The wire form is checked against bytes written out from the FastCGI 1.0
// specification (§3.3, §5.1): header fields big-endian, padding to a multiple
// of eight as Go's net/http/fcgi writes it (-len & 7), reserved bytes zero.
func TestRecordsHaveTheSpecifiedWireForm(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{
			name: "begin request, responder, keep conn",
			got:  appendRecord(nil, TypeBeginRequest, 1, []byte{0, 1, 1, 0, 0, 0, 0, 0}),
			want: []byte{1, 1, 0, 1, 0, 8, 0, 0 /* body */, 0, 1, 1, 0, 0, 0, 0, 0},
		},
		{
			name: "empty stdin ends the stream",
			got:  appendRecord(nil, TypeStdin, 1, nil),
			want: []byte{1, 5, 0, 1, 0, 0, 0, 0},
		},
		{
			name: "three bytes of stdout padded to eight",
			got:  appendRecord(nil, TypeStdout, 0x0102, []byte("abc")),
			want: []byte{1, 6, 1, 2, 0, 3, 5, 0, 'a', 'b', 'c', 0, 0, 0, 0, 0},
		},
		{
			name: "abort request",
			got:  appendRecord(nil, TypeAbortRequest, 1, nil),
			want: []byte{1, 2, 0, 1, 0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Errorf("got  % x\nwant % x", tt.got, tt.want)
			}
		})
	}
}

func TestLongStreamsAreSplitIntoRecordsOfAtMost65535Bytes(t *testing.T) {
	content := bytes.Repeat([]byte{'x'}, 2*MaxContentLength+10)
	b := appendStream(nil, TypeStdin, 1, content)
	rd := NewReader(bytes.NewReader(b))
	var lengths []int
	var got bytes.Buffer
	for {
		h, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lengths = append(lengths, int(h.ContentLength))
		if (int(h.ContentLength)+int(h.PaddingLength))%8 != 0 {
			t.Errorf("record of %d bytes padded by %d: not 8-byte aligned", h.ContentLength, h.PaddingLength)
		}
		io.Copy(&got, rd)
	}
	if want := []int{65535, 65535, 10}; !equalInts(lengths, want) {
		t.Errorf("record lengths %v, want %v", lengths, want)
	}
	if !bytes.Equal(got.Bytes(), content) {
		t.Errorf("content changed in transit")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReaderRejectsMalformedRecords(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		cause ProtocolCause
	}{
		{"version 0", []byte{0, 6, 0, 1, 0, 0, 0, 0}, CauseBadVersion},
		{"version 2", []byte{2, 6, 0, 1, 0, 0, 0, 0}, CauseBadVersion},
		{"type 0", []byte{1, 0, 0, 1, 0, 0, 0, 0}, CauseUnknownType},
		{"type 12", []byte{1, 12, 0, 1, 0, 0, 0, 0}, CauseUnknownType},
		{"type 255", []byte{1, 255, 0, 1, 0, 0, 0, 0}, CauseUnknownType},
		{"header cut short", []byte{1, 6, 0}, CauseTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.input)).Next()
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Cause != tt.cause {
				t.Fatalf("Next() = %v, want a *ProtocolError with cause %q", err, tt.cause)
			}
		})
	}
}

func TestReaderReportsContentCutShort(t *testing.T) {
	// The header promises 100 bytes of content; 3 arrive.
	rd := NewReader(bytes.NewReader([]byte{1, 6, 0, 1, 0, 100, 4, 0, 'a', 'b', 'c'}))
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(rd)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Cause != CauseTruncated || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAll = %v, want a truncation wrapping io.ErrUnexpectedEOF", err)
	}
}

func TestReaderSkipsUnreadContentAndPadding(t *testing.T) {
	var b []byte
	b = appendRecord(b, TypeStderr, 1, []byte("not read"))
	b = append(b, 1, byte(TypeStdout), 0, 1, 0, 2, 255, 0, 'o', 'k') // 2 bytes, the most padding
	b = append(b, make([]byte, 255)...)
	b = appendRecord(b, TypeEndRequest, 1, make([]byte, 8))
	rd := NewReader(bytes.NewReader(b))
	var types []RecordType
	for {
		h, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, h.Type)
	}
	if len(types) != 3 || types[2] != TypeEndRequest {
		t.Errorf("records %v, want STDERR, STDOUT, END_REQUEST", types)
	}
}

func TestPairLengthsUseOneOrFourBytes(t *testing.T) {
	tests := []struct {
		name       string
		nameLen    int
		valueLen   int
		wantPrefix []byte
	}{
		{"both short", 3, 0, []byte{3, 0}},
		{"127 is the longest one-byte length", 127, 127, []byte{127, 127}},
		{"128 takes four bytes with the high bit set", 128, 1, []byte{0x80, 0, 0, 128, 1}},
		{"long value", 1, 70000, []byte{1, 0x80, 0x01, 0x11, 0x70}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, value := strings.Repeat("n", tt.nameLen), strings.Repeat("v", tt.valueLen)
			b, err := AppendPair(nil, name, value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, tt.wantPrefix) || len(b) != len(tt.wantPrefix)+tt.nameLen+tt.valueLen {
				t.Fatalf("encoding starts % x (len %d), want prefix % x", b[:min(len(b), 8)], len(b), tt.wantPrefix)
			}
			got, err := DecodePairs(b, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Name != name || got[0].Value != value {
				t.Errorf("round trip changed the pair")
			}
		})
	}
}

func TestDecodePairsRejectsMalformedInput(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF) // 2³¹−1 after the flag bit
	tests := []struct {
		name  string
		input []byte
	}{
		{"name length cut short", []byte{0x80, 0}},
		{"value length missing", []byte{3}},
		{"value length cut short", []byte{3, 0x80, 1}},
		{"name runs past the end", []byte{5, 0, 'a', 'b'}},
		{"value runs past the end", []byte{1, 5, 'a', 'b'}},
		{"2 GiB name in 8 bytes", append(append([]byte{}, big...), 0, 'a', 'b', 'c')},
		{"2 GiB name and value", append(append([]byte{}, big...), big...)},
		{"too many pairs", bytes.Repeat([]byte{0, 0}, 65)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePairs(tt.input, 64)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Cause != CauseBadPair {
				t.Fatalf("DecodePairs = %v, want a *ProtocolError with cause %q", err, CauseBadPair)
			}
		})
	}
}

func TestDecodingHostileLengthsAllocatesNothingLarge(t *testing.T) {
	input := append(binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF), binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		DecodePairs(input, 64)
	}
	runtime.ReadMemStats(&after)
	// Only the error is allocated: well under a kilobyte a call.
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 100; perCall > 1024 {
		t.Errorf("DecodePairs of a 2 GiB claim allocated %d bytes a call", perCall)
	}
}

func TestEnvParamsSplitsAtTheFirstEquals(t *testing.T) {
	got := EnvParams([]string{"QUERY_STRING=a=b", "EMPTY=", "junk"})
	want := []Param{{"QUERY_STRING", "a=b"}, {"EMPTY", ""}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("EnvParams = %q, want %q", got, want)
	}
}
