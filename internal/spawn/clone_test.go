package spawn

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/suserve/suserve/internal/testutil"
)

// lowNofileEnv marks the copy of TestForkExecStartsProgramsAsGosForkDoes
// started with a low soft open-file limit.
const lowNofileEnv = "SUSERVE_TEST_LOW_NOFILE"

// TestForkExecStartsProgramsAsGosForkDoes starts the same programs with
// suserve's fork and with Go's, and compares what the programs see of
// themselves: identity, groups, capabilities, signal mask and dispositions,
// open-file limit, session, working directory and descriptors (some moved
// down onto lower slots, some up). Failures before the exec must carry the
// same errno.
func TestForkExecStartsProgramsAsGosForkDoes(t *testing.T) {
	testutil.RequireRoot(t)
	lowNofile := os.Getenv(lowNofileEnv) != ""
	if !lowNofile {
		// Again with a soft open-file limit below the hard one, which Go
		// raises when it starts: each fork must give the program the
		// limit the server was started with.
		testutil.RunCopy(t, "under a soft open-file limit of 512", []string{"prlimit", "--nofile=512:"}, lowNofileEnv+"=1", probeEnv+"="+probePath)
	}
	dir := filepath.Join(base, "fork-"+t.Name())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	closed := filepath.Join(dir, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cred := func() *syscall.Credential {
		return &syscall.Credential{Uid: testutil.AliceUID, Gid: testutil.AliceUID, Groups: []uint32{testutil.AliceUID, groupUID}}
	}
	null := devNull(t)

	type result struct {
		out string
		err error
	}
	run := func(fork func(string, []string, []string, string, []uintptr, *syscall.SysProcAttr) (int, error), argv []string, dir string) result {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		pidfd := -1
		// 0 and 2 go to slots above their own numbers: the child must
		// move them out of the way before the slots below are filled.
		files := []uintptr{null.Fd(), w.Fd(), w.Fd(), 0, 2}
		attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Credential: cred(), PidFD: &pidfd}
		pid, err := fork(argv[0], argv, []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}, dir, files, attr)
		w.Close()
		if err != nil {
			if pidfd >= 0 {
				t.Errorf("%v failed (%v) but left a pidfd", argv, err)
			}
			return result{err: err}
		}
		defer syscall.Close(pidfd)
		out, _ := io.ReadAll(r)
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			t.Fatalf("%v: wait %v, status %v, output %s", argv, err, ws, out)
		}
		if pidfd < 0 {
			t.Errorf("%v: no pidfd", argv)
		}
		return result{out: string(out)}
	}

	fields := regexp.MustCompile(`(?m)^((Uid|Gid|Groups|SigBlk|SigIgn|SigCgt|Cap\w+|NoNewPrivs|Seccomp):|Max open files).*$`)
	status := func(out string) string {
		// The session and process group are the program's own pid.
		ns := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "NS") {
				ns[k] = strings.TrimSpace(v)
			}
		}
		if ns["NSsid"] == "" || ns["NSsid"] != ns["NSpid"] || ns["NSpgid"] != ns["NSpid"] {
			t.Errorf("the program leads no session of its own: %v", ns)
		}
		return strings.Join(fields.FindAllString(out, -1), "\n")
	}
	pipeIno := regexp.MustCompile(`pipe:\[\d+\]|/proc/\d+/`)
	listing := func(out string) string { return pipeIno.ReplaceAllString(out, "X") }

	for _, tt := range []struct {
		name string
		argv []string
		dir  string
		norm func(string) string
	}{
		{"status", []string{"/bin/cat", "/proc/self/status", "/proc/self/limits"}, dir, func(out string) string {
			if lowNofile && !regexp.MustCompile(`Max open files\s+512\s`).MatchString(out) {
				t.Errorf("the program's open-file limit is not the server's 512:\n%s", out)
			}
			return status(out)
		}},
		{"descriptors and directory", []string{"/bin/ls", "-l", "--time-style=+", "/proc/self/fd/", "/proc/self/cwd"}, dir, listing},
		{"no such program", []string{filepath.Join(dir, "missing")}, dir, nil},
		{"not executable", []string{noexec}, dir, nil},
		{"no such directory", []string{"/bin/true"}, filepath.Join(dir, "gone"), nil},
		{"directory closed to the identity", []string{"/bin/true"}, closed, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ours, gos := run(forkExec, tt.argv, tt.dir), run(forkGo, tt.argv, tt.dir)
			var oe, ge syscall.Errno
			if errors.As(ours.err, &oe) != errors.As(gos.err, &ge) || oe != ge {
				t.Fatalf("suserve's fork: %v; Go's: %v", ours.err, gos.err)
			}
			if tt.norm == nil {
				if ours.err == nil {
					t.Fatalf("%v started; the case expects a failure", tt.argv)
				}
				return
			}
			if a, b := tt.norm(ours.out), tt.norm(gos.out); a != b || a == "" {
				t.Errorf("suserve's fork gave the program\n%s\nGo's gave it\n%s", a, b)
			}
		})
	}
}

// forkExec is startExec that waits for the exec, with Go's fork's
// signature: what the tests compare and time.
func forkExec(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (int, error) {
	s, err := startExec(argv0, argv, env, dir, files, sys)
	if err == nil {
		err = s.wait(context.Background())
	}
	if err != nil {
		return 0, err
	}
	return s.pid, nil
}
