//go:build cgo

package spawn

/*
#define _GNU_SOURCE // pipe2
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <linux/prctl.h>

// The fork that does not hold a Go processor. See startExec below for why it
// exists; this is the C half. Everything the child runs is here, and it
// makes raw system calls only: it shares the parent's memory (CLONE_VM) and
// runs on a stack of its own until its execve, so it must not touch libc's
// locks, errno or allocator. It calls nothing: su_sys is always inlined, and
// su_child is kept free of instrumentation (stack protector, sanitizers,
// profiling hooks) whatever CGO_CFLAGS say.

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define SU_CLONE_PIDFD 0x00001000ULL
#define SU_CLONE_VM 0x00000100ULL
#define SU_CLONE_VFORK 0x00004000ULL
#define SU_CLONE_INTO_CGROUP 0x200000000ULL
#define SU_CLONE_CLEAR_SIGHAND 0x100000000ULL
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct su_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
	uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct su_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

struct su_spawn {
	const char *path;
	char **argv, **envp;
	const char *dir;
	int *fds;
	int nfds;
	int cred;
	uint32_t uid, gid;
	const uint32_t *groups;
	long ngroups;
	int pdeathsig;
	long ppid;
	uint64_t mask;
	struct rlimit nofile;
	int restore_nofile;
	int keep[2]; // descriptors at or above nfds that stay open until the exec, ascending; -1 for none
	int reset_handlers; // the child resets caught signals itself (no CLONE_CLEAR_SIGHAND)
	volatile long err;
};

static inline __attribute__((always_inline)) long su_sys(long n, long a, long b, long c, long d) {
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
		: "=a"(ret)
		: "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
		: "rcx", "r11", "memory");
	return ret;
}

// su_nofile is RLIMIT_NOFILE as the process started with. Go's syscall
// package raises the soft limit when it initialises and puts the original
// back in the children of its own fork; this constructor runs before that,
// so programs get the limit suserve was given, as they did before. Go does
// not restore it after the process sets the limit itself
// (syscall.Setrlimit); suserve does not, and the child's test (the limit
// still at max-1/max) is Go's.
static struct rlimit su_nofile;
static int su_nofile_ok;

__attribute__((constructor)) static void su_nofile_init(void) {
	if (getrlimit(RLIMIT_NOFILE, &su_nofile) == 0 && su_nofile.rlim_max > 0 &&
	    su_nofile.rlim_cur < su_nofile.rlim_max - 1)
		su_nofile_ok = 1;
}

static __attribute__((noreturn, used, noinline, no_instrument_function, no_stack_protector,
		       no_sanitize("address", "thread", "undefined"))) void su_child(struct su_spawn *s) {
	long r;
	int i, nextfd, lo;

	if ((r = su_sys(SYS_setsid, 0, 0, 0, 0)) < 0)
		goto fail;
	// No handler of the server may run in the child, which shares its
	// memory: every caught signal goes back to its default. Ignored ones
	// stay ignored, as execve would leave them. clone3 does this with
	// CLONE_CLEAR_SIGHAND; before Linux 5.5 the child reads and resets
	// each one, some 120 system calls.
	for (i = 1; s->reset_handlers && i <= 64; i++) {
		struct su_sigaction old, dfl = {0};
		if (i == SIGKILL || i == SIGSTOP)
			continue;
		if (su_sys(SYS_rt_sigaction, i, 0, (long)&old, 8) < 0)
			continue;
		if (old.handler == (void *)SIG_DFL || old.handler == (void *)SIG_IGN)
			continue;
		su_sys(SYS_rt_sigaction, i, (long)&dfl, 0, 8);
	}
	if (s->cred) {
		if ((r = su_sys(SYS_setgroups, s->ngroups, (long)s->groups, 0, 0)) < 0)
			goto fail;
		if ((r = su_sys(SYS_setgid, s->gid, 0, 0, 0)) < 0)
			goto fail;
		if ((r = su_sys(SYS_setuid, s->uid, 0, 0, 0)) < 0)
			goto fail;
	}
	if (s->dir && (r = su_sys(SYS_chdir, (long)s->dir, 0, 0, 0)) < 0)
		goto fail;
	// After the identity switch, which clears the parent-death signal.
	if (s->pdeathsig) {
		if ((r = su_sys(SYS_prctl, PR_SET_PDEATHSIG, s->pdeathsig, 0, 0)) < 0)
			goto fail;
		if (su_sys(SYS_getppid, 0, 0, 0, 0) != s->ppid)
			su_sys(SYS_kill, su_sys(SYS_getpid, 0, 0, 0, 0), s->pdeathsig, 0, 0);
	}
	// The descriptors onto 0..nfds-1, as Go's own fork does: first every
	// one whose number is below its slot moves above them all, then each
	// is duplicated onto its slot without close-on-exec.
	nextfd = s->nfds;
	for (i = 0; i < s->nfds; i++)
		if (s->fds[i] > nextfd)
			nextfd = s->fds[i];
	nextfd++;
	for (i = 0; i < s->nfds; i++) {
		if (s->fds[i] < i) {
			if ((r = su_sys(SYS_dup3, s->fds[i], nextfd, O_CLOEXEC, 0)) < 0)
				goto fail;
			s->fds[i] = nextfd++;
		}
	}
	for (i = 0; i < s->nfds; i++) {
		if (s->fds[i] == -1) {
			su_sys(SYS_close, i, 0, 0, 0);
			continue;
		}
		if (s->fds[i] == i)
			r = su_sys(SYS_fcntl, i, F_SETFD, 0, 0);
		else
			r = su_sys(SYS_dup3, s->fds[i], i, 0, 0);
		if (r < 0)
			goto fail;
	}
	for (i = s->nfds; i < 3; i++)
		su_sys(SYS_close, i, 0, 0, 0);
	// Close-on-exec closes the rest only once the exec has gone too far
	// to fail, and an exec can stall before that (a program on a network
	// filesystem that has stopped answering): all that while the child
	// would hold a copy of every descriptor the spawner had, other
	// requests' pipes among them, and those requests would see no end of
	// their program's output. So the child closes them now, all but the
	// one its exec names and its status pipe. (Before 5.9, close_range is
	// ENOSYS: they stay close-on-exec, as with Go's fork.)
	lo = s->nfds;
	for (i = 0; i < 2; i++) {
		if (s->keep[i] < lo)
			continue;
		if (s->keep[i] > lo)
			su_sys(SYS_close_range, lo, s->keep[i] - 1, 0, 0);
		lo = s->keep[i] + 1;
	}
	su_sys(SYS_close_range, lo, ~0U, 0, 0);
	if (s->restore_nofile) {
		struct rlimit cur;
		if (su_sys(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, (long)&cur) < 0 ||
		    (cur.rlim_cur == s->nofile.rlim_max - 1 && cur.rlim_max == s->nofile.rlim_max))
			su_sys(SYS_prlimit64, 0, RLIMIT_NOFILE, (long)&s->nofile, 0);
	}
	su_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&s->mask, 0, 8);
	r = su_sys(SYS_execve, (long)s->path, (long)s->argv, (long)s->envp, 0);
fail:
	__atomic_store_n(&s->err, -r, __ATOMIC_RELEASE);
	for (;;)
		su_sys(SYS_exit, 253, 0, 0, 0);
}

// su_clone3 is clone3 whose child calls fn(arg) on the stack the arguments
// name. The child starts on that stack with the parent's registers, so it
// is entered here, in the same asm statement as the system call.
static long su_clone3(struct su_clone_args *ca, void (*fn)(struct su_spawn *), struct su_spawn *arg) {
	long ret;
	register void *r8 __asm__("r8") = (void *)fn;
	register void *r9 __asm__("r9") = (void *)arg;
	__asm__ volatile(
		"syscall\n\t"
		"testq %%rax, %%rax\n\t"
		"jnz 1f\n\t"
		"xorl %%ebp, %%ebp\n\t"
		"movq %%r9, %%rdi\n\t"
		"andq $-16, %%rsp\n\t"
		"callq *%%r8\n\t"
		"movl $60, %%eax\n\t"
		"movl $253, %%edi\n\t"
		"syscall\n\t"
		"hlt\n"
		"1:"
		: "=a"(ret)
		: "0"((long)SYS_clone3), "D"(ca), "S"(sizeof *ca), "r"(r8), "r"(r9)
		: "rcx", "r11", "memory", "cc");
	return ret;
}

// The children's stacks. The spawning thread does not wait for its child
// (no CLONE_VFORK), so each child has a stack of its own until it has
// exec'd or exited, and it goes back to the pool then. Each has a guard
// page below it. The pool keeps up to SU_STACKS; one more is unmapped when
// its child is done.
#define SU_STACK (64 * 1024)
#define SU_STACKS 32
static pthread_mutex_t su_stacks_mu = PTHREAD_MUTEX_INITIALIZER;
static char *su_stacks[SU_STACKS];
static int su_nstacks;

static char *su_stack_get(void) {
	char *p = 0;
	pthread_mutex_lock(&su_stacks_mu);
	if (su_nstacks > 0)
		p = su_stacks[--su_nstacks];
	pthread_mutex_unlock(&su_stacks_mu);
	if (p)
		return p;
	p = mmap(NULL, SU_STACK + 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	if (mprotect(p + 4096, SU_STACK, PROT_READ | PROT_WRITE) != 0) {
		munmap(p, SU_STACK + 4096);
		return 0;
	}
	return p + 4096;
}

static void su_stack_put(char *p) {
	pthread_mutex_lock(&su_stacks_mu);
	if (su_nstacks < SU_STACKS) {
		su_stacks[su_nstacks++] = p;
		p = 0;
	}
	pthread_mutex_unlock(&su_stacks_mu);
	if (p)
		munmap(p - 4096, SU_STACK + 4096);
}

// su_job is one spawn under way: everything its child reads until its
// exec, in one allocation that outlives su_spawn, and the child's stack.
// It is freed (su_job_free) once the status pipe has shown that the child
// exec'd or exited, so that the child no longer runs in this memory.
struct su_job {
	struct su_spawn s;
	char *stack;
};

static void su_job_free(struct su_job *j) {
	su_stack_put(j->stack);
	free(j);
}

// su_job_err is the errno of the step at which the child failed, or 0.
static long su_job_err(struct su_job *j) { return __atomic_load_n(&j->s.err, __ATOMIC_ACQUIRE); }

// su_clear_sighand is 1 while clone3 takes CLONE_CLEAR_SIGHAND, and 0
// once a kernel before 5.5 has refused it (EINVAL) and the retry without it
// succeeded.
static int su_clear_sighand = 1;

// su_reset_handlers_in_child makes the child reset its handlers itself, as
// on a kernel without CLONE_CLEAR_SIGHAND (on), or lets clone3 do it again.
static void su_reset_handlers_in_child(int on) { __atomic_store_n(&su_clear_sighand, !on, __ATOMIC_RELAXED); }

// su_spawn starts a child that execs, and returns its pid (or -errno) as
// soon as the child exists. *statusfd is then the read end of the child's
// status pipe (non-blocking, close-on-exec): it reads EOF once the child
// has exec'd or exited, and su_job_err tells which. The child holds the
// only write end, which close-on-exec closes after the exec's point of no
// return (and exit closes after the child has left this memory). *jobp is
// to be freed with su_job_free after that EOF, and not before.
static long su_spawn(const char *buf, int buflen, const int *offs, int nargv, int nenv, int pathoff, int diroff,
		     const int *fds, int nfds, int cred, uint32_t uid, uint32_t gid, const uint32_t *groups, int ngroups,
		     int pdeathsig, int ppid, int cgroupfd, int keep, int floor, int *pidfd, int *statusfd, struct su_job **jobp) {
	size_t nptrs = (size_t)nargv + 1 + nenv + 1;
	struct su_job *job;
	struct su_spawn *s;
	struct su_clone_args ca = {0};
	uint64_t all = ~0ULL, old = 0;
	char **ptrs, *strs;
	uint32_t *grp;
	int *fdv, p[2], w, i;
	long pid;

	job = calloc(1, sizeof *job + nptrs * sizeof(char *) + ((size_t)ngroups + 1) * sizeof(uint32_t) +
			    ((size_t)nfds + 1) * sizeof(int) + buflen);
	if (!job)
		return -ENOMEM;
	if (!(job->stack = su_stack_get())) {
		free(job);
		return -ENOMEM;
	}
	ptrs = (char **)(job + 1);
	grp = (uint32_t *)(ptrs + nptrs);
	fdv = (int *)(grp + ngroups + 1);
	strs = (char *)(fdv + nfds + 1);
	memcpy(strs, buf, buflen);
	memcpy(grp, groups, ngroups * sizeof(uint32_t));
	memcpy(fdv, fds, nfds * sizeof(int));
	for (i = 0; i < nargv + nenv; i++)
		ptrs[i + (i >= nargv)] = strs + offs[i];
	ptrs[nargv] = 0;
	ptrs[nargv + 1 + nenv] = 0;

	// The status pipe's write end goes to floor or above, out of the way
	// of the child's descriptor shuffle (execFloor).
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
		pid = -errno;
		su_job_free(job);
		return pid;
	}
	w = fcntl(p[1], F_DUPFD_CLOEXEC, floor);
	pid = w < 0 ? -errno : 0;
	close(p[1]);
	if (w < 0) {
		close(p[0]);
		su_job_free(job);
		return pid;
	}

	s = &job->s;
	*s = (struct su_spawn){
		.path = strs + pathoff, .argv = ptrs, .envp = ptrs + nargv + 1,
		.dir = diroff >= 0 ? strs + diroff : 0, .fds = fdv, .nfds = nfds,
		.cred = cred, .uid = uid, .gid = gid, .groups = grp, .ngroups = ngroups,
		.pdeathsig = pdeathsig, .ppid = ppid,
		.keep = {keep < w ? keep : w, keep < w ? w : keep},
		.nofile = su_nofile, .restore_nofile = su_nofile_ok,
	};

	ca.flags = SU_CLONE_VM | SU_CLONE_PIDFD;
	ca.pidfd = (uint64_t)(uintptr_t)pidfd;
	ca.exit_signal = SIGCHLD;
	ca.stack = (uint64_t)(uintptr_t)job->stack;
	ca.stack_size = SU_STACK;
	if (cgroupfd >= 0) {
		ca.flags |= SU_CLONE_INTO_CGROUP;
		ca.cgroup = cgroupfd;
	}
	if (__atomic_load_n(&su_clear_sighand, __ATOMIC_RELAXED))
		ca.flags |= SU_CLONE_CLEAR_SIGHAND;
	else
		s->reset_handlers = 1;
	// Every signal blocked on this thread from before the clone until the
	// child's handlers are back to default: none may run in the child.
	su_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8);
	s->mask = old;
	pid = su_clone3(&ca, su_child, s);
	if (pid == -22 && (ca.flags & SU_CLONE_CLEAR_SIGHAND)) { // EINVAL
		ca.flags &= ~SU_CLONE_CLEAR_SIGHAND;
		s->reset_handlers = 1;
		pid = su_clone3(&ca, su_child, s);
		if (pid >= 0)
			__atomic_store_n(&su_clear_sighand, 0, __ATOMIC_RELAXED);
	}
	su_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8);
	close(w);
	if (pid < 0) {
		close(p[0]);
		su_job_free(job);
		return pid;
	}
	*statusfd = p[0];
	*jobp = job;
	return pid;
}
*/
import "C"

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// selfPid is this process's pid, which the child compares with its parent's
// after setting its parent-death signal.
var selfPid = syscall.Getpid()

