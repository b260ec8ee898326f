package identity

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file parses passwd(5) and group(5) files. It follows glibc's files
// backend where that is safe (leading blanks and '#' comment lines are
// ignored, the first of two entries with one name wins, every group line that
// lists a user counts, as initgroups(3) does) and is stricter where a lenient
// reading could hand a program the wrong identity: a line with the wrong
// number of fields, a name that could not be a user name, an id that is not a
// plain decimal number or a home directory that is not absolute is skipped and
// reported, never guessed at.

// LineError is one line of an account file that was skipped, or partly
// skipped (a group member that cannot be a user name). It never quotes the
// line itself: the second field of a passwd line may hold a password hash.
type LineError struct {
	Path   string
	Line   int    // 1-based
	Reason string // what is wrong, e.g. `uid "12x" is not a decimal number`
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Reason)
}

// noID is (uid_t)-1: setresuid(2) and setresgid(2) read it as "leave this id
// unchanged", so an account with it would silently keep the caller's id.
const noID = 1<<32 - 1

// account is one parsed passwd line.
type account struct {
	name     string
	uid, gid uint32
	home     string
	line     int
}

// group is one parsed group line.
type group struct {
	gid     uint32
	members []string
}

// lines calls fn with each line of data (without its newline and without a
// trailing carriage return) and its 1-based number, skipping blank lines and
// '#' comments after leading blanks, as glibc's files backend does.
func lines(data []byte, fn func(n int, line string)) {
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		line = bytes.TrimLeft(line, " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		fn(n, string(line))
	}
}

// parsePasswd reads a passwd(5) file: name:password:uid:gid:gecos:home:shell.
// The password, gecos and shell fields are not used: suserve neither checks
// passwords against this file nor starts login shells.
func parsePasswd(path string, data []byte) ([]account, []LineError) {
	var (
		accounts []account
		problems []LineError
		first    = map[string]int{}
	)
	lines(data, func(n int, line string) {
		bad := func(format string, args ...any) {
			problems = append(problems, LineError{Path: path, Line: n, Reason: fmt.Sprintf(format, args...)})
		}
		if line[0] == '+' || line[0] == '-' {
			bad("NIS compat entry; only local accounts are read")
			return
		}
		f := strings.Split(line, ":")
		if len(f) != 7 {
			bad("%d fields, want 7 (name:password:uid:gid:gecos:home:shell)", len(f))
			return
		}
		if why := checkName(f[0]); why != "" {
			bad("user name %q %s", f[0], why)
			return
		}
		uid, why := parseID(f[2])
		if why != "" {
			bad("user %q: uid %q %s", f[0], f[2], why)
			return
		}
		gid, why := parseID(f[3])
		if why != "" {
			bad("user %q: gid %q %s", f[0], f[3], why)
			return
		}
		home, why := checkHome(f[5])
		if why != "" {
			bad("user %q: home %q %s", f[0], f[5], why)
			return
		}
		if prev, dup := first[f[0]]; dup {
			bad("user %q is also on line %d; the first entry is used", f[0], prev)
			return
		}
		first[f[0]] = n
		accounts = append(accounts, account{name: f[0], uid: uid, gid: gid, home: home, line: n})
	})
	return accounts, problems
}

// parseGroup reads a group(5) file: name:password:gid:member,member,...
func parseGroup(path string, data []byte) ([]group, []LineError) {
	var (
		groups   []group
		problems []LineError
	)
	lines(data, func(n int, line string) {
		bad := func(format string, args ...any) {
			problems = append(problems, LineError{Path: path, Line: n, Reason: fmt.Sprintf(format, args...)})
		}
		if line[0] == '+' || line[0] == '-' {
			bad("NIS compat entry; only local groups are read")
			return
		}
		f := strings.Split(line, ":")
		if len(f) != 4 {
			bad("%d fields, want 4 (name:password:gid:members)", len(f))
			return
		}
		if why := checkName(f[0]); why != "" {
			bad("group name %q %s", f[0], why)
			return
		}
		gid, why := parseID(f[2])
		if why != "" {
			bad("group %q: gid %q %s", f[0], f[2], why)
			return
		}
		g := group{gid: gid}
		for m := range strings.SplitSeq(f[3], ",") {
			if m == "" {
				continue // "a,,b" and a trailing comma are common and harmless
			}
			if why := checkName(m); why != "" {
				bad("group %q: member %q %s; that member is skipped", f[0], m, why)
				continue
			}
			g.members = append(g.members, m)
		}
		groups = append(groups, g)
	})
	return groups, problems
}

// checkName says why s cannot be a user or group name, or returns "". Names
// reach URLs (/~name/), file paths and the environment (USER, LOGNAME), so
// beyond what passwd(5) itself forbids, a name has no '/', no blanks or
// control characters, is valid UTF-8 and is not "." or "..".
func checkName(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > 256:
		return "is longer than 256 bytes"
	case s == "." || s == "..":
		return "is a path element"
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '/' || r == ':' || r == ',' {
			return fmt.Sprintf("contains %q", r)
		}
	}
	return ""
}

// parseID parses a uid or gid: plain decimal, no sign, below (uid_t)-1.
func parseID(s string) (uint32, string) {
	if s == "" {
		return 0, "is empty"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, "is not a decimal number"
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == noID {
		return 0, "is out of range (0 to 4294967294)"
	}
	return uint32(v), ""
}

// checkHome returns the home directory in clean form, or why it is unusable.
// A home is empty (the account has none) or absolute: routes expand {home}
// into a directory that programs are run from, and a relative path there would
// be resolved against whatever the server's working directory is.
func checkHome(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	if !strings.HasPrefix(s, "/") {
		return "", "is not an absolute path"
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return "", fmt.Sprintf("contains %q", r)
		}
	}
	return filepath.Clean(s), ""
}

// sortedIDs sorts ids and removes duplicates, in place.
func sortedIDs(ids []uint32) []uint32 {
	slices.Sort(ids)
	return slices.Compact(ids)
}
