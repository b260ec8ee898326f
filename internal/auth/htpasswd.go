package auth

import (
	"bytes"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Scheme is a password hash format suserve verifies.
type Scheme uint8

const (
	Bcrypt Scheme = iota + 1 // $2a$, $2b$, $2y$
	APR1                     // $apr1$: Apache's MD5-crypt
	SHA1                     // {SHA}: base64 of an unsalted SHA-1
)

func (s Scheme) String() string {
	switch s {
	case Bcrypt:
		return "bcrypt"
	case APR1:
		return "apr1"
	case SHA1:
		return "SHA"
	}
	return fmt.Sprintf("Scheme(%d)", uint8(s))
}

// Cause says why an htpasswd line was refused.
type Cause uint8

const (
	Malformed   Cause = iota + 1 // not "user:hash", or a hash of a known scheme with the wrong shape
	DESCrypt                     // 13-character traditional crypt(3): 56-bit DES, 8-character passwords
	Plaintext                    // no recognisable hash: a password stored as itself
	Unsupported                  // a hash scheme suserve does not verify ($1$, $5$, $6$, {SSHA}, ...)
	Duplicate                    // the user has more than one line
)

func (c Cause) String() string {
	switch c {
	case Malformed:
		return "malformed line"
	case DESCrypt:
		return "DES-crypt hash refused"
	case Plaintext:
		return "plaintext password refused"
	case Unsupported:
		return "unsupported hash scheme"
	case Duplicate:
		return "duplicate user"
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// LineError is one refused htpasswd line. The user it names cannot log in
// until the line is fixed or removed, even if another line for the same user
// is good: a file that says two things about a user is not guessed at.
type LineError struct {
	File   string
	Line   int    // 1-based
	User   string // "" when the line has no user field
	Cause  Cause
	Detail string
}

func (e *LineError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.User != "" {
		fmt.Fprintf(&b, "user %q: ", e.User)
	}
	b.WriteString(e.Cause.String())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// maxUserLen bounds user names, in the file and in credentials.
const maxUserLen = 255

// CheckUserName reports whether name can be an htpasswd user: not empty, at
// most 255 bytes of UTF-8, no ':' (the field separator, and forbidden in a
// Basic user-id by RFC 7617 §2) and no control characters (RFC 7617 §2 again;
// they would also split or forge lines in the file and in logs).
func CheckUserName(name string) error {
	switch {
	case name == "":
		return &UserNameError{name, "empty"}
	case len(name) > maxUserLen:
		return &UserNameError{name, fmt.Sprintf("longer than %d bytes", maxUserLen)}
	case !utf8.ValidString(name):
		return &UserNameError{name, "not valid UTF-8"}
	case strings.ContainsRune(name, ':'):
		return &UserNameError{name, "contains ':'"}
	case hasControl(name):
		return &UserNameError{name, "contains a control character"}
	}
	return nil
}

// UserNameError says why a user name cannot be used.
type UserNameError struct {
	Name   string
	Reason string
}

func (e *UserNameError) Error() string {
	return fmt.Sprintf("user name %q: %s", e.Name, e.Reason)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// hash is a parsed, verifiable password hash.
type hash struct {
	scheme Scheme
	cost   int    // bcrypt only
	value  string // bcrypt and apr1: the whole hash; SHA1: the 20-byte digest
}

// verify reports whether password matches h, in time that does not depend on
// how much of the hash matched.
func (h hash) verify(password []byte) bool {
	switch h.scheme {
	case Bcrypt:
		return bcrypt.CompareHashAndPassword([]byte(h.value), password) == nil
	case APR1:
		salt := strings.TrimPrefix(h.value, apr1Magic)
		return subtle.ConstantTimeCompare([]byte(apr1(password, salt)), []byte(h.value)) == 1
	case SHA1:
		sum := sha1.Sum(password)
		return subtle.ConstantTimeCompare(sum[:], []byte(h.value)) == 1
	}
	return false
}

// parseLine parses one htpasswd line that is neither blank nor a comment. On
// failure it returns a *LineError without File and Line, and the user field
// when there was one.
func parseLine(line string) (string, hash, *LineError) {
	refuse := func(user string, c Cause, format string, args ...any) (string, hash, *LineError) {
		return user, hash{}, &LineError{User: user, Cause: c, Detail: fmt.Sprintf(format, args...)}
	}
	user, h, ok := strings.Cut(line, ":")
	if !ok {
		return refuse("", Malformed, "no ':' between user and hash")
	}
	if err := CheckUserName(user); err != nil {
		// A bad name is still named (quoted) so the operator can find it;
		// it can never be presented as a credential anyway.
		return refuse(user, Malformed, "%s", err.(*UserNameError).Reason)
	}
	if strings.ContainsRune(h, ':') {
		return refuse(user, Malformed, "more than two ':'-separated fields")
	}
	if hasControl(h) || !utf8.ValidString(h) {
		return refuse(user, Malformed, "control character or invalid UTF-8 in the hash field")
	}
	switch {
	case h == "":
		return refuse(user, Malformed, "empty hash")
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		// $2y$ (crypt_blowfish, Apache's htpasswd -B) and $2b$ are the same
		// algorithm as Go's $2a$, which has no sign-extension bug to flag.
		cost, err := parseBcrypt(h)
		if err != "" {
			return refuse(user, Malformed, "bcrypt hash: %s", err)
		}
		return user, hash{scheme: Bcrypt, cost: cost, value: h}, nil
	case strings.HasPrefix(h, apr1Magic):
		if err := parseAPR1(h); err != "" {
			return refuse(user, Malformed, "apr1 hash: %s", err)
		}
		return user, hash{scheme: APR1, value: h}, nil
	case strings.HasPrefix(h, "{SHA}"):
		sum, err := base64.StdEncoding.Strict().DecodeString(h[len("{SHA}"):])
		if err != nil || len(sum) != sha1.Size {
			return refuse(user, Malformed, "{SHA} hash: not base64 of a 20-byte SHA-1 digest")
		}
		return user, hash{scheme: SHA1, value: string(sum)}, nil
	case strings.HasPrefix(h, "$") || strings.HasPrefix(h, "{"):
		scheme := h
		if i := strings.IndexAny(h[1:], "$}"); i >= 0 {
			scheme = h[:i+2]
		}
		if len(scheme) > 16 {
			scheme = scheme[:16] + "…"
		}
		return refuse(user, Unsupported, "%q is not one of bcrypt, $apr1$ or {SHA}; set a new password with suserve passwd", scheme)
	case len(h) == 13 && onlyCryptAlphabet(h):
		return refuse(user, DESCrypt, "DES-crypt uses only the first 8 characters of a password and falls to brute force; set a new password with suserve passwd")
	}
	// Apache on some platforms compares an unrecognised field as a plaintext
	// password; suserve never does.
	return refuse(user, Plaintext, "the hash field is not a recognised hash; set a new password with suserve passwd")
}

func onlyCryptAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(cryptAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// parseBcrypt checks the shape "$2x$NN$" + 53 characters and returns the
// cost, or a reason.
func parseBcrypt(h string) (int, string) {
	if len(h) != 60 {
		return 0, fmt.Sprintf("%d characters, want 60", len(h))
	}
	if h[6] != '$' || h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' {
		return 0, "no two-digit cost"
	}
	cost := int(h[4]-'0')*10 + int(h[5]-'0')
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return 0, fmt.Sprintf("cost %d outside %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if !onlyCryptAlphabet(h[7:]) {
		return 0, "salt and digest contain a character outside ./0-9A-Za-z"
	}
	return cost, ""
}

// parseAPR1 checks the shape "$apr1$" + salt (1 to 8 characters) + "$" + 22
// characters.
func parseAPR1(h string) string {
	salt, digest, ok := strings.Cut(h[len(apr1Magic):], "$")
	switch {
	case !ok:
		return "no '$' after the salt"
	case len(salt) == 0 || len(salt) > 8:
		return fmt.Sprintf("salt of %d characters, want 1 to 8", len(salt))
	case len(digest) != 22:
		return fmt.Sprintf("digest of %d characters, want 22", len(digest))
	case !onlyCryptAlphabet(salt) || !onlyCryptAlphabet(digest):
		return "a character outside ./0-9A-Za-z"
	}
	return ""
}

// table is one loaded htpasswd file: the users who can log in, and why the
// others cannot.
type table struct {
	entries  map[string]hash
	problems []*LineError
	lines    int // non-blank, non-comment lines
}

// parseTable reads the lines of an htpasswd file. Lines that are bad are
// refused one by one (each becomes a LineError, and its user cannot log in);
// the good lines of the other users load. Blank lines and lines starting with
// '#' are skipped, as Apache does. A trailing CR is removed so a file edited
// on Windows still loads.
func parseTable(file string, data []byte) *table {
	t := &table{entries: make(map[string]hash)}
	firstLine := make(map[string]int) // user -> line of their first line
	refused := make(map[string]bool)
	n := 0
	for len(data) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			continue
		}
		t.lines++
		user, h, lerr := parseLine(string(line))
		if lerr == nil {
			if prev, dup := firstLine[user]; dup {
				lerr = &LineError{User: user, Cause: Duplicate,
					Detail: fmt.Sprintf("also on line %d; a user with more than one line cannot log in", prev)}
			}
		}
		if user != "" {
			if _, seen := firstLine[user]; !seen {
				firstLine[user] = n
			}
		}
		if lerr != nil {
			lerr.File, lerr.Line = file, n
			t.problems = append(t.problems, lerr)
			if user != "" {
				refused[user] = true
			}
			continue
		}
		t.entries[user] = h
	}
	for u := range refused {
		delete(t.entries, u)
	}
	return t
}
