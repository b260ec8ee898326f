package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAccountLinesLikeGlibc(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []account
		bad   []int // lines reported
	}{
		{"windows line endings", "alice:x:61001:61001::/home/alice:/bin/sh\r\nbob:x:61002:61002::/home/bob:/bin/sh\r\n",
			[]account{{name: "alice", uid: 61001, gid: 61001, home: "/home/alice", line: 1}, {name: "bob", uid: 61002, gid: 61002, home: "/home/bob", line: 2}}, nil},
		{"no final newline", "alice:x:61001:61001::/:/bin/sh", []account{{name: "alice", uid: 61001, gid: 61001, home: "/", line: 1}}, nil},
		{"comments and blanks", "# c\n\n   \n\t# c\nalice:x:1:2:::", []account{{name: "alice", uid: 1, gid: 2, line: 5}}, nil},
		{"leading zeros", "alice:x:0061001:007::/h:", []account{{name: "alice", uid: 61001, gid: 7, home: "/h", line: 1}}, nil},
		{"home cleaned", "alice:x:1:1::/home//alice/./:", []account{{name: "alice", uid: 1, gid: 1, home: "/home/alice", line: 1}}, nil},
		{"signs and hex", "a:x:+1:1:::\nb:x:0x10:1:::\nc:x:1_000:1:::", nil, []int{1, 2, 3}},
		{"control characters", "a\x00b:x:1:1:::\nc:x:1:1::/h\x01:", nil, []int{1, 2}},
		{"invalid UTF-8", "\xff:x:1:1:::", nil, []int{1}},
		{"NIS minus", "-baduser::::::", nil, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := parsePasswd("p", []byte(tt.input))
			if len(got) != len(tt.want) {
				t.Fatalf("parsed %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("account %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if len(problems) != len(tt.bad) {
				t.Fatalf("problems %v, want lines %v", problems, tt.bad)
			}
			for i, p := range problems {
				if p.Line != tt.bad[i] {
					t.Errorf("problem %d on line %d, want %d", i, p.Line, tt.bad[i])
				}
			}
		})
	}
}

func TestParseGroupMembers(t *testing.T) {
	groups, problems := parseGroup("g", []byte("web:x:61500:alice,,bob,\r\nnone:x:61501:\nodd:x:61502:a/b,carol\n"))
	if len(groups) != 3 {
		t.Fatalf("groups %+v", groups)
	}
	if m := strings.Join(groups[0].members, " "); m != "alice bob" {
		t.Errorf("web members %q, want alice bob (a trailing CR and empty members dropped)", m)
	}
	if len(groups[1].members) != 0 {
		t.Errorf("none has members %q", groups[1].members)
	}
	if m := strings.Join(groups[2].members, " "); m != "carol" {
		t.Errorf("odd members %q, want carol", m)
	}
	if len(problems) != 1 || problems[0].Line != 3 || !strings.Contains(problems[0].Reason, `member "a/b"`) {
		t.Errorf("problems %v, want line 3 naming member a/b", problems)
	}
}

// FuzzAccountFiles checks that no bytes make the parsers panic and that every
// account they accept is one suserve could safely run as.
func FuzzAccountFiles(f *testing.F) {
	for _, name := range []string{"passwd", "group"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("alice:x:61001:61001::/home/alice:/bin/sh\r\n"))
	f.Add([]byte("web:x:61500:alice,,bob,\n"))
	f.Add([]byte("a:x:4294967294:4294967295:::\n+\n-\n#\n\x00\n:::\n::::::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := strings.Count(string(data), "\n") + 1
		accounts, pp := parsePasswd("p", data)
		if len(accounts)+len(pp) > n {
			t.Fatalf("%d accounts and %d problems from %d lines", len(accounts), len(pp), n)
		}
		seen := map[string]bool{}
		for _, a := range accounts {
			if checkName(a.name) != "" || seen[a.name] {
				t.Fatalf("accepted name %q", a.name)
			}
			seen[a.name] = true
			if a.uid == noID || a.gid == noID {
				t.Fatalf("accepted id -1 for %q", a.name)
			}
			if a.home != "" && (!strings.HasPrefix(a.home, "/") || filepath.Clean(a.home) != a.home) {
				t.Fatalf("accepted home %q", a.home)
			}
			if a.line < 1 || a.line > n {
				t.Fatalf("line %d of %d", a.line, n)
			}
		}
		groups, gp := parseGroup("g", data)
		if len(groups) > n {
			t.Fatalf("%d groups from %d lines", len(groups), n)
		}
		for _, g := range groups {
			if g.gid == noID {
				t.Fatal("accepted gid -1")
			}
			for _, m := range g.members {
				if checkName(m) != "" {
					t.Fatalf("accepted member %q", m)
				}
			}
		}
		for _, p := range append(pp, gp...) {
			if p.Line < 1 || p.Line > n || p.Reason == "" {
				t.Fatalf("problem %+v from %d lines", p, n)
			}
		}
	})
}
