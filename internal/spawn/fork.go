package spawn

import (
	"context"
	"errors"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/identity"
)

// checked is a program that passed its checks, ready to fork: what Start
// and StartWorker share once each has applied its own policy.
type checked struct {
	id       identity.Identity
	cred     *syscall.Credential // nil: stay the server's own user
	prog     *program
	path     string // the program as configured, for messages
	argv0    string
	args     []string
	env      []string
	dir      string // the working directory as the child enters it
	shownDir string // the same, for messages
	files    []uintptr
}

// fork starts c in its identity's cell (or its own process group when cells
// are off) and returns it, or the diagnosis of why the exec failed.
func (l *Local) fork(ctx context.Context, c *checked) (*Process, error) {
	umaskOnce.Do(func() { syscall.Umask(0o022) })

	pidfd := -1
	var child started
	fork := func(attr *syscall.SysProcAttr) (int, error) {
		attr.Setsid = true // its own session and process group, for Kill
		attr.Pdeathsig = syscall.SIGKILL
		attr.Credential = c.cred
		attr.PidFD = &pidfd
		var err error
		child, err = startWith(runtime.GOMAXPROCS(0), c.argv0, c.args, c.env, c.dir, c.files, attr)
		return child.pid, err
	}
	var slot Slot
	var pid int
	var err error
	if l.Cells != nil {
		slot, err = l.Cells.Acquire(ctx, c.id.Name)
		if err != nil {
			return nil, err
		}
		pid, err = slot.Spawn(fork)
	} else {
		pid, err = fork(&syscall.SysProcAttr{})
	}
	if err == nil {
		// The exec's outcome is awaited once the fork is placed: on cgroup
		// v1 the forking thread is out of the cell again by now.
		err = child.wait(ctx)
	}
	if err != nil {
		if slot != nil {
			// Whatever still runs in it (a child killed just past its exec
			// may have started something) is killed.
			slot.Release()
		}
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			return nil, err
		}
		return nil, diagnoseExec(err, c.prog, c.id, c.shownDir)
	}
	if pidfd < 0 {
		// Without a pidfd the pid could not be told from a reused one.
		_ = unix.Kill(-pid, unix.SIGKILL)
		reap(pid)
		if slot != nil {
			slot.Release()
		}
		return nil, &Failure{Kind: ExecFailed, Path: c.path, Detail: errNoPidfd.Error(), Exit: -1, Err: errNoPidfd}
	}
	p := newProcess(pid, pidfd, c.path, slot)
	p.st.stopCtx = context.AfterFunc(ctx, p.st.kill)
	return p, nil
}

// started is a forked child and what is left to learn of its exec.
type started struct {
	pid  int
	exec func(ctx context.Context) error // waits for the exec; nil when its outcome is known
}

// wait waits until the child has exec'd, or returns why it could not: the
// errno of the step that failed, or ctx's error once ctx has ended, the
// child then killed; either way the child is reaped and its pidfd closed.
// A child that does not reach its exec, one whose exec has stalled or one
// stopped by a signal from its own user, is thus ended with its request.
func (s started) wait(ctx context.Context) error {
	if s.exec == nil {
		return nil
	}
	return s.exec(ctx)
}

// reap waits for child pid, which has exited or been killed, and reaps it.
func reap(pid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			return
		}
	}
}

// startWith forks with the fork for a process of procs Ps. With one, Go's
// fork would hold the process's only P until each child has exec'd, so
// forks would take turns and a stalled exec would stop the process:
// startExec, which returns once the child exists. With more, Go's fork
// leaves the other Ps working. It was measured there against startExec's
// earlier form, a vfork in a C call that returned after the exec, whose
// handing of its P to another thread and back took the in-process server
// with cells from 0.93 to 0.84 of the setuid limit (cgroup v2) and from
// 0.85 to 0.77 (v1) at 32 connections on 2 CPUs, medians of five bench
// runs; with the child's handlers reset by clone3, v1 still read 0.71
// against 0.87 (v2 0.88 against 0.84, within the spread). The present
// startExec has not been measured on more Ps.
func startWith(procs int, argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (started, error) {
	if procs == 1 {
		return startExec(argv0, argv, env, dir, files, sys)
	}
	return startGo(argv0, argv, env, dir, files, sys)
}

// startGo is forkGo as a started child: Go's fork returns after the exec.
func startGo(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (started, error) {
	pid, err := forkGo(argv0, argv, env, dir, files, sys)
	return started{pid: pid}, err
}

// forkGo is Go's own fork, with startExec's arguments. Its child closes
// only what is close-on-exec, and descriptors the server inherited or that
// code outside Go's os and net packages opened without O_CLOEXEC
// (systemd's LISTEN_FDS, cgo libraries) would reach every program: they
// are all marked close-on-exec first. Go's own descriptors are
// close-on-exec already; the child's own are set up from files.
// (startExec's child closes everything it does not pass on itself.)
func forkGo(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (int, error) {
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	return syscall.ForkExec(argv0, argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: sys})
}