// noClone3 is set once clone3 has been found refused (clone3Once, or an
// ENOSYS from a fork); startExec is then Go's fork, which uses clone.
var noClone3 atomic.Bool

// clone3Once asks the kernel once whether clone3 can be called at all. A
// kernel that has it answers EINVAL to a call with no arguments; ENOSYS
// (before 5.3) or EPERM (a seccomp profile that refuses it: container
// runtimes' defaults did, with one errno or the other) mean Go's fork,
// which uses clone.
var clone3Once = sync.OnceFunc(func() {
	if _, _, e := syscall.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != syscall.EINVAL {
		noClone3.Store(true)
	}
})

// startExec starts a program as syscall.ForkExec does, for the fields of
// sys that suserve sets (Setsid, Pdeathsig, Credential, PidFD, UseCgroupFD
// and CgroupFD; anything else is refused with EINVAL), but returns as soon
// as the child exists, and waits for its exec in the runtime's poller.
//
// Go's own fork is a vfork: the calling thread stops until the child
// execs, and it stops still holding its P, outside the scheduler's notion
// of a system call. The spawner runs on one P below 16 CPUs (spawnerProcs in
// cmd/suserve), so there each spawn would hold every other spawn, reap and
// answer until its child had switched identity and exec'd, and an exec
// that blocked (a program on a network filesystem that has stopped
// answering) would stop the spawner. A vfork made in a cgo call fares
// little better on one P: the thread is in a system call for as long as
// the child takes to reach its exec, and on a busy host that is a wait
// for a CPU. The runtime's monitor (sysmon) takes the P from a thread it
// finds in a system call twice in a row, and each time it does it polls
// again after 20 µs instead of backing off to 10 ms. So long calls keep it
// polling, taking Ps away and handing them back, which costs more threads'
// wake-ups than the spawner's own work: with cgroup v1 cells, whose
// children wait for a CPU in their cell's group, the spawner ran at 8-15
// voluntary context switches a request, two thirds of them sysmon's, and
// 1.1-1.6 ms of CPU, against 2-4 and 0.65-0.8 ms when the monitor stayed
// asleep (32 connections of the bench's hello program on 2 CPUs), and
// the machine's CPU per request was 0.7 ms above the in-process server's.
//
// So the child here is a clone3 with CLONE_VM (it shares the server's
// memory until its exec, with no copy of the page tables) but without
// CLONE_VFORK: the call returns once the child exists, tens of
// microseconds. The child runs on a stack of its own from a pool, and
// reads only memory of its own spawn (su_job), never the Go heap. It holds
// the write end of a status pipe, which its exec closes (close-on-exec,
// after the exec's point of no return) or its exit does; the returned
// started waits for that EOF as a poller read, which holds no thread, and
// only then is the child's memory freed. Meanwhile v1's thread, which
// forked from inside the cell, is already home (cell.v1Backend.Spawn).
// In the bench, with v1 cells at 32 connections, the spawner went from
// 0.78 to 0.91 of the in-process server's requests per second (medians of
// three runs each, taking turns); with cells off and v2 cells it stayed
// level with it. The price is the wake-up: a vfork's parent is woken by
// the exec itself, and this one through the poller. From the call to the
// exec this fork takes about as long as Go's on an idle machine (0.93 of
// its p50 in BenchmarkForkUntilExec, where the vfork took 0.31); at one
// connection the bench showed no steady difference (v1 cells: +0.19 ms
// against +0.05 in one batch, +0.23 against +0.25 in another).
//
// The child does what Go's forkAndExecInChild1 does for these fields, in
// Go's order but for one step (every signal stays blocked until just
// before the exec), and reports a failure before exec as the errno of the
// step that failed. Two things differ: the kernel resets the child's
// signal handlers (CLONE_CLEAR_SIGHAND, where Go's child resets each one
// with a system call), and the child closes every descriptor it will not
// pass on before its exec (see su_child), where Go's leaves them to
// close-on-exec.
//
// syscall.ForkLock is not taken. It keeps a fork from catching a
// descriptor that another goroutine has created but not yet marked
// close-on-exec; suserve creates none that way (its descriptors are
// made close-on-exec atomically), and the child closes every descriptor
// it does not pass on, close-on-exec or not (from Linux 5.9). Another
// spawn's child may catch a copy of a status pipe's write end that
// exists while the two clone at once: it closes it with the rest, before
// its exec, and until then that status waits for it too.
func startExec(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (started, error) {
	if sys.Chroot != "" || sys.Setpgid || sys.Setctty || sys.Noctty || sys.Foreground || sys.Ptrace ||
		sys.Cloneflags != 0 || sys.Unshareflags != 0 || sys.UidMappings != nil || sys.GidMappings != nil ||
		len(sys.AmbientCaps) > 0 || (sys.Credential != nil && sys.Credential.NoSetGroups) || !sys.Setsid {
		return started{}, syscall.EINVAL
	}
	clone3Once()
	if noClone3.Load() {
		return startGo(argv0, argv, env, dir, files, sys)
	}
	// One buffer of NUL-terminated strings and their offsets, which the C
	// half copies into the child's memory.
	n := len(argv0) + len(dir) + 2
	for _, s := range argv {
		n += len(s) + 1
	}
	for _, s := range env {
		n += len(s) + 1
	}
	buf := make([]byte, 0, n)
	offs := make([]C.int, 0, len(argv)+len(env)+1)
	add := func(s string) C.int {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				return -1
			}
		}
		off := C.int(len(buf))
		buf = append(buf, s...)
		buf = append(buf, 0)
		return off
	}
	for _, list := range [][]string{argv, env} {
		for _, s := range list {
			o := add(s)
			if o < 0 {
				return started{}, syscall.EINVAL
			}
			offs = append(offs, o)
		}
	}
	pathOff := add(argv0)
	if pathOff < 0 || len(argv) == 0 {
		return started{}, syscall.EINVAL
	}
	dirOff := C.int(-1)
	if dir != "" {
		if dirOff = add(dir); dirOff < 0 {
			return started{}, syscall.EINVAL
		}
	}
	fds := make([]C.int, len(files)+1) // +1: never a nil pointer
	for i, f := range files {
		fds[i] = C.int(f)
	}
	var cred C.int
	var uid, gid C.uint32_t
	groups := make([]C.uint32_t, 1)
	ngroups := 0
	if c := sys.Credential; c != nil {
		cred, uid, gid = 1, C.uint32_t(c.Uid), C.uint32_t(c.Gid)
		if len(c.Groups) > 0 {
			groups = make([]C.uint32_t, len(c.Groups))
			for i, g := range c.Groups {
				groups[i] = C.uint32_t(g)
			}
			ngroups = len(c.Groups)
		}
	}
	cgroup := C.int(-1)
	if sys.UseCgroupFD {
		cgroup = C.int(sys.CgroupFD)
	}
	var pidfd C.int = -1
	var status C.int = -1
	var job *C.struct_su_job
	pid := C.su_spawn((*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf)), &offs[0], C.int(len(argv)), C.int(len(env)), pathOff, dirOff,
		&fds[0], C.int(len(files)), cred, uid, gid, &groups[0], C.int(ngroups),
		C.int(sys.Pdeathsig), C.int(selfPid), cgroup, C.int(execFD(argv0)), C.int(execFloor(files)), &pidfd, &status, &job)
	if pid == -C.long(syscall.ENOSYS) {
		// A kernel before 5.3, or a seccomp profile that refuses clone3
		// (container runtimes' defaults did, so that libc fell back to
		// clone): Go's fork, from now on.
		noClone3.Store(true)
		return startGo(argv0, argv, env, dir, files, sys)
	}
	if pid < 0 {
		return started{}, syscall.Errno(-pid)
	}
	fd := int(pidfd)
	if sys.PidFD != nil {
		*sys.PidFD = fd
	} else if fd >= 0 {
		syscall.Close(fd)
		fd = -1
	}
	return started{pid: int(pid), exec: func(ctx context.Context) error {
		// Until it is reaped the child's pid is ours: it cannot name
		// another process, and the kill is over before the reap. The
		// child calls setsid first, so its group is its pid from then on.
		killed := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(killed)
			_ = syscall.Kill(-int(pid), syscall.SIGKILL)
			_ = syscall.Kill(int(pid), syscall.SIGKILL)
		})
		errno, ok := awaitExec(int(status), job)
		var err error
		switch {
		case !stop():
			<-killed
			err = ctx.Err()
		case !ok || errno == 0:
			return nil
		default:
			err = errno
		}
		// The child exited before its exec, or was killed; it is ours
		// to reap.
		reap(int(pid))
		if fd >= 0 {
			syscall.Close(fd)
			*sys.PidFD = -1
		}
		return err
	}}, nil
}

