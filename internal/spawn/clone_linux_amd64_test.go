//go:build cgo

package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// TestForkExecRefusesWhatItDoesNotImplement: a field of SysProcAttr that
// suserve's fork does not carry out is refused, not silently dropped.
func TestForkExecRefusesWhatItDoesNotImplement(t *testing.T) {
	for _, sys := range []*syscall.SysProcAttr{
		{Setsid: true, Chroot: "/"},
		{Setsid: true, Setpgid: true},
		{Setsid: true, Cloneflags: syscall.CLONE_NEWNS},
		{Setsid: true, AmbientCaps: []uintptr{1}},
		{Setsid: true, Credential: &syscall.Credential{NoSetGroups: true}},
		{Setsid: false},
	} {
		if _, err := forkExec("/bin/true", []string{"true"}, nil, "", nil, sys); err != syscall.EINVAL {
			t.Errorf("%+v: %v, want EINVAL", sys, err)
		}
	}
}

// noClone3Env marks the copy of TestForkExecFallsBackWhereClone3IsRefused
// that runs under the seccomp filter; its value is the errno the filter
// answers.
const noClone3Env = "SUSERVE_TEST_NO_CLONE3"

// TestForkExecFallsBackWhereClone3IsRefused: under a seccomp filter that
// answers clone3 with ENOSYS or EPERM, as container runtimes' default
// profiles did (and kernels before 5.3 answer ENOSYS), programs still
// start, with Go's fork. The filter cannot be taken off again, so it is
// installed in a copy of the test process, one for each errno.
func TestForkExecFallsBackWhereClone3IsRefused(t *testing.T) {
	errno := os.Getenv(noClone3Env)
	if errno == "" {
		for _, e := range []syscall.Errno{syscall.ENOSYS, syscall.EPERM} {
			testutil.RunCopy(t, fmt.Sprintf("under a filter that answers clone3 with %v", e), nil, noClone3Env+"="+strconv.Itoa(int(e)), probeEnv+"="+probePath)
		}
		return
	}
	n, err := strconv.Atoi(errno)
	if err != nil {
		t.Fatal(err)
	}
	want := syscall.Errno(n)
	refuseClone3(t, want)
	if _, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); e != want {
		t.Fatalf("clone3 under the filter: %v, want %v", e, want)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pidfd := -1
	for i := range 2 {
		pid, err := forkExec("/bin/echo", []string{"echo", "started"}, nil, "", []uintptr{w.Fd(), w.Fd(), w.Fd()},
			&syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd})
		if err != nil {
			t.Fatalf("fork %d: %v", i+1, err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			t.Fatalf("fork %d: wait %v, status %v", i+1, err, ws)
		}
		if pidfd < 0 {
			t.Errorf("fork %d: no pidfd", i+1)
		}
		syscall.Close(pidfd)
	}
	w.Close()
	if out, _ := io.ReadAll(r); string(out) != "started\nstarted\n" {
		t.Errorf("the programs wrote %q", out)
	}
	if !noClone3.Load() {
		t.Error("clone3 refused, yet not remembered")
	}
	// What suserve's fork refuses is refused still.
	if _, err := forkExec("/bin/true", []string{"true"}, nil, "", nil, &syscall.SysProcAttr{Setsid: true, Chroot: "/"}); err != syscall.EINVAL {
		t.Errorf("Chroot with Go's fork in its place: %v, want EINVAL", err)
	}
}

// refuseClone3 makes clone3 fail with errno in every thread of this
// process, from now on.
func refuseClone3(t *testing.T, errno syscall.Errno) {
	const auditArchX86_64 = 0xc000003e
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: auditArchX86_64, Jt: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE3, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		t.Fatalf("seccomp: %v", e)
	}
}

