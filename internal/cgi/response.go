package cgi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
)

// maxHeaderBytes bounds a program's header block. A
// program that writes more has most likely forgotten the blank line.
const maxHeaderBytes = 64 << 10

// response is a program's parsed header block (RFC 3875 §6.3).
type response struct {
	status        int    // from Status (or the NPH status line); 0 when not given
	location      string // Location, "" when not given
	contentType   string
	contentLength int64 // the program's Content-Length, -1 when not given
	header        http.Header
	size          int // bytes of the header block, line ends included
}

// HeaderError is a header block that cannot be used: malformed
// (MalformedHeader) or too large (HeaderTooLarge).
type HeaderError struct {
	cause  Cause
	detail string
}

func (e *HeaderError) Error() string { return string(e.cause) + ": " + e.detail }

// Cause is MalformedHeader or HeaderTooLarge.
func (e *HeaderError) Cause() Cause { return e.cause }

// Detail says what is wrong, for the operator: for a malformed block, the
// line number and the line itself, quoted and capped at 120 bytes
// (`line 2: "Content-Type text/plain": no colon: not a header field`).
func (e *HeaderError) Detail() string { return e.detail }

// ErrIncompleteHeader is output that ended before the blank line ending the
// header block.
var ErrIncompleteHeader = errors.New("output ended before a complete header block")

// ResponseHeader is the header block at the start of a CGI response (RFC
// 3875 §6.3), as a FastCGI responder sends it too.
type ResponseHeader struct {
	Status   int         // from the Status field, 200–599; 0 when not given
	Location string      // the Location field; "" when not given
	Header   http.Header // every other field (Content-Type, Content-Length included), hop-by-hop fields dropped
}

// ReadHeader reads a CGI response header block from br, leaving br at the
// first byte of the body. Lines end in LF or CRLF; the block is bounded at
// 64 KiB. It returns ErrIncompleteHeader when the output ends first, a
// *HeaderError for a block that cannot be used, and read errors (time-outs)
// as they are. What a missing Status means depends on Location (RFC 3875
// §6.2), so it is left to the caller.
func ReadHeader(br *bufio.Reader) (*ResponseHeader, error) {
	resp, err := readResponseHeader(br, false)
	if err != nil {
		return nil, err
	}
	return &ResponseHeader{Status: resp.status, Location: resp.location, Header: resp.header}, nil
}

// hopByHop are header fields that belong to one connection (RFC 9110 §7.6.1):
// the server frames the response itself, so a program's values are dropped.
var hopByHop = map[string]bool{
	"Connection":        true,
	"Keep-Alive":        true,
	"Proxy-Connection":  true,
	"Te":                true,
	"Trailer":           true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// quoteLine quotes a header line for the log, capped so that a program
// cannot fill the log with one line.
func quoteLine(b []byte) string {
	const max = 120
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

func malformed(line int, b []byte, why string) error {
	return &HeaderError{cause: MalformedHeader, detail: "line " + strconv.Itoa(line) + ": " + quoteLine(b) + ": " + why}
}

// readResponseHeader reads the header block of a program's output from br,
// leaving br at the first byte of the body. Lines end in LF or CRLF. With nph,
// the first line is an HTTP status line (RFC 3875 §5). It returns
// ErrIncompleteHeader when the output ends first, a *HeaderError for a block that
// cannot be used, and read errors (time-outs) as they are.
func readResponseHeader(br *bufio.Reader, nph bool) (*response, error) {
	resp := &response{contentLength: -1, header: make(http.Header, 8)}
	var long []byte // a line longer than br's buffer, assembled
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) && resp.size+len(long) <= maxHeaderBytes {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		resp.size += len(line)
		if resp.size > maxHeaderBytes {
			return resp, &HeaderError{cause: HeaderTooLarge, detail: "more than " + strconv.Itoa(maxHeaderBytes) + " bytes without the blank line that ends the header block"}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return resp, ErrIncompleteHeader
			}
			return resp, err
		}
		line = line[:len(line)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			if nph && n == 1 {
				return resp, malformed(n, line, "an NPH program must begin with an HTTP status line")
			}
			return resp, nil
		}
		if nph && n == 1 {
			if err := resp.statusLine(line); err != nil {
				return resp, err
			}
			continue
		}
		if err := resp.field(n, line); err != nil {
			return resp, err
		}
	}
}

