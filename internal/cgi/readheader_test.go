package cgi

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadHeaderSeparatesStatusAndLocation(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("Status: 301 Moved\r\nLocation: https://x/\r\nContent-Type: a/b\r\nConnection: close\r\n\r\nbody"))
	rh, err := ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	if rh.Status != 301 || rh.Location != "https://x/" {
		t.Errorf("status %d location %q", rh.Status, rh.Location)
	}
	if rh.Header.Get("Content-Type") != "a/b" || rh.Header.Get("Location") != "" || rh.Header.Get("Status") != "" || rh.Header.Get("Connection") != "" {
		t.Errorf("header %v: want Content-Type only", rh.Header)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "body" {
		t.Errorf("body %q", rest)
	}
}

func TestReadHeaderLeavesAMissingStatusToTheCaller(t *testing.T) {
	rh, err := ReadHeader(bufio.NewReader(strings.NewReader("Content-Type: a/b\n\n")))
	if err != nil || rh.Status != 0 || rh.Location != "" {
		t.Fatalf("%+v, %v: want status 0, no location", rh, err)
	}
}

func TestReadHeaderErrorsAreTyped(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		cause      Cause
		detail     string // a prefix of Detail()
		incomplete bool
	}{
		{name: "malformed line is quoted", in: "Content-Type text/plain\n\n", cause: MalformedHeader, detail: `line 1: "Content-Type text/plain": no colon`},
		{name: "an NPH status line is not accepted", in: "HTTP/1.1 200 OK\n\n", cause: MalformedHeader, detail: `line 1: "HTTP/1.1 200 OK"`},
		{name: "too large", in: "X-A: " + strings.Repeat("a", 64<<10) + "\n\n", cause: HeaderTooLarge, detail: "more than 65536 bytes"},
		{name: "ends early", in: "Content-Type: a/b\n", incomplete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rh, err := ReadHeader(bufio.NewReader(strings.NewReader(tc.in)))
			if rh != nil {
				t.Errorf("header %+v returned with an error", rh)
			}
			if tc.incomplete {
				if !errors.Is(err, ErrIncompleteHeader) {
					t.Fatalf("err %v, want ErrIncompleteHeader", err)
				}
				return
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("err %v, want a *HeaderError", err)
			}
			if he.Cause() != tc.cause || !strings.HasPrefix(he.Detail(), tc.detail) {
				t.Errorf("cause %q detail %q, want %q and %q...", he.Cause(), he.Detail(), tc.cause, tc.detail)
			}
		})
	}
}
