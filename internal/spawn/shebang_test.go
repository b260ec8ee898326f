package spawn

import (
	"strings"
	"testing"
)

func TestParseShebangReadsTheLineAsTheKernelDoes(t *testing.T) {
	for _, tc := range []struct {
		head        string
		ok          bool
		interp, arg string
		cr          bool
	}{
		{"#!/bin/sh\necho", true, "/bin/sh", "", false},
		{"#! /usr/bin/env  python3 -u \nx", true, "/usr/bin/env", "python3 -u", false},
		{"#!/bin/sh\r\necho", true, "/bin/sh\r", "", true},
		{"#!/bin/sh -e\r\n", true, "/bin/sh", "-e\r", true},
		{"#!\t/bin/bash", true, "/bin/bash", "", false},
		{"#!\n", true, "", "", false},
		{"\x7fELF", false, "", "", false},
		{"# !/bin/sh", false, "", "", false},
	} {
		sb, ok := parseShebang([]byte(tc.head))
		if ok != tc.ok || sb.Interp != tc.interp || sb.Arg != tc.arg || sb.endsInCR() != tc.cr {
			t.Errorf("parseShebang(%q) = %+v, %v; want interp %q arg %q ok %v cr %v", tc.head, sb, ok, tc.interp, tc.arg, tc.ok, tc.cr)
		}
	}
}

// FuzzShebang feeds the #! parser the first bytes of arbitrary files: it
// never panics, and what it returns lies within the first line.
func FuzzShebang(f *testing.F) {
	for _, s := range []string{"#!/bin/sh\n", "#!/bin/sh\r\n", "#! /usr/bin/env python3 -u\n", "#!", "#!\t \t\n", "\x7fELF\x02", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		sb, ok := parseShebang(head)
		if !ok {
			return
		}
		if strings.Contains(sb.Line, "\n") || !strings.HasPrefix(sb.Line, "#!") {
			t.Fatalf("line %q", sb.Line)
		}
		if !strings.Contains(sb.Line, sb.Interp) || !strings.Contains(sb.Line, sb.Arg) || strings.ContainsAny(sb.Interp, " \t") {
			t.Fatalf("%+v from %q", sb, head)
		}
		_ = sb.quoted()
	})
}
