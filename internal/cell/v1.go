package cell

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// v1Backend is cgroup v1: a group is a directory of the same relative path
// in each of the memory, pids, freezer and (when present) cpu hierarchies.
type v1Backend struct {
	hier []v1Hier // memory, pids, freezer, then cpu: the order of writes

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per group: Spawn and Kill never overlap (see Kill)
	files *controlFiles
}

type v1Hier struct {
	ctrl string
	base string // this process's own cgroup in the hierarchy
}

func newV1(dirs map[string]string) *v1Backend {
	v := &v1Backend{locks: map[string]*sync.Mutex{}, files: newControlFiles()}
	seen := map[string]bool{}
	for _, c := range []string{"memory", "pids", "freezer", "cpu"} {
		d, ok := dirs[c]
		if !ok || seen[d] {
			continue
		}
		seen[d] = true
		v.hier = append(v.hier, v1Hier{ctrl: c, base: d})
	}
	return v
}

func (v *v1Backend) Name() string   { return Cgroup1 }
func (v *v1Backend) Enforces() bool { return true }
func (v *v1Backend) Base() string {
	var parts []string
	for _, h := range v.hier {
		parts = append(parts, h.base)
	}
	return strings.Join(parts, ", ")
}

func (v *v1Backend) dir(ctrl, rel string) string {
	for _, h := range v.hier {
		if h.ctrl == ctrl {
			return join(h.base, rel)
		}
	}
	return ""
}

func (v *v1Backend) lock(rel string) *sync.Mutex {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.locks[rel]
	if m == nil {
		m = new(sync.Mutex)
		v.locks[rel] = m
	}
	return m
}

func (v *v1Backend) Create(rel string, lim *Limits) error {
	for _, h := range v.hier {
		// A file looked for before the group existed is known missing:
		// forget that.
		v.files.forget(join(h.base, rel))
		if err := mkdir(join(h.base, rel)); err != nil {
			return err
		}
	}
	if lim == nil {
		return nil
	}
	if lim.Memory > 0 {
		if err := v.setMemory(v.dir("memory", rel), lim.Memory); err != nil {
			return err
		}
	}
	if lim.Pids > 0 {
		if err := writeFile(filepath.Join(v.dir("pids", rel), "pids.max"), strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	if d := v.dir("cpu", rel); d != "" && lim.CPUWeight > 0 {
		if err := writeFile(filepath.Join(d, "cpu.shares"), strconv.FormatUint(weightToShares(lim.CPUWeight), 10)); err != nil {
			return err
		}
	}
	return nil
}

// setMemory sets memory.limit_in_bytes and, where swap is accounted,
// memory.memsw.limit_in_bytes to the same value: memory plus swap equal to
// memory means no swap for the cell. The kernel insists memsw >= limit at
// every step, so the order depends on which way the limit moves.
func (v *v1Backend) setMemory(dir string, limit int64) error {
	val := strconv.FormatInt(limit, 10)
	lim := filepath.Join(dir, "memory.limit_in_bytes")
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	_, err := os.Stat(memsw)
	hasMemsw := err == nil
	if err := writeFile(lim, val); err != nil {
		if !hasMemsw || !errors.Is(err, unix.EINVAL) {
			return err
		}
		if err := writeFile(memsw, val); err != nil {
			return err
		}
		return writeFile(lim, val)
	}
	if hasMemsw {
		return writeFile(memsw, val)
	}
	return nil
}

// weightToShares maps cgroup2's cpu.weight (1..10000, default 100) onto
// v1's cpu.shares (2..262144, default 1024) proportionally, so the default
// weight is the default share and ratios between cells are kept.
func weightToShares(w uint64) uint64 {
	return min(max(w*1024/100, 2), 262144)
}

// Spawn runs fn on a fresh OS thread that has been moved into the group in
// every hierarchy: the fork inherits the thread's groups, so the program is
// in its cell before its first instruction (v1 has no CLONE_INTO_CGROUP).
// The thread is moved back afterwards; if that fails it is not returned to
// the Go scheduler but ends with its goroutine, so no other goroutine ever
// runs inside a cell. The thread writes "0" (itself) to each tasks file:
// a thread that moves only itself does not take the kernel's global
// threadgroup lock, which a pid would. The tasks files stay open (see
// controlFiles). Measured on this host: see BenchmarkSpawnPlacement.
func (v *v1Backend) Spawn(rel string, fn SpawnFunc) (int, error) {
	m := v.lock(rel)
	m.Lock()
	defer m.Unlock()
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		moved := 0
		var r result
		for _, h := range v.hier {
			if err := v.files.write(filepath.Join(join(h.base, rel), "tasks"), "0"); err != nil {
				r.err = err
				break
			}
			moved++
		}
		if r.err == nil {
			r.pid, r.err = fn(&syscall.SysProcAttr{})
		}
		back := true
		for _, h := range v.hier[:moved] {
			if err := v.files.write(filepath.Join(h.base, "tasks"), "0"); err != nil {
				back = false
				if r.err == nil && r.pid == 0 {
					r.err = err
				}
			}
		}
		done <- r
		if back {
			runtime.UnlockOSThread()
		}
		// Otherwise the goroutine exits locked and the runtime destroys the thread.
	}()
	r := <-done
	return r.pid, r.err
}

// Kill freezes the group so that nothing in it can fork while it is being
// emptied, SIGKILLs every member, thaws it so the signals are delivered,
// then polls the group empty. The per-group lock keeps Spawn's thread out
// of the freezer group while it is frozen.
func (v *v1Backend) Kill(ctx context.Context, rel string) error {
	m := v.lock(rel)
	m.Lock()
	defer m.Unlock()
	fz := v.dir("freezer", rel)
	// Most requests leave nothing behind, and Spawn (the only way in) is
	// held off by the lock: an empty group needs no freeze. Skipping it
	// saves the freeze/thaw round trip on every request.
	if empty, err := v.empty(rel); err != nil || empty {
		return err
	}
	state := filepath.Join(fz, "freezer.state")
	if err := writeFile(state, "FROZEN"); err != nil {
		return err
	}
	// FREEZING becomes FROZEN once every task has stopped; a task in an
	// uninterruptible sleep can hold it in FREEZING, so the wait is bounded
	// by ctx and the kill goes ahead regardless.
	for i := 0; ; i++ {
		b, err := readFile(state)
		if err != nil || strings.TrimSpace(string(b)) == "FROZEN" || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, backoff(i))
	}
	procs, err := readPids(filepath.Join(fz, "cgroup.procs"))
	killAll(procs)
	if terr := writeFile(state, "THAWED"); err == nil {
		err = terr
	}
	if err != nil {
		return err
	}
	return v.waitEmpty(ctx, rel)
}

