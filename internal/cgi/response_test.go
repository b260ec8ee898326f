package cgi

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func parse(s string, nph bool) (*response, string, error) {
	br := bufio.NewReaderSize(strings.NewReader(s), 64)
	resp, err := readResponseHeader(br, nph)
	rest, _ := io.ReadAll(br)
	return resp, string(rest), err
}

func TestResponseHeaderParsing(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		nph        bool
		status     int
		header     map[string]string
		rest       string
		cause      Cause // "" for success
		incomplete bool
	}{
		{name: "LF line ends", in: "Content-Type: text/plain\n\nbody", header: map[string]string{"Content-Type": "text/plain"}, rest: "body"},
		{name: "CRLF line ends", in: "Content-Type: text/plain\r\nX-A:  b \r\n\r\nbody", header: map[string]string{"X-A": "b"}, rest: "body"},
		{name: "status with reason", in: "Status: 404 Not Found\nContent-Type: text/html\n\n", status: 404},
		{name: "status without reason", in: "Status: 201\nContent-Type: text/html\n\n", status: 201},
		{name: "lower-case names", in: "content-type: a/b\nstatus: 500\n\n", status: 500, header: map[string]string{"Content-Type": "a/b"}},
		{name: "hop-by-hop fields dropped", in: "Content-Type: a/b\nTransfer-Encoding: chunked\nConnection: close\n\n", header: map[string]string{"Transfer-Encoding": "", "Connection": ""}},
		{name: "line longer than the read buffer", in: "Content-Type: a/b\nX-Long: " + strings.Repeat("y", 500) + "\n\n", header: map[string]string{"X-Long": strings.Repeat("y", 500)}},
		{name: "NPH status line", in: "HTTP/1.1 203 Whatever\r\nX-N: 1\r\n\r\nraw", nph: true, status: 203, rest: "raw"},
		{name: "no colon", in: "Content-Type text/plain\n\n", cause: MalformedHeader},
		{name: "space before colon", in: "Content-Type : a/b\n\n", cause: MalformedHeader},
		{name: "folded line", in: "Content-Type: a/b\n continued\n\n", cause: MalformedHeader},
		{name: "control character", in: "X-A: a\x01b\n\n", cause: MalformedHeader},
		{name: "bare CR inside", in: "X-A: a\rb\n\n", cause: MalformedHeader},
		{name: "status out of range", in: "Status: 99\n\n", cause: MalformedHeader},
		{name: "status 1xx", in: "Status: 100 Continue\n\n", cause: MalformedHeader},
		{name: "status twice", in: "Status: 200\nStatus: 404\n\n", cause: MalformedHeader},
		{name: "content-length not a number", in: "Content-Length: 1x\n\n", cause: MalformedHeader},
		{name: "NPH without a status line", in: "Content-Type: a/b\n\n", nph: true, cause: MalformedHeader},
		{name: "too large", in: "X-A: " + strings.Repeat("a", maxHeaderBytes) + "\n\n", cause: HeaderTooLarge},
		{name: "too many lines", in: strings.Repeat("X-A: aaaaaaaaaa\n", maxHeaderBytes/16+1) + "\n", cause: HeaderTooLarge},
		{name: "ends before the blank line", in: "Content-Type: a/b\n", incomplete: true},
		{name: "ends mid-line", in: "Content-Ty", incomplete: true},
		{name: "empty", in: "", incomplete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, rest, err := parse(tc.in, tc.nph)
			var he *headerError
			switch {
			case tc.incomplete:
				if !errors.Is(err, errIncomplete) {
					t.Fatalf("err %v, want errIncomplete", err)
				}
				return
			case tc.cause != "":
				if !errors.As(err, &he) || he.cause != tc.cause {
					t.Fatalf("err %v, want %s", err, tc.cause)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if resp.status != tc.status {
				t.Errorf("status %d, want %d", resp.status, tc.status)
			}
			for k, v := range tc.header {
				if got := resp.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.rest != "" && rest != tc.rest {
				t.Errorf("body %q, want %q", rest, tc.rest)
			}
		})
	}
}

func TestMalformedHeaderIsQuotedAndCapped(t *testing.T) {
	_, _, err := parse("Content-Type: a/b\n"+strings.Repeat("z", 300)+"\n\n", false)
	var he *headerError
	if !errors.As(err, &he) {
		t.Fatalf("err %v", err)
	}
	if !strings.HasPrefix(he.detail, `line 2: "zzz`) || !strings.Contains(he.detail, `"...`) || len(he.detail) > 200 {
		t.Errorf("detail %q: want the line number and the line quoted, capped", he.detail)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in     string
		kind   kind
		status int
		err    bool
	}{
		{"Location: /x?y\n\n", localRedirect, 0, false},
		{"Location: //host/x\n\n", clientRedirect, 302, false},
		{"Location: http://host/x\n\n", clientRedirect, 302, false},
		{"Status: 303\nLocation: /x\n\n", clientRedirect, 303, false},
		{"Content-Type: a/b\n\n", documentResponse, 200, false},
		{"Status: 204\n\n", documentResponse, 204, false},
		{"Status: 404\n\n", 0, 0, true},
	} {
		resp, _, err := parse(tc.in, false)
		if err != nil {
			t.Fatal(err)
		}
		k, err := resp.classify(false)
		if (err != nil) != tc.err || (err == nil && (k != tc.kind || resp.status != tc.status)) {
			t.Errorf("%q: kind %d status %d err %v", tc.in, k, resp.status, err)
		}
	}
}

func FuzzResponseHeader(f *testing.F) {
	for _, s := range []string{
		"Content-Type: text/plain\n\nbody",
		"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n",
		"Location: /local?q\n\n",
		"Location: https://example.com/\nStatus: 301\n\n",
		"HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
		"Content-Type text/plain\n\n",
		"X-A: a\x00\n\n",
		"X-Long: " + strings.Repeat("a", 5000) + "\n\n",
		" folded\n\n",
		"Content-Length: 12\nContent-Type: a/b\n\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, nph bool) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 16)
		resp, err := readResponseHeader(br, nph)
		if resp == nil {
			t.Fatal("nil response")
		}
		if resp.size > maxHeaderBytes+len("\n") && err == nil {
			t.Fatalf("accepted a header block of %d bytes", resp.size)
		}
		if err != nil {
			var he *headerError
			if errors.As(err, &he) && len(he.detail) > 300 {
				t.Fatalf("detail of %d bytes: the quote is not capped", len(he.detail))
			}
			return
		}
		if resp.status != 0 && (resp.status < 200 || resp.status > 599) {
			t.Fatalf("status %d accepted", resp.status)
		}
		for k, vv := range resp.header {
			if hopByHop[k] || k == "Status" || k == "Location" {
				t.Fatalf("field %q passed through", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("field %q value %q has a line break or NUL", k, v)
				}
			}
		}
		_, _ = resp.classify(nph)
	})
}
