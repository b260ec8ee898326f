package spawn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// TestOnlyStandardDescriptorsReachTheProgram, with each fork: suserve's on
// one P, Go's on more (startWith).
func TestOnlyStandardDescriptorsReachTheProgram(t *testing.T) {
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			f := newFixture(t)
			// An inheritable descriptor in the server, as systemd's
			// LISTEN_FDS are.
			fd, err := unix.Open(os.DevNull, unix.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			out, err := f.run(f.spec(f.probe("p"), "fds"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) != "[0 1 2]" {
				t.Fatalf("the program has descriptors %s, want [0 1 2]", out)
			}
		})
	}
}

func TestScriptGetsItsOwnFileAsDescriptor3AndNothingElse(t *testing.T) {
	f := newFixture(t)
	probe := f.probe("probe")
	p := f.file("s", "#!/bin/sh\nreadlink /proc/$$/fd/3\nexec "+probe+" fds\n", 0o755)
	out, err := f.run(f.spec(p))
	if err != nil {
		t.Fatal(err)
	}
	if want := p + "\n[0 1 2 3]\n"; out != want {
		t.Fatalf("the script reports %q, want %q (its own file as fd 3, nothing else)", out, want)
	}
}

func TestProgramStartsWithUmask022(t *testing.T) {
	f := newFixture(t)
	out, err := f.run(f.spec(f.probe("p"), "umask"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "0022" {
		t.Fatalf("umask %q, want 0022", out)
	}
}

func TestWorkingDirectory(t *testing.T) {
	f := newFixture(t)
	p := f.probe("sub/p")
	other, err := os.MkdirTemp(base, "wd-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)
	os.Chmod(other, 0o755)
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"empty is the program's directory", "", filepath.Dir(p)},
		{"the program's directory named", filepath.Dir(p), filepath.Dir(p)},
		{"another directory", other, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.spec(p, "cwd")
			s.Dir = tc.dir
			out, err := f.run(s)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) != tc.want {
				t.Fatalf("cwd %q, want %q", out, tc.want)
			}
		})
	}
}

func TestMissingWorkingDirectoryIsDiagnosed(t *testing.T) {
	f := newFixture(t)
	s := f.spec(f.probe("p"))
	s.Dir = filepath.Join(f.dir, "nowhere")
	_, err := f.run(s)
	failure(t, err, BadDir)
}