// awaitExec waits for the EOF of a child's status pipe (fd, which it
// closes), frees the child's memory and returns the errno the child
// failed with, 0 once it has exec'd. Nothing is written to the pipe, so
// its read ends only at EOF; should it end otherwise, whether the child is
// done with its memory is unknown, and that memory is left allocated (ok
// is false).
func awaitExec(fd int, job *C.struct_su_job) (errno syscall.Errno, ok bool) {
	f := os.NewFile(uintptr(fd), "exec status")
	defer f.Close()
	var b [1]byte
	for {
		n, err := f.Read(b[:])
		switch {
		case err == io.EOF:
			errno = syscall.Errno(C.su_job_err(job))
			C.su_job_free(job)
			return errno, true
		case err != nil || n > 0:
			return 0, false
		}
	}
}

// resetHandlersInChild makes the child reset its signal handlers itself,
// as it does where clone3 refuses CLONE_CLEAR_SIGHAND (before Linux 5.5),
// or lets clone3 reset them again: so that tests can run both.
func resetHandlersInChild(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.su_reset_handlers_in_child(v)
}

// execFD is the descriptor an exec of path names (/proc/self/fd/N or
// /dev/fd/N), or -1.
func execFD(path string) int {
	for _, dir := range []string{"/proc/self/fd/", "/dev/fd/"} {
		if rest, ok := strings.CutPrefix(path, dir); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
				return n
			}
		}
	}
	return -1
}