// BenchmarkForkUntilExec times suserve's fork and Go's from the call until
// the child has exec'd (both return then), taking turns in one run so that
// both see the same machine, as uid 61001 with the fields suserve sets.
// Reported: each fork's p50 and p90, and the ratio of the p50s.
func BenchmarkForkUntilExec(b *testing.B) {
	testutil.RequireRoot(b)
	null := devNull(b)
	forks := []func(string, []string, []string, string, []uintptr, *syscall.SysProcAttr) (int, error){forkExec, forkGo}
	var ds [2][]time.Duration
	for i := 0; i < 2*b.N; i++ {
		k := i % 2
		pidfd := -1
		attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd, Credential: rawCredential()}
		t0 := time.Now()
		pid, err := forks[k]("/bin/true", []string{"true"}, nil, "/", []uintptr{null.Fd(), null.Fd(), null.Fd()}, attr)
		ds[k] = append(ds[k], time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			b.Fatal(err)
		}
		syscall.Close(pidfd)
	}
	var p50 [2]float64
	for k, name := range []string{"suserve", "go"} {
		d := ds[k]
		slices.Sort(d)
		p50[k] = float64(d[len(d)/2].Microseconds())
		b.ReportMetric(p50[k], name+"-p50-µs")
		b.ReportMetric(float64(d[len(d)*9/10].Microseconds()), name+"-p90-µs")
	}
	b.ReportMetric(p50[0]/p50[1], "suserve/go-p50")
}

// TestForkExecChildRunsNoHandlerOfTheServer: from its fork to its exec the
// child shares the server's memory, so no handler of the server may run in
// it; its caught signals are back to their defaults before its signal mask
// opens. The exec is held (fanotify) and the child sent SIGUSR1, which the
// Go runtime catches and whose default is to terminate. Reset to default
// it is fatal, and a fatal signal ends the child's wait in its exec. With
// the server's handler in place the child would go on waiting.
func TestForkExecChildRunsNoHandlerOfTheServer(t *testing.T) {
	testutil.RequireRoot(t)
	if !caught(t, syscall.SIGUSR1) {
		t.Fatal("the test process does not catch SIGUSR1, so the test would show nothing")
	}
	// A SIGKILL ends a held exec on a kernel whose permission wait is
	// killable (fanotify's is on current kernels); where it is not, no
	// signal could show anything here.
	if !endsHeldExec(t, "calibration", syscall.SIGKILL) {
		t.Skip("a SIGKILL does not end an exec held by fanotify on this kernel, so a reset disposition cannot be seen")
	}
	for _, tt := range []struct {
		name    string
		inChild bool
	}{
		{"by clone3", false},
		{"by the child, where clone3 refuses CLONE_CLEAR_SIGHAND", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resetHandlersInChild(tt.inChild)
			defer resetHandlersInChild(false)
			if !endsHeldExec(t, fmt.Sprintf("held-%t", tt.inChild), syscall.SIGUSR1) {
				t.Errorf("SIGUSR1 did not end the child while its exec was held: a handler of the server was still in place")
			}
		})
	}
}

// endsHeldExec starts a copy of /bin/true with suserve's fork, holds its
// exec, sends the child sig, and reports whether the child ended, killed by
// sig, while its exec was still held (within 20 s).
func endsHeldExec(t *testing.T, name string, sig syscall.Signal) bool {
	t.Helper()
	prog := trueCopy(t, name)
	null := devNull(t)
	hold := testutil.HoldExec(t, prog)
	type forked struct {
		pid int
		err error
	}
	done := make(chan forked, 1)
	go func() {
		pid, err := forkExec(prog, []string{prog}, nil, "", []uintptr{null.Fd(), null.Fd(), null.Fd()},
			&syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL})
		done <- forked{pid, err}
	}()
	if err := syscall.Kill(hold.Wait(time.Minute), sig); err != nil {
		t.Fatal(err)
	}
	ended := true
	var f forked
	select {
	case f = <-done:
	case <-time.After(20 * time.Second):
		ended = false
		hold.Release()
		f = <-done
	}
	if f.err != nil {
		t.Fatalf("fork: %v", f.err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(f.pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if !ws.Signaled() || ws.Signal() != sig {
		t.Errorf("the child ended with status %v, want killed by %v", ws, sig)
	}
	return ended
}

// trueCopy is a copy of /bin/true named name, removed when t ends: a
// program file of its own for an exec hold.
func trueCopy(t *testing.T, name string) string {
	t.Helper()
	prog := filepath.Join(base, name)
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(prog) })
	return prog
}

// caught reports whether this process has a handler for sig (SigCgt).
func caught(t *testing.T, sig syscall.Signal) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(sig-1)) != 0
		}
	}
	t.Fatal("no SigCgt in /proc/self/status")
	return false
}

