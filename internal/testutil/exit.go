package testutil

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStillRunning is what WaitExit returns when the process outlives the
// wait.
var ErrStillRunning = errors.New("still running")

// WaitExit waits up to within for the process behind pidfd to exit (the
// pidfd turns readable). Signals that interrupt the wait (the Go runtime
// sends its own, for preemption) do not end it early.
func WaitExit(pidfd int, within time.Duration) error {
	deadline := time.Now().Add(within)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("poll on pidfd: %w", err)
		case n == 0:
			return fmt.Errorf("%w after %v", ErrStillRunning, within)
		}
		return nil
	}
}

// WaitPidExit is WaitExit for a pid. A pid that no longer exists has
// exited.
func WaitPidExit(pid int, within time.Duration) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	return WaitExit(fd, within)
}
