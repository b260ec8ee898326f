package auth

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Vectors from Apache's "Password Formats" documentation (htpasswd -nbm,
// -nbs and -nbd of myName/myPassword) and from openssl passwd -apr1.
const (
	apacheAPR1  = "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/"
	apacheSHA   = "{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE="
	apacheCRYPT = "rqXexS6ZhobKA"
)

func TestAPR1MatchesKnownVectors(t *testing.T) {
	for _, tc := range []struct{ password, salt, want string }{
		{"myPassword", "r31.....", apacheAPR1},
		{"", "Zx", "$apr1$Zx$dRBmRHAOhjHSm05wHKJq.."},
		{"a much longer password than sixteen bytes, really", "abcdefgh", "$apr1$abcdefgh$OfkUMneMP.xEgrYf8VYmr."},
		// A salt longer than 8 characters is cut, as Apache does.
		{"myPassword", "r31.....ignored", apacheAPR1},
	} {
		if got := apr1([]byte(tc.password), tc.salt); got != tc.want {
			t.Errorf("apr1(%q, %q) = %q, want %q", tc.password, tc.salt, got, tc.want)
		}
	}
}

func TestAPR1MatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed; the fixed vectors still ran")
	}
	for _, tc := range []struct{ password, salt string }{
		{"x", "a"},
		{"sixteen-bytes-pw", "12345678"},
		{"seventeen-bytes-p", "./AZaz09"},
		{"ünïcødé pässwörd", "Qq"},
		{strings.Repeat("long", 40), "salty"},
	} {
		out, err := exec.Command("openssl", "passwd", "-apr1", "-salt", tc.salt, tc.password).Output()
		if err != nil {
			t.Fatalf("openssl passwd: %v", err)
		}
		want := strings.TrimSpace(string(out))
		if got := apr1([]byte(tc.password), tc.salt); got != want {
			t.Errorf("apr1(%q, %q) = %q, openssl says %q", tc.password, tc.salt, got, want)
		}
	}
}

func TestParseLineAcceptsEachScheme(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("myPassword"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hash string
		scheme     Scheme
	}{
		{"bcrypt $2a$", string(bc), Bcrypt},
		{"bcrypt $2b$", "$2b$" + string(bc[4:]), Bcrypt},
		{"bcrypt $2y$", "$2y$" + string(bc[4:]), Bcrypt},
		{"apr1", apacheAPR1, APR1},
		{"SHA", apacheSHA, SHA1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, h, lerr := parseLine("myName:" + tc.hash)
			if lerr != nil {
				t.Fatalf("refused: %v", lerr)
			}
			if user != "myName" || h.scheme != tc.scheme {
				t.Fatalf("got user %q scheme %v", user, h.scheme)
			}
			if !h.verify([]byte("myPassword")) {
				t.Error("the right password does not verify")
			}
			if h.verify([]byte("myPassword ")) || h.verify(nil) {
				t.Error("a wrong password verifies")
			}
		})
	}
}

func TestParseLineRefusesWithCause(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		user       string
		cause      Cause
	}{
		{"DES crypt", "myName:" + apacheCRYPT, "myName", DESCrypt},
		{"plaintext", "alice:hunter2", "alice", Plaintext},
		{"plaintext of 13 other characters", "alice:hunter!hunter", "alice", Plaintext},
		{"no colon", "alice", "", Malformed},
		{"empty user", ":" + apacheSHA, "", Malformed},
		{"empty hash", "alice:", "alice", Malformed},
		{"three fields", "alice:" + apacheSHA + ":comment", "alice", Malformed},
		{"control character in user", "al\x01ice:" + apacheSHA, "al\x01ice", Malformed},
		{"short bcrypt", "alice:$2y$10$abc", "alice", Malformed},
		{"bcrypt cost too high", "alice:$2y$32$" + strings.Repeat("a", 53), "alice", Malformed},
		{"bcrypt cost not digits", "alice:$2y$1x$" + strings.Repeat("a", 53), "alice", Malformed},
		{"bcrypt bad alphabet", "alice:$2y$10$" + strings.Repeat("!", 53), "alice", Malformed},
		{"apr1 without digest", "alice:$apr1$salt", "alice", Malformed},
		{"apr1 long salt", "alice:$apr1$123456789$HqJZimcKQFAMYayBlzkrA/", "alice", Malformed},
		{"apr1 short digest", "alice:$apr1$r31.....$HqJZ", "alice", Malformed},
		{"SHA not base64", "alice:{SHA}not base64!", "alice", Malformed},
		{"SHA wrong length", "alice:{SHA}" + base64.StdEncoding.EncodeToString([]byte("short")), "alice", Malformed},
		{"MD5-crypt $1$", "alice:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "alice", Unsupported},
		{"SHA-512 crypt", "alice:$6$salt$abc", "alice", Unsupported},
		{"SSHA", "alice:{SSHA}abcdef", "alice", Unsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, _, lerr := parseLine(tc.line)
			if lerr == nil {
				t.Fatalf("parseLine(%q) accepted it", tc.line)
			}
			if lerr.Cause != tc.cause || user != tc.user || lerr.User != tc.user {
				t.Errorf("parseLine(%q): cause %v user %q, want %v %q (%v)", tc.line, lerr.Cause, lerr.User, tc.cause, tc.user, lerr)
			}
		})
	}
}