// TestEnvironmentIsFilteredAndIdentityVariablesReplaced: of a request's
// environment only the CGI names reach the program; HOME, USER, LOGNAME
// and PATH are the identity's, and pass_env's variables are the server's
// own, whatever the request (or a compromised front) says.
func TestEnvironmentIsFilteredAndIdentityVariablesReplaced(t *testing.T) {
	f := newFixture(t)
	t.Setenv("SITE_MOTD", "from the host")
	f.l.PassEnv = []string{"SITE_MOTD", "SITE_UNSET"}
	s := f.spec(f.probe("p"), "env")
	s.Env = []string{"HOME=/evil", "USER=evil", "LOGNAME=evil", "PATH=/evil", "LD_PRELOAD=/evil.so",
		"BASH_ENV=/evil", "HTTP_PROXY=http://evil", "HTTP_ACCEPT=text/html", "QUERY_STRING=a=b",
		"SITE_MOTD=forged", "SITE_UNSET=forged", "NOT_PASSED=1"}
	out, err := f.run(s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	id, _, err := f.l.resolve(f.who)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"HOME": id.Home, "USER": id.Name, "LOGNAME": id.Name, "PATH": DefaultPath,
		"HTTP_ACCEPT": "text/html", "QUERY_STRING": "a=b", "SITE_MOTD": "from the host"}
	if len(got) != len(want) {
		t.Errorf("environment %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

func TestExitStatusIsReported(t *testing.T) {
	f := newFixture(t)
	p := f.probe("p")
	if _, err := f.run(f.spec(p, "exit", "0")); err != nil {
		t.Fatalf("exit 0: %v, want nil", err)
	}
	_, err := f.run(f.spec(p, "exit", "3"))
	fl := failure(t, err, Exited)
	if fl.Exit != 3 || fl.ExitCode() != 3 || fl.HTTPStatus() != http.StatusBadGateway || fl.Error() != "exited with status 3" {
		t.Fatalf("failure %+v (%q)", fl, fl.Error())
	}
	if ws, ok := fl.Sys().(syscall.WaitStatus); !ok || ws.ExitStatus() != 3 {
		t.Fatalf("Sys() = %v", fl.Sys())
	}
}

func TestKilledBySignalIsReported(t *testing.T) {
	f := newFixture(t)
	_, err := f.run(f.spec(f.probe("p"), "signal"))
	fl := failure(t, err, Signaled)
	if fl.Signal != syscall.SIGTERM || fl.Killed || fl.Cause() != "killed by signal" || fl.Error() != "killed by signal SIGTERM" {
		t.Fatalf("failure %+v (%q)", fl, fl.Error())
	}
}

// startProbe starts the probe with args and returns the process and the
// first line it prints.
func startProbe(t *testing.T, f *fixture, ctx context.Context, args ...string) (*Process, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	s := f.spec(f.probe("p"), args...)
	s.Stdout = w
	p, err := f.l.Start(ctx, s)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the probe's output: %v", err)
	}
	return p, strings.TrimSpace(line)
}

func TestKillKillsTheBackgroundGrandchild(t *testing.T) {
	f := newFixture(t)
	p, line := startProbe(t, f, context.Background(), "bg", "stay")
	child, err := strconv.Atoi(line)
	if err != nil {
		t.Fatal(line)
	}
	p.Kill()
	fl := failure(t, p.Wait(), Signaled)
	if fl.Signal != syscall.SIGKILL || !fl.Killed {
		t.Fatalf("failure %+v", fl)
	}
	pidGone(t, child)
}

func TestKillAfterWaitKillsWhatTheProgramLeftRunning(t *testing.T) {
	f := newFixture(t)
	p, line := startProbe(t, f, context.Background(), "bg", "exit")
	child, _ := strconv.Atoi(line)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if st := procStat(child); st == "" || st == "Z" {
		t.Fatalf("the background child %d should still run before Kill (state %q)", child, st)
	}
	p.Kill()
	pidGone(t, child)
	p.Kill() // again, after reaping: nothing to do, nothing signalled
	if err := p.Wait(); err != nil {
		t.Fatalf("second Wait: %v", err)
	}
}

func TestKillIsSafeConcurrentlyWithWait(t *testing.T) {
	f := newFixture(t)
	p, _ := startProbe(t, f, context.Background(), "bg", "stay")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); p.Kill() }()
		go func() { defer wg.Done(); errs <- p.Wait() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		failure(t, err, Signaled)
	}
}

func TestContextEndKillsTheTree(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	p, line := startProbe(t, f, ctx, "bg", "stay")
	child, _ := strconv.Atoi(line)
	cancel()
	failure(t, p.Wait(), Signaled)
	pidGone(t, child)
}

