package cell

import (
	"errors"
	"fmt"
	"time"
)

// FileError is a failed operation on one cgroup file or directory. The path
// is the first thing an operator needs: it says which hierarchy and which
// control refused.
type FileError struct {
	Op   string // "write", "read", "mkdir", "rmdir", "open"
	Path string
	Err  error
}

func (e *FileError) Error() string { return "cell: " + e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// UnavailableError says why a requested backend cannot be used on this host.
type UnavailableError struct {
	Backend string
	Reason  string
}

func (e *UnavailableError) Error() string {
	return "cell: backend " + e.Backend + " unavailable: " + e.Reason
}

// NotEmptyError is returned when a group still has members after a kill had
// its time: a process the kernel would not let go (stuck in uninterruptible
// sleep, usually).
type NotEmptyError struct {
	Path  string
	Procs []int // members seen last
}

func (e *NotEmptyError) Error() string {
	return fmt.Sprintf("cell: %s still has %d process(es) after kill: %v", e.Path, len(e.Procs), e.Procs)
}

// InstanceLockedError is returned by Open when another live suserve holds the
// subtree. Cleaning its cells would kill its programs, so Open refuses.
type InstanceLockedError struct {
	Lock    string // lock file
	Subtree string
	PID     int // the holder, 0 when unknown
}

func (e *InstanceLockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("another suserve (pid %d)", e.PID)
	}
	return fmt.Sprintf("cell: subtree %s is held by %s (lock %s); give this instance its own [cells] root", e.Subtree, who, e.Lock)
}

// ErrNotTracked is returned by Kill on the none backend: without a cgroup
// there is no set of processes to kill, and the caller must fall back to
// its process-group kill.
var ErrNotTracked = errors.New("cell: backend none does not track processes; kill the process group instead")

// ErrClosed is returned by Acquire after the pool has been closed.
var ErrClosed = errors.New("cell: pool closed")

// BudgetFull is the refusal of a request that could not be admitted within
// queue_timeout: either every cell was busy, or the identity already ran
// cell_max_requests programs. It implements the gateway's Diagnosis and
// RetryAfterer, so the client gets 503 with Retry-After.
type BudgetFull struct {
	Identity string
	// Per-identity refusal: the identity had MaxRequests requests running.
	PerIdentity bool
	MaxRequests int

	Busy, Cells        int   // cells in use, cells allowed
	Budget, CellMemory int64 // bytes
	Waited             time.Duration
	Retry              time.Duration
}

func (e *BudgetFull) Error() string {
	if e.PerIdentity {
		return fmt.Sprintf("identity %s has %d requests running (cell_max_requests %d); waited %s",
			e.Identity, e.MaxRequests, e.MaxRequests, e.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("cell budget full: %d of %d cells busy; budget %s / cell_memory %s; waited %s",
		e.Busy, e.Cells, FormatBytes(e.Budget), FormatBytes(e.CellMemory), e.Waited.Round(time.Millisecond))
}

// Cause is the short class the gateway logs and shows.
func (e *BudgetFull) Cause() string {
	if e.PerIdentity {
		return "too many requests for identity"
	}
	return "cell budget full"
}

// HTTPStatus is 503: the server is able, but not now.
func (e *BudgetFull) HTTPStatus() int { return 503 }

// RetryAfter is how long the client should wait: about one request's hold
// time, at least a second (RFC 9110 §10.2.3 counts in whole seconds).
func (e *BudgetFull) RetryAfter() time.Duration { return e.Retry }