// TestStartExecReturnsBeforeTheExec: suserve's fork returns once its child
// exists, and what is left, the wait for the exec, holds no thread. Forty
// children whose execs are held at once (more than the pool keeps stacks
// for) are all started, and the process has about the threads it had;
// each child holds its status pipe's write end in its exec. Once the execs
// go on, each wait reports the exec done and each program exits 0.
func TestStartExecReturnsBeforeTheExec(t *testing.T) {
	testutil.RequireRoot(t)
	prog := trueCopy(t, "held-start")
	null := devNull(t)
	hold := testutil.HoldExec(t, prog)
	threads := func() int {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		return len(tasks)
	}
	before := threads()

	const n = 40
	type child struct {
		s     started
		pidfd int
	}
	done := make(chan []child, 1)
	go func() {
		var cs []child
		for range n {
			c := child{pidfd: -1}
			var err error
			c.s, err = startExec(prog, []string{prog}, nil, "", []uintptr{null.Fd(), null.Fd(), null.Fd()},
				&syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, PidFD: &c.pidfd})
			if err != nil {
				t.Errorf("start %d: %v", len(cs), err)
				break
			}
			cs = append(cs, c)
		}
		done <- cs
	}()
	held := map[int]bool{}
	for range n {
		held[hold.Wait(20*time.Second)] = true
	}
	var cs []child
	select {
	case cs = <-done:
	case <-time.After(20 * time.Second):
		hold.Release()
		t.Fatal("the starts had not returned while their children's execs were held")
	}
	defer hold.Release()
	if len(cs) != n {
		t.FailNow()
	}
	if grew := threads() - before; grew > n/4 {
		t.Errorf("%d execs held, and the process has %d threads more: the waits hold threads", n, grew)
	}
	for _, c := range cs {
		if !held[c.s.pid] {
			t.Errorf("pid %d was started but its exec is not one held", c.s.pid)
		}
		if _, pipes := testutil.Descriptors(t, c.s.pid); pipes != 1 {
			t.Errorf("pid %d, held in its exec, has %d status pipes open, want 1: closed before the exec?", c.s.pid, pipes)
		}
	}

	hold.Release()
	for _, c := range cs {
		if err := c.s.wait(context.Background()); err != nil {
			t.Errorf("pid %d: wait: %v", c.s.pid, err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(c.s.pid, &ws, 0, nil); err != nil {
			t.Errorf("pid %d: %v", c.s.pid, err)
		} else if !ws.Exited() || ws.ExitStatus() != 0 {
			t.Errorf("pid %d ended with %v, want exit status 0", c.s.pid, ws)
		}
		syscall.Close(c.pidfd)
	}
}

// TestAStalledExecEndsWithItsContext: a child whose exec does not return
// (held here, as one on a network filesystem that has stopped answering
// would not) is killed when the context it was started with ends: the
// spawner's is the front's connection, so a front that dies takes such a
// child with it. Start returns the context's error, the child is reaped
// and its cell slot released. With suserve's fork, on one P; Go's fork
// waits for the exec inside the kernel, where no context reaches.
func TestAStalledExecEndsWithItsContext(t *testing.T) {
	testutil.RequireRoot(t)
	if !endsHeldExec(t, "calibration-ctx", syscall.SIGKILL) {
		t.Skip("a SIGKILL does not end an exec held by fanotify on this kernel")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f := newFixture(t)
	cells := &countingCells{}
	f.l.Cells = cells
	prog := f.probe("held")
	hold := testutil.HoldExec(t, prog)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		p   *Process
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := f.l.Start(ctx, f.spec(prog))
		done <- result{p, err}
	}()
	pid := hold.Wait(time.Minute)
	cancel()
	select {
	case r := <-done:
		if r.p != nil {
			r.p.Kill()
			t.Fatal("Start returned a process, want the context's error")
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Start: %v, want %v", r.err, context.Canceled)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Start had not returned 20 s after its context ended while the exec was held")
	}
	if st := procStat(pid); st != "" {
		t.Errorf("the held child %d is still there, in state %s", pid, st)
	}
	if n := cells.released.Load(); n != 1 {
		t.Errorf("%d slots released, want 1", n)
	}
}

// countingCells gives out slots that place nothing and count their
// releases.
type countingCells struct{ released atomic.Int64 }

func (c *countingCells) Acquire(context.Context, string) (Slot, error) {
	return countingSlot{c: c}, nil
}

type countingSlot struct {
	nullSlot
	c *countingCells
}

func (s countingSlot) Release() { s.c.released.Add(1) }
