package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/suserve/suserve/internal/testutil"
	"golang.org/x/crypto/bcrypt"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestSetPasswordCreatesAFileThatLogsIn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := SetPassword(path, "alice", []byte("s3cret"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != NewFileMode {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), NewFileMode)
	}
	lines := readLines(t, path)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "alice:$2a$04$") {
		t.Fatalf("file %q", lines)
	}
	h := &Htpasswd{Path: path, Logger: (&logBuffer{}).Logger()}
	if err := h.Load(); err != nil {
		t.Fatal(err)
	}
	if !h.Verify("alice", []byte("s3cret")) {
		t.Error("the password set does not log in")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestSetPasswordReplacesTheUsersLinesAndKeepsTheRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	orig := []string{"# operators: edit with suserve passwd", "alice:" + apacheCRYPT, "bob:" + apacheSHA, "alice:" + apacheAPR1, "", "carol:" + apacheAPR1}
	replaceFile(t, path, orig...)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "alice", []byte("new"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "dave", []byte("new"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 6 || lines[0] != orig[0] || !strings.HasPrefix(lines[1], "alice:$2a$") || lines[2] != orig[2] ||
		lines[3] != "" || lines[4] != orig[5] || !strings.HasPrefix(lines[5], "dave:$2a$") {
		t.Fatalf("file:\n%s", strings.Join(lines, "\n"))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
	// The former DES user now logs in, with the new password only.
	h := &Htpasswd{Path: path, Logger: (&logBuffer{}).Logger()}
	if err := h.Load(); err != nil {
		t.Fatal(err)
	}
	if !h.Verify("alice", []byte("new")) || h.Verify("alice", []byte("myPassword")) {
		t.Error("alice's password was not replaced")
	}
	if p := h.Problems(); len(p) != 0 {
		t.Errorf("problems: %v", p)
	}
}

func TestSetPasswordThroughASymlinkReplacesItsTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	replaceFile(t, target, "bob:"+apacheSHA)
	link := filepath.Join(dir, "htpasswd")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(link, "alice", []byte("pw"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v", err)
	}
	if lines := readLines(t, target); len(lines) != 2 {
		t.Errorf("target %q", lines)
	}
}

func TestDeleteUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	replaceFile(t, path, "alice:"+apacheSHA, "bob:"+apacheSHA, "alice:"+apacheAPR1)
	if err := DeleteUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, path); len(lines) != 1 || lines[0] != "bob:"+apacheSHA {
		t.Errorf("file %q", lines)
	}
	if err := DeleteUser(path, "alice"); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("second delete: %v, want ErrNoSuchUser", err)
	}
	if err := DeleteUser(filepath.Join(t.TempDir(), "absent"), "alice"); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("delete from a missing file: %v, want ErrNoSuchUser", err)
	}
}

func TestPasswdRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	for _, tc := range []struct {
		name     string
		err      func() error
		wantUser bool // a *UserNameError
		target   error
	}{
		{"colon in name", func() error { return SetPassword(path, "a:b", []byte("pw"), 4) }, true, nil},
		{"newline in name", func() error { return SetPassword(path, "a\nb:$2a$", []byte("pw"), 4) }, true, nil},
		{"empty name", func() error { return DeleteUser(path, "") }, true, nil},
		{"empty password", func() error { return SetPassword(path, "alice", nil, 4) }, false, ErrEmptyPassword},
		{"password over 72 bytes", func() error { return SetPassword(path, "alice", make([]byte, 73), 4) }, false, bcrypt.ErrPasswordTooLong},
		{"directory missing", func() error { return SetPassword(filepath.Join(dir, "no", "f"), "alice", []byte("pw"), 4) }, false, fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			var perr *PasswdError
			if !errors.As(err, &perr) {
				t.Fatalf("error %v is not a *PasswdError", err)
			}
			var uerr *UserNameError
			if tc.wantUser != errors.As(err, &uerr) {
				t.Errorf("error %v: UserNameError %v, want %v", err, !tc.wantUser, tc.wantUser)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %v, want %v", err, tc.target)
			}
		})
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused update created the file")
	}
}

func TestPasswdKeepsTheFilesOwner(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "htpasswd")
	replaceFile(t, path, "bob:"+apacheSHA)
	if err := os.Chown(path, testutil.AliceUID, testutil.BobUID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != testutil.AliceUID || st.Gid != testutil.BobUID || fi.Mode().Perm() != 0o604 {
			t.Errorf("after %s: owner %d:%d mode %v, want %d:%d 0604", step, st.Uid, st.Gid, fi.Mode().Perm(), testutil.AliceUID, testutil.BobUID)
		}
	}
	ino := func() uint64 {
		fi, _ := os.Stat(path)
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := ino()
	if err := SetPassword(path, "alice", []byte("pw"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	check("set")
	if ino() == before {
		t.Error("the file was rewritten in place, not replaced")
	}
	if err := DeleteUser(path, "bob"); err != nil {
		t.Fatal(err)
	}
	check("delete")
}
