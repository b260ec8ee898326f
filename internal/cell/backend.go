package cell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits are what one cell may use. A zero field means "no limit" for that
// resource.
type Limits struct {
	Memory    int64  // bytes: memory.max (v2), memory.limit_in_bytes (v1)
	Pids      int64  // pids.max
	CPUWeight uint64 // cgroup2 scale 1..10000 (100 is the default share); v1 converts to cpu.shares
}

// Events are the kernel's counters for a group that matter to a diagnosis.
type Events struct {
	OOMKills int64 // processes killed by the OOM killer (memory.events / memory.oom_control oom_kill)
	PidsMax  int64 // forks refused by pids.max (pids.events max)
}

// Sub returns the events that happened since base was read.
func (e Events) Sub(base Events) Events {
	return Events{OOMKills: e.OOMKills - base.OOMKills, PidsMax: e.PidsMax - base.PidsMax}
}

// SpawnFunc forks the program. It receives a SysProcAttr that holds only the
// cell's part (the cgroup fd on v2; nothing on v1, whose placement is the
// calling thread); it sets the rest (Credential, Setsid, Pdeathsig, ...)
// and forks with it, on the goroutine it was called on. It returns the
// child's pid.
type SpawnFunc func(attr *syscall.SysProcAttr) (pid int, err error)

// Backend creates and controls groups inside one directory per hierarchy,
// the backend's base (this process's own cgroup). Paths are slash-separated
// and relative to the base; the rest of suserve never sees a cgroup path.
// Implementations: cgroup v2, cgroup v1, none.
type Backend interface {
	// Name is "cgroup2", "cgroup1" or "none".
	Name() string
	// Enforces reports whether Create applies limits.
	Enforces() bool
	// Base is where groups are created, for the log.
	Base() string
	// Create makes the group (an existing one is fine) and, when lim is
	// not nil and the backend enforces limits, applies them.
	Create(rel string, lim *Limits) error
	// Spawn runs fn so that the child it forks is a member of the group
	// before its first instruction.
	Spawn(rel string, fn SpawnFunc) (int, error)
	// Kill kills every process in the group, including those that left the
	// process group or session, and returns once the group is empty, or a
	// *NotEmptyError when ctx ends first.
	Kill(ctx context.Context, rel string) error
	// Procs lists the group's processes (not its descendants').
	Procs(rel string) ([]int, error)
	// Events reads the group's OOM and pids counters.
	Events(rel string) (Events, error)
	// Remove deletes an empty group; a missing group is not an error.
	Remove(rel string) error
	// Children lists the group's child groups.
	Children(rel string) ([]string, error)
}

// writeFile writes a control file. Control files exist already; O_CREATE
// would turn a missing control (a controller not enabled) into a confusing
// permission error instead of "no such file".
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return &FileError{Op: "write", Path: path, Err: unwrapPath(err)}
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &FileError{Op: "write", Path: path, Err: unwrapPath(err)}
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &FileError{Op: "read", Path: path, Err: unwrapPath(err)}
	}
	return b, nil
}

// readPids parses cgroup.procs / tasks.
func readPids(path string) ([]int, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parsePids(b), nil
}

func parsePids(b []byte) []int {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// readKeyed returns the value of key in a "key value" per line file
// (memory.events, pids.events, memory.oom_control, cgroup.events). A missing
// file reads as 0: the controller is not there, so the event cannot happen.
func (c *controlFiles) readKeyed(path, key string) (int64, error) {
	b, err := c.read(path)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return keyed(b, key), nil
}

func keyed(b []byte, key string) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return &FileError{Op: "mkdir", Path: path, Err: unwrapPath(err)}
	}
	return nil
}

func rmdir(path string) error {
	if err := unix.Rmdir(path); err != nil && err != unix.ENOENT {
		return &FileError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

func children(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &FileError{Op: "read", Path: dir, Err: unwrapPath(err)}
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// join keeps rel inside base: rel is built by this package, but a path
// that escaped the base would move or kill processes suserve does not own.
func join(base, rel string) string {
	p := filepath.Join(base, filepath.FromSlash(rel))
	if p != base && !strings.HasPrefix(p, base+"/") {
		panic(fmt.Sprintf("cell: group path %q escapes %s", rel, base))
	}
	return p
}

// backoff is the wait schedule for polling a v1 group empty: the first
// checks come fast because a SIGKILLed process is usually gone within
// microseconds; the cap bounds the wakeups of a stuck one.
func backoff(i int) time.Duration {
	d := 50 * time.Microsecond << min(i, 10)
	return min(d, 20*time.Millisecond)
}

// killSignal sends SIGKILL to every pid, ignoring those already gone.
func killAll(pids []int) {
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
