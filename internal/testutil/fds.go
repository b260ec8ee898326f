package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Descriptors lists the descriptors process pid has open, but for the
// write ends of pipes that are close-on-exec, which it counts apart: what
// a child of suserve's fork holds until its exec, its status pipe among
// them.
func Descriptors(t testing.TB, pid int) (names []string, cloexecPipes int) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join(dir, fd.Name())); strings.HasPrefix(target, "pipe:") {
			info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
			if err != nil {
				t.Fatal(err)
			}
			var pos, flags uint64
			if _, err := fmt.Sscanf(string(info), "pos:\t%d\nflags:\t%o", &pos, &flags); err != nil {
				t.Fatalf("fdinfo of %s/%s: %v", dir, fd.Name(), err)
			}
			if flags&unix.O_ACCMODE == unix.O_WRONLY && flags&unix.O_CLOEXEC != 0 {
				cloexecPipes++
				continue
			}
		}
		names = append(names, fd.Name())
	}
	return names, cloexecPipes
}
