package testutil

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// UnprivilegedUID is the spare uid tests run as to see how suserve behaves
// when it was not started as root.
const UnprivilegedUID = 61005

// AsUnprivileged runs the calling test again in a copy of the test binary
// as UnprivilegedUID and fails t if that run fails. It returns true in the
// copy, where the test goes on to check the unprivileged behaviour, and
// false in the root parent, which has nothing more to do. Not as root, it
// returns true at once: the test already runs unprivileged. env is added
// to the copy's otherwise minimal environment.
func AsUnprivileged(t *testing.T, env ...string) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	dir, err := os.MkdirTemp("", "suserve-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp") // the copy's own temporary directory
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, UnprivilegedUID, UnprivilegedUID); err != nil {
		t.Fatal(err)
	}
	cmd := rerun(t, bin)
	cmd.Dir = tmp
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: UnprivilegedUID, Gid: UnprivilegedUID, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test as uid %s failed: %v\n%s", strconv.Itoa(UnprivilegedUID), err, out)
	}
	t.Logf("as uid %d:\n%s", UnprivilegedUID, out)
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