func TestParseTableRefusesBadLinesAndKeepsGoodOnes(t *testing.T) {
	data := strings.Join([]string{
		"# comment",
		"",
		"good:" + apacheSHA,
		"des:" + apacheCRYPT,
		"   ",
		"plain:secret",
		"garbage",
		"twice:" + apacheSHA,
		"twice:" + apacheAPR1,
		"mixed:" + apacheCRYPT,
		"mixed:" + apacheSHA,
		"crlf:" + apacheAPR1 + "\r",
	}, "\n")
	tab := parseTable("/etc/htpasswd", []byte(data))
	if _, ok := tab.entries["good"]; !ok {
		t.Error("good line not loaded")
	}
	if _, ok := tab.entries["crlf"]; !ok {
		t.Error("line ending in CR not loaded")
	}
	for _, u := range []string{"des", "plain", "twice", "mixed"} {
		if _, ok := tab.entries[u]; ok {
			t.Errorf("user %q loaded despite a refused line", u)
		}
	}
	want := []struct {
		line  int
		user  string
		cause Cause
	}{{4, "des", DESCrypt}, {6, "plain", Plaintext}, {7, "", Malformed}, {9, "twice", Duplicate}, {10, "mixed", DESCrypt}, {11, "mixed", Duplicate}}
	if len(tab.problems) != len(want) {
		t.Fatalf("problems: %v", tab.problems)
	}
	for i, w := range want {
		p := tab.problems[i]
		if p.File != "/etc/htpasswd" || p.Line != w.line || p.User != w.user || p.Cause != w.cause {
			t.Errorf("problem %d = %+v, want line %d user %q cause %v", i, p, w.line, w.user, w.cause)
		}
	}
	// The message names file, line and user, as an operator reads it.
	if got, want := tab.problems[0].Error(), `/etc/htpasswd:4: user "des": DES-crypt hash refused`; !strings.HasPrefix(got, want) {
		t.Errorf("message %q, want prefix %q", got, want)
	}
	var lerr *LineError
	if !errors.As(error(tab.problems[0]), &lerr) {
		t.Error("LineError is not errors.As-able")
	}
}

func TestSHAVerifiesAgainstDigestNotText(t *testing.T) {
	sum := sha1.Sum([]byte("pw"))
	_, h, lerr := parseLine("u:{SHA}" + base64.StdEncoding.EncodeToString(sum[:]))
	if lerr != nil || !h.verify([]byte("pw")) {
		t.Fatalf("SHA line: %v", lerr)
	}
}

// FuzzHtpasswdLine checks that no line crashes the parser, that an accepted
// line has a valid user and a hash that verifies without panicking, and
// that a refused line always says why.
func FuzzHtpasswdLine(f *testing.F) {
	for _, s := range []string{
		"myName:" + apacheAPR1,
		"myName:" + apacheSHA,
		"myName:" + apacheCRYPT,
		"alice:$2y$04$" + strings.Repeat("a", 53),
		"alice:$2a$10$abcdefghijklmnopqrstuuMX5Ux7RIqGFW4gYP5z3EVE7cQRuJu4G",
		"alice:secret",
		"alice:$apr1$$",
		"alice:{SHA}",
		":",
		"a:b:c",
		"\x00:\xff",
		"ü:$6$x$y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		user, h, lerr := parseLine(line)
		if lerr != nil {
			if lerr.Cause == 0 || lerr.Error() == "" {
				t.Fatalf("refusal without a cause: %#v", lerr)
			}
			return
		}
		if err := CheckUserName(user); err != nil {
			t.Fatalf("accepted an invalid user: %v", err)
		}
		if h.scheme == 0 {
			t.Fatal("accepted without a scheme")
		}
		if h.scheme != Bcrypt || h.cost <= 6 { // keep fuzzing fast
			h.verify([]byte("x"))
		}
	})
}
