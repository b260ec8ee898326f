package spawn

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Process is a started program. Its methods are exactly those of the
// gateway's Process interface.
//
// The program is the leader of its own session and process group, so Kill
// can signal the whole group, background children included. A process
// group id is a pid, and pids are reused: signalling -pgid after the leader
// has been reaped and its group has emptied could hit an unrelated group
// that happens to get the same number. So the leader is not reaped when it
// exits: Wait reads its status without reaping it (waitid WNOWAIT on its
// pidfd), and the zombie keeps the group id reserved until Kill has sent
// its signal. Reaping happens in Kill (or in Wait, if Kill came first).
// Callers call Kill when they are done with a Process, as the gateway does
// at the end of every request; a Process dropped without it is killed and
// reaped when it is garbage collected.
type Process struct {
	pid  int
	path string
	st   *procState

	waitOnce sync.Once
	werr     error
}

// procState is what Kill, Wait and the garbage-collection cleanup share.
type procState struct {
	mu      sync.Mutex
	pid     int
	pidfd   *os.File // in the runtime's poller: Wait parks no OS thread
	exited  bool     // the leader is a zombie; its status has been read
	reaped  bool
	killed  bool
	slot    Slot
	stopCtx func() bool
}

func newProcess(pid, pidfd int, path string, slot Slot) *Process {
	// A non-blocking pidfd is registered with the poller, so that Wait
	// waits for readability (the process exited) without a blocked thread
	// per program. A pidfd has no other status flag to keep.
	_, _ = unix.FcntlInt(uintptr(pidfd), unix.F_SETFL, unix.O_NONBLOCK)
	st := &procState{pid: pid, pidfd: os.NewFile(uintptr(pidfd), "pidfd"), slot: slot}
	p := &Process{pid: pid, path: path, st: st}
	runtime.AddCleanup(p, func(st *procState) { go st.abandon() }, st)
	return p
}

// Pid is the program's process id.
func (p *Process) Pid() int { return p.pid }

// Kill kills the program's whole tree with SIGKILL: its cell's request
// group when it has one, and its process group. It is idempotent and safe
// concurrently with Wait and after it.
func (p *Process) Kill() { p.st.kill() }

func (st *procState) kill() {
	st.mu.Lock()
	if st.reaped {
		st.mu.Unlock()
		return
	}
	st.killed = true
	// The leader is alive or a zombie: its pid, and so its group id, is
	// still ours. A zombie leader has nothing left to signal.
	_ = unix.Kill(-st.pid, unix.SIGKILL)
	if !st.exited {
		st.signalLeader(unix.SIGKILL)
	}
	slot := st.slot
	release := st.exited && st.reapLocked()
	st.mu.Unlock()
	if slot != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = slot.Kill(ctx)
		cancel()
		if release {
			slot.Release()
		}
	}
}

// signalLeader signals the leader through its pidfd, which cannot name a
// reused pid: the leader cannot leave its session, but it is the process
// that Wait waits for, so it is signalled directly too.
func (st *procState) signalLeader(sig unix.Signal) {
	rc, err := st.pidfd.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), sig, nil, 0) })
}

// reapLocked reaps the zombie leader and closes the pidfd. It reports
// whether the slot is now to be released (by the caller, outside the lock).
func (st *procState) reapLocked() bool {
	if st.reaped {
		return false
	}
	st.reaped = true
	if rc, err := st.pidfd.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			var info unix.Siginfo
			for {
				// The leader has exited: this does not block.
				err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED, nil)
				if err != unix.EINTR {
					return
				}
			}
		})
	}
	st.pidfd.Close()
	if st.stopCtx != nil {
		st.stopCtx()
	}
	return st.slot != nil
}

// abandon is the cleanup of a Process nobody holds any more.
func (st *procState) abandon() {
	st.kill()
	if _, err := st.waitExit(); err == nil {
		st.mu.Lock()
		st.exited = true
		release := st.reapLocked()
		st.mu.Unlock()
		if release {
			st.slot.Release()
		}
	}
}

// childStatus is the SIGCHLD part of siginfo_t (include/uapi/asm-generic/
// siginfo.h): si_pid, si_uid, si_status after the three common ints.
type childStatus struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
}

// si_code values for SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// waitExit waits until the leader has exited and returns its status,
// leaving it a zombie (WNOWAIT).
func (st *procState) waitExit() (cs childStatus, err error) {
	rc, err := st.pidfd.SyscallConn()
	if err != nil {
		return cs, err
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		switch {
		case werr == unix.EAGAIN || werr == unix.EINTR:
			return false
		case werr != nil:
			return true
		}
		cs = *(*childStatus)(unsafe.Pointer(&info))
		return cs.Pid != 0
	})
	if err == nil {
		err = werr
	}
	return cs, err
}

// Wait waits for the program to exit. It returns nil for exit status 0 and
// a *Failure otherwise: exited with status N, killed by signal S (noting
// when Kill sent it), or, when the program ran in a cell, killed by the
// cell's OOM killer or failed at its pids limit. Calling it again returns
// the same result.
func (p *Process) Wait() error {
	p.waitOnce.Do(func() { p.werr = p.wait() })
	return p.werr
}

func (p *Process) wait() error {
	st := p.st
	cs, err := st.waitExit()
	if err != nil {
		return &Failure{Kind: ExecFailed, Path: p.path, Detail: "waitid: " + err.Error(), Exit: -1, Err: err}
	}
	st.mu.Lock()
	st.exited = true
	killed := st.killed
	release := killed && st.reapLocked()
	st.mu.Unlock()

	var ev CellEvents
	if st.slot != nil {
		// A clean exit needs no diagnosis: the cell's counters are read
		// only for a failure.
		if cs.Code != cldExited || cs.Status != 0 {
			ev, _ = st.slot.Events()
		}
		if release {
			st.slot.Release()
		}
	}
	f := &Failure{Path: p.path, Exit: -1, Cell: ev}
	switch cs.Code {
	case cldExited:
		if cs.Status == 0 {
			return nil
		}
		f.Kind, f.Exit = Exited, int(cs.Status)
		switch {
		case ev.OOMKills > 0:
			f.Kind = OOMKilled
			f.Detail = "exited with status " + strconv.Itoa(int(cs.Status)) + " after the kernel's OOM killer killed a process of it: " + ev.memoryCause()
		case ev.PidsMax > 0:
			f.Kind = PidsLimit
			f.Detail = "exited with status " + strconv.Itoa(int(cs.Status)) + " after " + strconv.Itoa(int(ev.PidsMax)) + " fork(s) failed: " + ev.pidsCause()
		}
	case cldKilled, cldDumped:
		f.Kind, f.Signal, f.Killed = Signaled, syscall.Signal(cs.Status), killed
		if f.Signal == syscall.SIGKILL && !killed && ev.OOMKills > 0 {
			f.Kind = OOMKilled
			f.Detail = "killed by the kernel's OOM killer: " + ev.memoryCause()
		}
	default:
		return &Failure{Kind: ExecFailed, Path: p.path, Detail: "waitid: unexpected si_code " + strconv.Itoa(int(cs.Code)), Exit: -1}
	}
	return f
}

var errNoPidfd = errors.New("the kernel returned no pidfd (Linux 5.4 or later is needed)")
