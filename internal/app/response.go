package app

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
)

// maxHeaderBytes bounds a worker's response header block, as the CGI
// gateway bounds a program's.
const maxHeaderBytes = 64 << 10

// headerError is a header block that cannot be used.
type headerError struct{ detail string }

func (e *headerError) Error() string { return "malformed response header: " + e.detail }

// hopByHop fields belong to one connection (RFC 9110 §7.6.1); the server
// frames the response itself.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// errNoHeader is output that ended cleanly before the blank line ending the
// header block.
var errNoHeader = errors.New("the response ended before a complete header block")

// readCGIHeader reads the CGI response header block (RFC 3875 §6.3) at the
// start of a FastCGI worker's STDOUT, leaving br at the first body byte. It
// returns the status (Status field, 302 for a Location without one, else
// 200) and the header fields to send. errNoHeader means the output ended
// before the blank line.
func readCGIHeader(br *bufio.Reader) (int, http.Header, error) {
	hdr := make(http.Header, 8)
	status, size := 0, 0
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) && size+len(line) <= maxHeaderBytes {
			var more []byte
			more, err = br.ReadSlice('\n')
			line = append(append([]byte(nil), line...), more...)
		}
		size += len(line)
		if size > maxHeaderBytes {
			return 0, nil, &headerError{"more than " + strconv.Itoa(maxHeaderBytes) + " bytes without the blank line that ends the header block"}
		}
		if err != nil {
			if err == io.EOF {
				return 0, nil, errNoHeader
			}
			return 0, nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || !validName(name) {
			return 0, nil, &headerError{"line " + strconv.Itoa(n) + ": " + quote(line) + ": not a header field"}
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return 0, nil, &headerError{"line " + strconv.Itoa(n) + ": " + quote(line) + ": control character in field value"}
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		if key == "Status" {
			code, ok := parseStatus(value)
			if !ok || status != 0 {
				return 0, nil, &headerError{"line " + strconv.Itoa(n) + ": " + quote(line) + ": Status must be given once, as a code from 200 to 599"}
			}
			status = code
			continue
		}
		if hopByHop[key] {
			continue
		}
		hdr[key] = append(hdr[key], string(value))
	}
	if status == 0 {
		status = http.StatusOK
		if hdr.Get("Location") != "" {
			status = http.StatusFound // RFC 3875 §6.2.4
		}
	}
	return status, hdr, nil
}

func validName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

func parseStatus(b []byte) (int, bool) {
	if len(b) < 3 || (len(b) > 3 && b[3] != ' ') {
		return 0, false
	}
	code, err := strconv.Atoi(string(b[:3]))
	return code, err == nil && code >= 200 && code <= 599
}

// quote quotes a line for the log, capped.
func quote(b []byte) string {
	if len(b) > 120 {
		return strconv.Quote(string(b[:120])) + "..."
	}
	return strconv.Quote(string(b))
}
