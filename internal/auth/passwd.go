package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/crypto/bcrypt"
)

// NewFileMode is the mode of an htpasswd file SetPassword creates: the server
// reads it through its group; nobody else needs to.
const NewFileMode fs.FileMode = 0o640

// ErrNoSuchUser is the cause when DeleteUser finds no line for the user.
var ErrNoSuchUser = errors.New("no such user")

// ErrEmptyPassword is the cause when SetPassword is given an empty password.
var ErrEmptyPassword = errors.New("empty password")

// PasswdError says which file an update of users failed on, and why.
type PasswdError struct {
	Op   string // "set password" or "delete user"
	File string
	User string
	Err  error
}

func (e *PasswdError) Error() string {
	return fmt.Sprintf("%s of %q in %s: %v", e.Op, e.User, e.File, e.Err)
}
func (e *PasswdError) Unwrap() error { return e.Err }

// SetPassword gives user a bcrypt hash of password at cost (0 means
// bcrypt.DefaultCost) in file, replacing every line the user had (a refused
// DES or plaintext line included) with one line where the first was, and
// adding one at the end for a new user. Other lines, comments included, are
// kept byte for byte. A missing file is created with NewFileMode; an existing
// one is replaced atomically (a temporary file in the same directory,
// renamed over it) keeping its mode and owner, so the server never reads half
// a file. Two concurrent updates of one file can lose one of them: the file
// is edited by operators, one at a time.
func SetPassword(file, user string, password []byte, cost int) error {
	wrap := func(err error) error { return &PasswdError{Op: "set password", File: file, User: user, Err: err} }
	if err := CheckUserName(user); err != nil {
		return wrap(err)
	}
	if len(password) == 0 {
		return wrap(ErrEmptyPassword)
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return wrap(err)
	}
	newLine := append([]byte(user+":"), h...)
	if err := rewrite(file, func(lines [][]byte) ([][]byte, bool) {
		out, found := replaceUser(lines, user, newLine)
		if !found {
			out = append(out, newLine)
		}
		return out, true
	}); err != nil {
		return wrap(err)
	}
	return nil
}

// DeleteUser removes every line of user from file, replacing it atomically
// as SetPassword does. It fails with ErrNoSuchUser when there is none.
func DeleteUser(file, user string) error {
	wrap := func(err error) error { return &PasswdError{Op: "delete user", File: file, User: user, Err: err} }
	if err := CheckUserName(user); err != nil {
		return wrap(err)
	}
	if err := rewrite(file, func(lines [][]byte) ([][]byte, bool) {
		return replaceUser(lines, user, nil)
	}); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w (the file does not exist)", ErrNoSuchUser)
		}
		return wrap(err)
	}
	return nil
}

// replaceUser returns lines with the user's lines removed and, if with is
// not nil, with put where the first of them was.
func replaceUser(lines [][]byte, user string, with []byte) ([][]byte, bool) {
	prefix := []byte(user + ":")
	out := make([][]byte, 0, len(lines)+1)
	found := false
	for _, l := range lines {
		if bytes.HasPrefix(l, prefix) {
			if !found && with != nil {
				out = append(out, with)
			}
			found = true
			continue
		}
		out = append(out, l)
	}
	return out, found
}

// rewrite reads file's lines (none if it does not exist), lets edit change
// them, and writes the result atomically. edit returns false to report that
// the user was not found (ErrNoSuchUser).
func rewrite(file string, edit func([][]byte) ([][]byte, bool)) error {
	// Replace the file a symlink points to, not the symlink.
	target, err := filepath.EvalSymlinks(file)
	exists := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		target = file
	case err != nil:
		return err
	}

	var data []byte
	var fi fs.FileInfo
	if exists {
		if data, err = os.ReadFile(target); err != nil {
			return err
		}
		if fi, err = os.Stat(target); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", target)
		}
	}
	var lines [][]byte
	if len(data) > 0 {
		lines = bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	}
	lines, ok := edit(lines)
	if !ok {
		if !exists {
			return fs.ErrNotExist
		}
		return ErrNoSuchUser
	}
	var out bytes.Buffer
	for _, l := range lines {
		out.Write(l)
		out.WriteByte('\n')
	}

	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*") // mode 0600 until chmod below
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	mode := NewFileMode
	if exists {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			// Owner first: chown can clear mode bits that chmod then sets.
			if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("keeping the owner %d:%d: %w", st.Uid, st.Gid, err)
			}
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, target); err != nil {
		return err
	}
	committed = true
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