func (v *v1Backend) waitEmpty(ctx context.Context, rel string) error {
	for i := 0; ; i++ {
		var left []int
		var where string
		for _, h := range v.hier {
			d := join(h.base, rel)
			p, err := readPids(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				return err
			}
			if len(p) > 0 {
				left, where = p, d
				break
			}
		}
		if len(left) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return &NotEmptyError{Path: where, Procs: left}
		}
		// Members that appeared after the freeze (none should) get killed too.
		killAll(left)
		sleepCtx(ctx, backoff(i))
	}
}

// empty reports whether nothing runs in the group, as cheaply as that can
// be known. pids.current, a counter read from a kept-open file, is 0 only
// when no task is charged to the group: a task is charged from its fork
// (or its move in) until it is reaped, so no process, thread or zombie is
// left. That is the common case, and it costs one read instead of the
// open, list and close of cgroup.procs (BenchmarkKillEmptyGroup). Any
// other count, such as a zombie whose reaper has not run yet, or no pids
// hierarchy, is settled by the freezer's list.
func (v *v1Backend) empty(rel string) (bool, error) {
	if d := v.dir("pids", rel); d != "" {
		if b, err := v.files.read(filepath.Join(d, "pids.current")); err == nil && strings.TrimSpace(string(b)) == "0" {
			return true, nil
		}
	}
	procs, err := v.Procs(rel)
	return len(procs) == 0, err
}

// Procs reads the freezer hierarchy's list: every hierarchy holds the same
// processes, since the only way in is Spawn, which moves its thread into all
// of them before it forks, and a program cannot move itself (the tasks
// files are root's). The file is opened for every read: v1 keeps the list
// an open file has read for a second and serves it again from the start
// of the file (cgroup_pidlist_start), so a kept-open cgroup.procs would
// show processes that have since come or gone.
func (v *v1Backend) Procs(rel string) ([]int, error) {
	return readPids(filepath.Join(v.dir("freezer", rel), "cgroup.procs"))
}

func (v *v1Backend) Events(rel string) (Events, error) {
	oom, err := v.files.readKeyed(filepath.Join(v.dir("memory", rel), "memory.oom_control"), "oom_kill")
	if err != nil {
		return Events{}, err
	}
	pm, err := v.files.readKeyed(filepath.Join(v.dir("pids", rel), "pids.events"), "max")
	if err != nil {
		return Events{}, err
	}
	return Events{OOMKills: oom, PidsMax: pm}, nil
}

func (v *v1Backend) Remove(rel string) error {
	var first error
	for i := len(v.hier) - 1; i >= 0; i-- {
		d := join(v.hier[i].base, rel)
		v.files.forget(d)
		if err := rmdir(d); err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		v.mu.Lock()
		delete(v.locks, rel)
		v.mu.Unlock()
	}
	return first
}

func (v *v1Backend) Children(rel string) ([]string, error) {
	set := map[string]bool{}
	for _, h := range v.hier {
		c, err := children(join(h.base, rel))
		if err != nil {
			return nil, err
		}
		for _, n := range c {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
