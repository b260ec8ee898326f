package cell

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// v2Backend is cgroup v2: one hierarchy, limits through the controllers the
// base offers (none on a hybrid host's unified mount), placement with
// clone3(CLONE_INTO_CGROUP), kill with cgroup.kill.
type v2Backend struct {
	base  string
	ctrls []string // of v2Wanted, those the base offers

	mu      sync.Mutex
	enabled map[string]bool // directories whose cgroup.subtree_control has ctrls
	files   *controlFiles
}

func newV2(base string, available []string) *v2Backend {
	v := &v2Backend{base: base, enabled: map[string]bool{}, files: newControlFiles()}
	for _, c := range v2Wanted {
		if contains(available, c) {
			v.ctrls = append(v.ctrls, c)
		}
	}
	return v
}

func (v *v2Backend) Name() string   { return Cgroup2 }
func (v *v2Backend) Enforces() bool { return contains(v.ctrls, "memory") }
func (v *v2Backend) Base() string   { return v.base }

// enable turns the controllers on for dir's children. cgroup v2's
// "no internal processes" rule makes this fail with EBUSY when dir holds
// processes and is not the root; the error names the file so the operator
// can give suserve a delegated subtree (systemd Delegate=yes).
func (v *v2Backend) enable(dir string) error {
	if len(v.ctrls) == 0 {
		return nil
	}
	v.mu.Lock()
	done := v.enabled[dir]
	v.mu.Unlock()
	if done {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+strings.Join(v.ctrls, " +")); err != nil {
		return err
	}
	v.mu.Lock()
	v.enabled[dir] = true
	v.mu.Unlock()
	return nil
}

func (v *v2Backend) Create(rel string, lim *Limits) error {
	dir := join(v.base, rel)
	// Every ancestor between the base and the new group must pass the
	// controllers down, or the group has no limit files.
	for p := filepath.Dir(dir); len(p) >= len(v.base); p = filepath.Dir(p) {
		if err := v.enable(p); err != nil {
			return err
		}
		if p == v.base {
			break
		}
	}
	// A file looked for before the group existed is known missing: forget
	// that.
	v.files.forget(dir)
	if err := mkdir(dir); err != nil {
		return err
	}
	if lim == nil || len(v.ctrls) == 0 {
		return nil
	}
	return v.setLimits(dir, *lim)
}

func (v *v2Backend) setLimits(dir string, lim Limits) error {
	if contains(v.ctrls, "memory") && lim.Memory > 0 {
		// memory.high a sixteenth below memory.max: the kernel throttles and
		// reclaims the cell before the OOM killer has to act, so a program
		// near its limit slows down instead of dying at once.
		high := lim.Memory - lim.Memory/16
		if err := writeFile(filepath.Join(dir, "memory.max"), strconv.FormatInt(lim.Memory, 10)); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "memory.high"), strconv.FormatInt(high, 10)); err != nil {
			return err
		}
		// Swap off for the cell, so memory.max is the whole truth; a kernel
		// without swap accounting has no file, and then there is nothing to
		// turn off.
		if err := writeFile(filepath.Join(dir, "memory.swap.max"), "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if contains(v.ctrls, "pids") && lim.Pids > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), strconv.FormatInt(lim.Pids, 10)); err != nil {
			return err
		}
	}
	if contains(v.ctrls, "cpu") && lim.CPUWeight > 0 {
		w := min(max(lim.CPUWeight, 1), 10000)
		if err := writeFile(filepath.Join(dir, "cpu.weight"), strconv.FormatUint(w, 10)); err != nil {
			return err
		}
	}
	return nil
}

// Spawn gives clone3's CLONE_INTO_CGROUP the group's directory (kept open,
// see controlFiles): the kernel creates the child inside the group, so no
// instruction of it runs elsewhere, at no measurable cost. The fork gets a
// duplicate of the kept descriptor: a fork lasts until the child execs,
// which can be long (a program on a network filesystem that has stopped
// answering), and holding the files' read lock that long would hold every
// other cell's first open and every delete, and behind them every spawn.
func (v *v2Backend) Spawn(rel string, fn SpawnFunc) (int, error) {
	dir := join(v.base, rel)
	fd := -1
	err := v.files.use(dir, unix.O_RDONLY|unix.O_DIRECTORY, func(kept int) error {
		var err error
		fd, err = unix.FcntlInt(uintptr(kept), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return 0, &FileError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return fn(&syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd})
}

func (v *v2Backend) Kill(ctx context.Context, rel string) error {
	dir := join(v.base, rel)
	// An unpopulated group (the common case: the program exited and left
	// nothing) needs neither the kill nor the inotify wait.
	if b, err := v.files.read(filepath.Join(dir, "cgroup.events")); err == nil && keyed(b, "populated") == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err != nil {
		return err
	}
	return waitUnpopulated(ctx, dir)
}

// waitUnpopulated waits for "populated 0" in dir's cgroup.events. The
// kernel signals every change of the file as an inotify IN_MODIFY, so the
// wait costs no polling; the poll timeout only bounds how late ctx is seen.
func waitUnpopulated(ctx context.Context, dir string) error {
	events := filepath.Join(dir, "cgroup.events")
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return &FileError{Op: "inotify", Path: events, Err: err}
	}
	defer unix.Close(ifd)
	if _, err := unix.InotifyAddWatch(ifd, events, unix.IN_MODIFY); err != nil {
		return &FileError{Op: "inotify", Path: events, Err: err}
	}
	buf := make([]byte, 4096)
	for {
		b, err := readFile(events)
		if err != nil {
			return err
		}
		if keyed(b, "populated") == 0 {
			return nil
		}
		if ctx.Err() != nil {
			procs, _ := readPids(filepath.Join(dir, "cgroup.procs"))
			return &NotEmptyError{Path: dir, Procs: procs}
		}
		wait := 100 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(dl), time.Millisecond))
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}, int(wait.Milliseconds())+1)
		for {
			if n, _ := unix.Read(ifd, buf); n <= 0 {
				break
			}
		}
	}
}

func (v *v2Backend) Procs(rel string) ([]int, error) {
	b, err := v.files.read(filepath.Join(join(v.base, rel), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	return parsePids(b), nil
}

func (v *v2Backend) Events(rel string) (Events, error) {
	dir := join(v.base, rel)
	oom, err := v.files.readKeyed(filepath.Join(dir, "memory.events"), "oom_kill")
	if err != nil {
		return Events{}, err
	}
	pm, err := v.files.readKeyed(filepath.Join(dir, "pids.events"), "max")
	if err != nil {
		return Events{}, err
	}
	return Events{OOMKills: oom, PidsMax: pm}, nil
}

func (v *v2Backend) Remove(rel string) error {
	dir := join(v.base, rel)
	v.mu.Lock()
	delete(v.enabled, dir)
	v.mu.Unlock()
	v.files.forget(dir)
	return rmdir(dir)
}

func (v *v2Backend) Children(rel string) ([]string, error) {
	return children(join(v.base, rel))
}
