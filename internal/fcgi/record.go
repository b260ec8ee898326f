// Package fcgi is suserve's client of the FastCGI 1.0 protocol: it sends a
// request's CGI meta-variables and body to a persistent FastCGI worker over a
// stream socket and delivers the worker's stdout as a stream, its stderr as
// lines, and its END_REQUEST as a status or a typed error. The worker is
// untrusted: every record it sends is checked, and nothing it says can make
// the client allocate more than a fixed amount per connection.
package fcgi

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// RecordType is the type of a FastCGI record (FastCGI 1.0 §8).
type RecordType uint8

// Record types, FastCGI 1.0 §8.
const (
	TypeBeginRequest    RecordType = 1
	TypeAbortRequest    RecordType = 2
	TypeEndRequest      RecordType = 3
	TypeParams          RecordType = 4
	TypeStdin           RecordType = 5
	TypeStdout          RecordType = 6
	TypeStderr          RecordType = 7
	TypeData            RecordType = 8
	TypeGetValues       RecordType = 9
	TypeGetValuesResult RecordType = 10
	TypeUnknownType     RecordType = 11
	maxType                        = TypeUnknownType
)

var typeNames = [...]string{
	TypeBeginRequest:    "BEGIN_REQUEST",
	TypeAbortRequest:    "ABORT_REQUEST",
	TypeEndRequest:      "END_REQUEST",
	TypeParams:          "PARAMS",
	TypeStdin:           "STDIN",
	TypeStdout:          "STDOUT",
	TypeStderr:          "STDERR",
	TypeData:            "DATA",
	TypeGetValues:       "GET_VALUES",
	TypeGetValuesResult: "GET_VALUES_RESULT",
	TypeUnknownType:     "UNKNOWN_TYPE",
}

func (t RecordType) String() string {
	if t >= 1 && t <= maxType {
		return "FCGI_" + typeNames[t]
	}
	return fmt.Sprintf("FCGI_TYPE_%d", uint8(t))
}

const (
	// Version1 is the only protocol version, FCGI_VERSION_1.
	Version1 = 1
	// HeaderLen is the length of a record header, FCGI_HEADER_LEN.
	HeaderLen = 8
	// MaxContentLength is the most content one record carries (the
	// contentLength field is 16 bits); longer streams are split.
	MaxContentLength = 65535
	// maxPadding is the most padding a record may declare (8 bits).
	maxPadding = 255

	// nullRequestID marks management records (§3.3).
	nullRequestID = 0
	// requestID is the id of every request this client sends: it never
	// multiplexes, so one id per connection suffices (§3.3 recommends
	// small ids).
	requestID = 1

	roleResponder = 1 // FCGI_RESPONDER, §6.2
	flagKeepConn  = 1 // FCGI_KEEP_CONN, §5.1
)

// Header is a record header (FastCGI 1.0 §3.3). The reserved byte is always
// zero on the wire and is ignored when read.
type Header struct {
	Version       uint8
	Type          RecordType
	RequestID     uint16
	ContentLength uint16
	PaddingLength uint8
}

// paddingFor returns the padding that aligns a record with contentLength
// bytes of content on an 8-byte boundary, as §3.3 recommends and as Go's
// net/http/fcgi, libfcgi and php-cgi do.
func paddingFor(contentLength int) int {
	return -contentLength & 7
}

// appendHeader appends the wire form of a header for a record of type t with
// n bytes of content and the recommended padding.
func appendHeader(b []byte, t RecordType, id uint16, n int) []byte {
	return append(b, Version1, byte(t), byte(id>>8), byte(id), byte(n>>8), byte(n), byte(paddingFor(n)), 0)
}

var zeroPadding [maxPadding]byte

// appendRecord appends one complete record; content must not exceed
// MaxContentLength.
func appendRecord(b []byte, t RecordType, id uint16, content []byte) []byte {
	b = appendHeader(b, t, id, len(content))
	b = append(b, content...)
	return append(b, zeroPadding[:paddingFor(len(content))]...)
}