func TestStartWithEndedContextStartsNothing(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.l.Start(ctx, f.spec(f.probe("p"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestExecFailuresAreDiagnosed(t *testing.T) {
	f := newFixture(t)
	notExec := f.file("lib/not-exec", "#!/bin/sh\n", 0o644)
	for _, tc := range []struct {
		name    string
		path    string
		cause   Cause
		content string // detail must contain
	}{
		{"missing file", filepath.Join(f.dir, "missing"), NotFound, "no such file"},
		{"missing interpreter", f.file("bad-interp", "#!/usr/bin/pyhton3 -u\nprint(1)\n", 0o755), BadInterpreter,
			"line 1: #!/usr/bin/pyhton3 -u — the interpreter /usr/bin/pyhton3 does not exist"},
		{"interpreter ends in CR", f.file("crlf", "#!/bin/sh\r\necho hi\r\n", 0o755), InterpreterCR,
			`line 1: #!/bin/sh\r — the interpreter path ends in a carriage return (the file has Windows line endings)`},
		{"argument ends in CR", f.file("crlf-arg", "#!/bin/sh -e\r\necho hi\r\n", 0o755), InterpreterCR,
			`line 1: #!/bin/sh -e\r — the #! line's argument ends in a carriage return (the file has Windows line endings)`},
		{"interpreter not executable", f.file("interp-not-exec", "#!"+notExec+"\n", 0o755), BadInterpreter,
			"the interpreter " + notExec + " is not executable (mode 0644)"},
		{"empty #! line", f.file("empty-interp", "#!\n", 0o755), ExecFormat, "names no interpreter"},
		{"no #! and not a binary", f.file("text", "echo hello\n", 0o755), ExecFormat,
			`no #! line and not a binary this kernel runs (first bytes "echo hello\n")`},
		{"empty file", f.file("empty", "", 0o755), ExecFormat, "the file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.run(f.spec(tc.path))
			fl := failure(t, err, tc.cause)
			if !strings.Contains(fl.Detail, tc.content) {
				t.Fatalf("detail %q does not contain %q", fl.Detail, tc.content)
			}
			if fl.HTTPStatus() != http.StatusBadGateway {
				t.Fatalf("status %d, want 502", fl.HTTPStatus())
			}
		})
	}
}

func TestNoexecMountIsDiagnosed(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	mnt := filepath.Join(f.dir, "noexec")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOEXEC, "mode=0755"); err != nil {
		t.Skipf("cannot mount a noexec tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	p := f.file("noexec/s", "#!/bin/sh\necho hi\n", 0o755)
	_, err := f.run(f.spec(p))
	fl := failure(t, err, NoExecMount)
	if !strings.Contains(fl.Detail, "mounted noexec") {
		t.Fatalf("detail %q", fl.Detail)
	}
}

// TestExecDescriptorOutlivesTheChildsDescriptorShuffle lays out descriptors
// as concurrent requests leave them: the program's streams sit just below
// free numbers, with holes below them that other requests' closes left.
// The checked program's descriptor then lands just above the streams and
// the status pipe of the fork in a hole below them, which is where the
// child of ForkExec moves that pipe before it execs.
func TestExecDescriptorOutlivesTheChildsDescriptorShuffle(t *testing.T) {
	f := newFixture(t)
	prog := f.probe("p")
	openNull := func() int {
		fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	// Fill every free number below 32, so that the layout does not depend
	// on what the test process holds.
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for {
		fd := openNull()
		held = append(held, fd)
		if fd >= 32 {
			break
		}
	}
	var holes []int
	for range 3 {
		holes = append(holes, openNull())
	}
	var stdio [3]*os.File
	for i := range stdio {
		stdio[i] = os.NewFile(uintptr(openNull()), "null")
		defer stdio[i].Close()
	}
	for _, fd := range holes {
		unix.Close(fd)
	}
	s := f.spec(prog)
	s.Stdin, s.Stdout, s.Stderr = stdio[0], stdio[1], stdio[2]
	p, err := f.l.Start(context.Background(), s)
	if err != nil {
		t.Fatalf("start with streams on descriptors %d-%d: %v", stdio[0].Fd(), stdio[2].Fd(), err)
	}
	p.Kill()
	_ = p.Wait()
}

// TestConcurrentStartsWithTheirOwnStdioAllSucceed starts a binary from many
// goroutines at once, each start with standard streams of its own opened
// just before it and closed just after, as the gateway's requests do. The
// descriptor numbers of the streams then move up and down among the
// checked program's, which is what made the child overwrite the descriptor
// it executes through (an exec of a pipe: EACCES).
func TestConcurrentStartsWithTheirOwnStdioAllSucceed(t *testing.T) {
	f := newFixture(t)
	prog := f.probe("p")
	const goroutines, starts = 16, 100
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
	)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range starts {
				// Three numbers below the streams, freed just before
				// the start, as other requests' ends free them.
				var spacers, stdio [3]*os.File
				for _, fs := range []*[3]*os.File{&spacers, &stdio} {
					for i := range fs {
						nf, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
						if err != nil {
							t.Error(err)
							return
						}
						fs[i] = nf
					}
				}
				for _, nf := range spacers {
					nf.Close()
				}
				s := f.spec(prog)
				s.Stdin, s.Stdout, s.Stderr = stdio[0], stdio[1], stdio[2]
				p, err := f.l.Start(context.Background(), s)
				for _, nf := range stdio {
					nf.Close()
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				p.Kill()
				_ = p.Wait()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d starts failed; the first: %v", len(failures), goroutines*starts, failures[0])
	}
}
