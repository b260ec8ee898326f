package app

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/suserve/suserve/internal/cgi"
)

func TestCGIHeaderBlocksParse(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		status    int
		header    string // "Key=value;..." of chosen fields
		body      string
		malformed bool
		noHeader  bool
	}{
		{name: "document", in: "Content-Type: text/plain\r\n\r\nbody", status: 200, header: "Content-Type=text/plain", body: "body"},
		{name: "LF only", in: "Content-Type: text/plain\n\nbody", status: 200, header: "Content-Type=text/plain", body: "body"},
		{name: "status", in: "Status: 404 Not Found\nContent-Type: text/html\n\n", status: 404, header: "Content-Type=text/html"},
		{name: "location", in: "Location: /elsewhere\n\n", status: 302, header: "Location=/elsewhere"},
		{name: "location with status", in: "Status: 301\nLocation: https://x/\n\n", status: 301, header: "Location=https://x/"},
		{name: "hop-by-hop dropped", in: "Content-Type: a\nConnection: close\nTransfer-Encoding: chunked\n\n", status: 200, header: "Content-Type=a;Connection=;Transfer-Encoding="},
		{name: "location twice", in: "Location: /a\nLocation: /b\n\n", malformed: true},
		{name: "content-length not a number", in: "Content-Length: 1x\nContent-Type: a\n\n", malformed: true},
		{name: "no colon", in: "Content-Type text/plain\n\n", malformed: true},
		{name: "space in name", in: "Content Type: x\n\n", malformed: true},
		{name: "bad status", in: "Status: abc\n\n", malformed: true},
		{name: "status twice", in: "Status: 200\nStatus: 201\n\n", malformed: true},
		{name: "1xx status", in: "Status: 101\n\n", malformed: true},
		{name: "control character", in: "X-A: a\x01b\n\n", malformed: true},
		{name: "too large", in: "X-A: " + strings.Repeat("a", 64<<10) + "\n\n", malformed: true},
		{name: "ends early", in: "Content-Type: text/plain\n", noHeader: true},
		{name: "empty", in: "", noHeader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
			status, hdr, err := readCGIHeader(br)
			var he *cgi.HeaderError
			switch {
			case tc.malformed:
				if !errors.As(err, &he) {
					t.Fatalf("err = %v, want a *cgi.HeaderError", err)
				}
				return
			case tc.noHeader:
				if !errors.Is(err, cgi.ErrIncompleteHeader) {
					t.Fatalf("err = %v, want cgi.ErrIncompleteHeader", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			for _, kv := range strings.Split(tc.header, ";") {
				k, v, _ := strings.Cut(kv, "=")
				if got := hdr.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.body {
				t.Errorf("body %q, want %q", rest, tc.body)
			}
		})
	}
}
