package spawn

import (
	"context"
	"strconv"
	"syscall"

	"github.com/suserve/suserve/internal/cell"
)

// Cells places each program in its identity's cell (internal/cell). A
// Local without Cells runs programs in no cell: Kill then kills the
// program's process group, which a program can leave (setsid in a child);
// with cells, Kill kills the request's cgroup, which nothing can leave.
//
// Acquire's errors are returned by Start as they are: a full budget's error
// carries its own diagnosis (503) and Retry-After.
type Cells interface {
	Acquire(ctx context.Context, identity string) (Slot, error)
}

// Slot is one request's place in a cell: a request group inside the
// identity's cell.
type Slot interface {
	// Spawn calls fork so that the child is in the slot before its first
	// instruction, and returns fork's result. On cgroup v2 it sets
	// attr.UseCgroupFD and attr.CgroupFD (clone3 with CLONE_INTO_CGROUP)
	// before calling fork; on v1 it calls fork from a locked OS thread that
	// it has moved into the cell's groups. fork fills in the rest of attr
	// (credential, session, parent-death signal, pidfd) and forks on the
	// calling goroutine; the child may still be on its way to its exec
	// when fork returns.
	Spawn(fork func(attr *syscall.SysProcAttr) (pid int, err error)) (int, error)
	// Kill kills every process in the slot, however it detached itself
	// (cgroup.kill on v2; freeze, kill, thaw on v1), and returns once the
	// slot is empty or ctx ends.
	Kill(ctx context.Context) error
	// Events are the kernel's counters for the slot since Acquire: read
	// after the program ended, they turn a SIGKILL into "oom killed" and a
	// failed exit into "pids limit".
	Events() (CellEvents, error)
	// Release gives the slot back; whatever still runs in it is killed.
	// Called once, after the program has been reaped.
	Release()
}

// CellEvents are what a program's cell saw while it ran.
type CellEvents struct {
	OOMKills int64 // processes the OOM killer killed (memory.events oom_kill)
	PidsMax  int64 // forks refused at the pids limit (pids.events max)

	// What the diagnosis names, when the slot knows it.
	Cell        string // the cell's identity
	MemoryLimit int64  // bytes; 0 = unknown
	PidsLimit   int64  // 0 = unknown
}

// memoryCause says which limit the OOM killer enforced:
// "cell alice reached its memory limit 256MiB".
func (e CellEvents) memoryCause() string {
	s := "its cell reached its memory limit"
	if e.Cell != "" {
		s = "cell " + e.Cell + " reached its memory limit"
	}
	if e.MemoryLimit > 0 {
		s += " " + cell.FormatBytes(e.MemoryLimit)
	}
	return s
}

// pidsCause says which limit refused the forks:
// "cell alice reached its pids limit 64".
func (e CellEvents) pidsCause() string {
	s := "its cell reached its pids limit"
	if e.Cell != "" {
		s = "cell " + e.Cell + " reached its pids limit"
	}
	if e.PidsLimit > 0 {
		s += " " + strconv.FormatInt(e.PidsLimit, 10)
	}
	return s
}
