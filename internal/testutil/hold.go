package testutil

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ExecHold holds execs of one program file where the kernel checks them: a
// fanotify permission event (FAN_OPEN_EXEC_PERM) that is answered only on
// Release, as an exec of a program on a network filesystem that has stopped
// answering waits. The process that execs waits in the kernel, killably.
type ExecHold struct {
	t   testing.TB
	fan int

	mu   sync.Mutex
	held []func() // one per exec Wait took
}

// HoldExec holds every exec of path from now on until t's cleanup, which
// lets them all go on; Wait takes one of them. It skips t on a kernel
// without exec permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
func HoldExec(t testing.TB, path string) *ExecHold {
	t.Helper()
	RequireRoot(t)
	fan, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		t.Fatalf("fanotify: %v", err)
	}
	if err := unix.FanotifyMark(fan, unix.FAN_MARK_ADD, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, path); err == unix.EINVAL {
		unix.Close(fan)
		t.Skip("this kernel has no fanotify permission events for exec (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")
	} else if err != nil {
		unix.Close(fan)
		t.Fatalf("fanotify mark: %v", err)
	}
	h := &ExecHold{t: t, fan: fan}
	t.Cleanup(func() {
		h.Release()
		unix.Close(fan)
	})
	return h
}

// Wait waits up to within for an exec of the program to be held, and
// returns the pid of the process that is held in it. Should the test hang
// after that, the exec goes on by itself after two minutes.
func (h *ExecHold) Wait(within time.Duration) int {
	h.t.Helper()
	fds := []unix.PollFd{{Fd: int32(h.fan), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(within.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			h.t.Fatalf("no exec of the held program within %v (poll: %v)", within, err)
		}
		break
	}
	// Room for one event (they carry no extra records here): a larger
	// read would take every queued event, and those past the first would
	// be lost, their execs held until the end of the test.
	var ev unix.FanotifyEventMetadata
	buf := make([]byte, unsafe.Sizeof(ev))
	n, err := unix.Read(h.fan, buf)
	if err != nil || n < int(unsafe.Sizeof(ev)) {
		h.t.Fatalf("fanotify read: %d bytes, %v", n, err)
	}
	ev = *(*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
	if ev.Vers != unix.FANOTIFY_METADATA_VERSION || ev.Mask&unix.FAN_OPEN_EXEC_PERM == 0 || ev.Fd < 0 {
		h.t.Fatalf("fanotify event %+v", ev)
	}
	release := sync.OnceFunc(func() {
		resp := unix.FanotifyResponse{Fd: ev.Fd, Response: unix.FAN_ALLOW}
		if _, err := unix.Write(h.fan, unsafe.Slice((*byte)(unsafe.Pointer(&resp)), unsafe.Sizeof(resp))); err != nil {
			h.t.Errorf("fanotify response: %v", err)
		}
		unix.Close(int(ev.Fd))
	})
	h.mu.Lock()
	h.held = append(h.held, release)
	h.mu.Unlock()
	timer := time.AfterFunc(2*time.Minute, release)
	h.t.Cleanup(func() { timer.Stop() })
	return int(ev.Pid)
}

// Release lets every exec that Wait took go on. It may be called more than
// once.
func (h *ExecHold) Release() {
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	for _, release := range held {
		release()
	}
}