// statusLine parses "HTTP/1.1 200 OK" (RFC 9112 §4).
func (resp *response) statusLine(line []byte) error {
	proto, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(proto) != 8 || !bytes.HasPrefix(proto, []byte("HTTP/")) {
		return malformed(1, line, "not an HTTP status line")
	}
	code, ok := parseStatus(rest)
	if !ok {
		return malformed(1, line, "bad status code")
	}
	resp.status = code
	return nil
}

// parseStatus reads the three-digit code at the start of b, followed by
// nothing or a space and a reason phrase. Codes 200–599 only: 1xx are the
// server's business.
func parseStatus(b []byte) (int, bool) {
	if len(b) < 3 || (len(b) > 3 && b[3] != ' ') {
		return 0, false
	}
	code := 0
	for _, c := range b[:3] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, code >= 200 && code <= 599
}

func isTokenChar(c byte) bool {
	// RFC 9110 §5.6.2 tchar.
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// field parses one "Name: value" line (RFC 9112 §5).
func (resp *response) field(n int, line []byte) error {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		if line[0] == ' ' || line[0] == '\t' {
			return malformed(n, line, "continuation lines (obsolete line folding) are not accepted")
		}
		return malformed(n, line, "no colon: not a header field")
	}
	name := line[:colon]
	if len(name) == 0 {
		return malformed(n, line, "empty field name")
	}
	for _, c := range name {
		if !isTokenChar(c) {
			return malformed(n, line, "invalid character in field name")
		}
	}
	value := line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return malformed(n, line, "control character in field value")
		}
	}
	key := textproto.CanonicalMIMEHeaderKey(string(name))
	switch key {
	case "Status":
		if resp.status != 0 {
			return malformed(n, line, "Status given twice")
		}
		code, ok := parseStatus(value)
		if !ok {
			return malformed(n, line, "Status must be a code from 200 to 599 and an optional reason")
		}
		resp.status = code
		return nil
	case "Location":
		if resp.location != "" {
			return malformed(n, line, "Location given twice")
		}
		if len(value) == 0 {
			return malformed(n, line, "empty Location")
		}
		resp.location = string(value)
		return nil
	case "Content-Type":
		if resp.contentType != "" {
			return malformed(n, line, "Content-Type given twice")
		}
		resp.contentType = string(value)
	case "Content-Length":
		if resp.contentLength >= 0 {
			return malformed(n, line, "Content-Length given twice")
		}
		cl, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || cl < 0 || value[0] == '+' {
			return malformed(n, line, "Content-Length is not a number")
		}
		resp.contentLength = cl
	}
	if hopByHop[key] {
		return nil
	}
	resp.header[key] = append(resp.header[key], string(value))
	return nil
}

// kind is what a parsed response asks the gateway to do (RFC 3875 §6.2).
type kind int

const (
	documentResponse kind = iota // send the body with Content-Type and Status
	localRedirect                // re-dispatch Location inside the server as GET
	clientRedirect               // send Location to the client, 302 by default
)

// classify decides the response kind, and checks what RFC 3875 §6.2 requires
// of it.
func (resp *response) classify(nph bool) (kind, error) {
	if nph {
		return documentResponse, nil
	}
	if loc := resp.location; loc != "" {
		// §6.2.2: a local redirect is an abs-path (with query); "//host" is
		// a network-path reference and so a client redirect.
		if loc[0] == '/' && (len(loc) == 1 || loc[1] != '/') && resp.status == 0 {
			return localRedirect, nil
		}
		if resp.status == 0 {
			resp.status = http.StatusFound
		}
		return clientRedirect, nil
	}
	if resp.contentType == "" && resp.status != http.StatusNoContent && resp.status != http.StatusNotModified {
		return 0, &HeaderError{cause: MissingContentType, detail: "the header block has neither Content-Type nor Location (RFC 3875 §6.3.1)"}
	}
	if resp.status == 0 {
		resp.status = http.StatusOK
	}
	return documentResponse, nil
}
