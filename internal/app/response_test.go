package app

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
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
		{name: "no colon", in: "Content-Type text/plain\n\n", malformed: true},
		{name: "space in name", in: "Content Type: x\n\n", malformed: true},
		{name: "bad status", in: "Status: abc\n\n", malformed: true},
		{name: "status twice", in: "Status: 200\nStatus: 201\n\n", malformed: true},
		{name: "1xx status", in: "Status: 101\n\n", malformed: true},
		{name: "control character", in: "X-A: a\x01b\n\n", malformed: true},
		{name: "too large", in: "X-A: " + strings.Repeat("a", maxHeaderBytes) + "\n\n", malformed: true},
		{name: "ends early", in: "Content-Type: text/plain\n", noHeader: true},
		{name: "empty", in: "", noHeader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
			status, hdr, err := readCGIHeader(br)
			var he *headerError
			switch {
			case tc.malformed:
				if !errors.As(err, &he) {
					t.Fatalf("err = %v, want a headerError", err)
				}
				return
			case tc.noHeader:
				if !errors.Is(err, errNoHeader) {
					t.Fatalf("err = %v, want errNoHeader", err)
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

// FuzzResponseHeader feeds a worker's untrusted output to the header
// parser: it must never panic, must stop within its size bound, and must
// return either a usable status or a typed error.
func FuzzResponseHeader(f *testing.F) {
	for _, s := range []string{
		"Content-Type: text/plain\r\n\r\nbody",
		"Status: 404 Not Found\nContent-Type: text/html\n\n",
		"Location: /x\n\n",
		"Status: 99\n\n",
		"X: \x00\n\n",
		"Content-Type text/plain\n\n",
		": v\n\n",
		"\n",
		"",
		"X-A: " + strings.Repeat("a", 5000) + "\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(b)), 4096)
		status, hdr, err := readCGIHeader(br)
		if err != nil {
			var he *headerError
			if !errors.As(err, &he) && !errors.Is(err, errNoHeader) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if status < 200 || status > 599 {
			t.Fatalf("status %d", status)
		}
		for k, vv := range hdr {
			if hopByHop[k] || k == "Status" {
				t.Fatalf("%s passed on", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("%s value %q has a control character", k, v)
				}
			}
		}
	})
}