// appendStream appends content as a stream of type t: as many records of at
// most MaxContentLength bytes as it takes (§3.3, §5.3). It does not append
// the empty record that ends the stream.
func appendStream(b []byte, t RecordType, id uint16, content []byte) []byte {
	for len(content) > 0 {
		n := min(len(content), MaxContentLength)
		b = appendRecord(b, t, id, content[:n])
		content = content[n:]
	}
	return b
}

// Reader reads records from an untrusted peer. It allocates only its input
// buffer: a record's content is read through Read, in pieces as small as the
// caller likes, so a peer cannot make it hold more than one buffer.
type Reader struct {
	br      *bufio.Reader
	h       Header
	content int // bytes of the current record's content not yet read
	padding int // padding of the current record not yet skipped
}

// readBufferSize is the input buffer of a Reader: headers and small records
// come out of it; large STDOUT reads into a big enough slice bypass it.
const readBufferSize = 16 << 10

// NewReader returns a Reader of the records in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize)}
}

// Next skips what remains of the current record and reads the next header.
// A header with a version other than 1 or a type outside 1–11 is a
// *ProtocolError; the end of input exactly between records is io.EOF, inside
// a header io.ErrUnexpectedEOF wrapped in a *ProtocolError.
func (r *Reader) Next() (Header, error) {
	if err := r.skip(); err != nil {
		return Header{}, err
	}
	var b [HeaderLen]byte
	if n, err := io.ReadFull(r.br, b[:]); err != nil {
		if err == io.EOF && n == 0 {
			return Header{}, io.EOF
		}
		return Header{}, truncated("record header", err)
	}
	h := Header{
		Version:       b[0],
		Type:          RecordType(b[1]),
		RequestID:     binary.BigEndian.Uint16(b[2:4]),
		ContentLength: binary.BigEndian.Uint16(b[4:6]),
		PaddingLength: b[6],
	}
	if h.Version != Version1 {
		return h, &ProtocolError{Cause: CauseBadVersion, Detail: fmt.Sprintf("record version %d, want %d", h.Version, Version1)}
	}
	if h.Type < 1 || h.Type > maxType {
		return h, &ProtocolError{Cause: CauseUnknownType, Detail: fmt.Sprintf("record type %d", uint8(h.Type))}
	}
	r.h = h
	r.content = int(h.ContentLength)
	r.padding = int(h.PaddingLength)
	return h, nil
}

// Read reads the current record's content. It returns io.EOF at the end of
// the record's content, and a *ProtocolError if the input ends inside it.
func (r *Reader) Read(p []byte) (int, error) {
	if r.content == 0 {
		return 0, io.EOF
	}
	if len(p) > r.content {
		p = p[:r.content]
	}
	n, err := r.br.Read(p)
	r.content -= n
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, truncated(r.h.Type.String()+" content", err)
	}
	return n, nil
}

// Remaining returns how many bytes of the current record's content are
// still unread.
func (r *Reader) Remaining() int { return r.content }

// skip discards the rest of the current record and its padding.
func (r *Reader) skip() error {
	n := r.content + r.padding
	if n == 0 {
		return nil
	}
	_, err := r.br.Discard(n)
	r.content, r.padding = 0, 0
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return truncated(r.h.Type.String()+" record", err)
	}
	return nil
}

// readContent reads the whole content of the current record into buf, which
// must be large enough (callers check ContentLength first).
func (r *Reader) readContent(buf []byte) ([]byte, error) {
	buf = buf[:r.content]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func truncated(what string, err error) error {
	if err == io.ErrUnexpectedEOF {
		return &ProtocolError{Cause: CauseTruncated, Detail: "connection closed inside " + what, Err: err}
	}
	return &ConnError{Op: "read", Err: err}
}
