package spawn

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// runWorker starts s as a worker, collects its standard output and returns
// it with the error of StartWorker or of Wait.
func runWorker(t *testing.T, l *Local, s *WorkerSpec) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s.Stdout = w
	p, err := l.StartWorker(context.Background(), s)
	w.Close()
	if err != nil {
		return "", err
	}
	defer p.Kill()
	out, _ := io.ReadAll(r)
	return string(out), p.Wait()
}

func TestWorkerGetsItsDescriptorsEnvironmentAndIdentity(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	probe := f.probe("probe")
	sock, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	for _, tc := range []struct {
		name  string
		args  []string
		extra []*os.File
		want  func(string) bool
	}{
		{"runs as its identity", []string{"probe", "id"}, nil, func(s string) bool { return strings.HasPrefix(s, "61001 61001 ") }},
		{"inherits fds 0-2 and its extra files, nothing else", []string{"probe", "fds"}, []*os.File{sock}, func(s string) bool { return strings.TrimSpace(s) == "[0 1 2 3]" }},
		{"keeps the configured environment, with the identity's HOME and a fixed PATH", []string{"probe", "env"}, nil, func(s string) bool {
			return strings.Contains(s, "SUSERVE_SOCKET=/x.sock") && strings.Contains(s, "PHP_FCGI_CHILDREN=0") &&
				strings.Contains(s, "HOME=/home/alice") && strings.Contains(s, "PATH="+DefaultPath) && !strings.Contains(s, "PATH=/evil")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runWorker(t, f.l, &WorkerSpec{Path: probe, Args: tc.args, Identity: "alice", Dir: f.dir, ExtraFiles: tc.extra,
				Env: []string{"SUSERVE_SOCKET=/x.sock", "PHP_FCGI_CHILDREN=0", "PATH=/evil", "HOME=/evil"}})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(out) {
				t.Fatalf("output %q", out)
			}
		})
	}
}

func TestWorkerCommandFollowsTheOperatorsSymlinks(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	probe := f.probe("probe")
	link := filepath.Join(f.dir, "link")
	if err := os.Symlink(probe, link); err != nil {
		t.Fatal(err)
	}
	out, err := runWorker(t, f.l, &WorkerSpec{Path: link, Args: []string{"link", "id"}, Identity: "bob"})
	if err != nil || !strings.HasPrefix(out, "61002 ") {
		t.Fatalf("%q, %v", out, err)
	}
}

func TestWorkerSignalStopsItAndKillTakesItsTree(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	probe := f.probe("probe")
	p, err := f.l.StartWorker(context.Background(), &WorkerSpec{Path: probe, Args: []string{"probe", "sleep", "60"}, Identity: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ff := failure(t, p.Wait(), Signaled)
	if ff.Signal != syscall.SIGTERM || ff.Killed {
		t.Fatalf("ended by %v (killed by Kill: %v), want SIGTERM from Signal", ff.Signal, ff.Killed)
	}
	p.Kill()
	if err := p.Signal(syscall.SIGTERM); err != os.ErrProcessDone {
		t.Fatalf("Signal after the worker was reaped: %v, want os.ErrProcessDone", err)
	}
}

func TestWorkerCommandsAndIdentitiesThatBreakPolicyAreRefused(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	probe := f.probe("probe")
	b, err := os.ReadFile(probePath)
	if err != nil {
		t.Fatal(err)
	}
	bin := string(b)
	owned := f.file("owned", bin, 0o755)
	if err := os.Chown(owned, testutil.AliceUID, testutil.AliceUID); err != nil {
		t.Fatal(err)
	}
	open := f.file("open/probe", bin, 0o755)
	os.Chmod(filepath.Dir(open), 0o777)
	foreign := f.file("foreign/probe", bin, 0o755)
	os.Chown(filepath.Dir(foreign), testutil.BobUID, testutil.BobUID)
	sticky := f.file("sticky/probe", bin, 0o755)
	if err := unix.Chmod(filepath.Dir(sticky), 0o1777); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(f.dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		path     string
		identity string
		want     Cause // 0: starts
	}{
		{"a root-owned program in root-owned directories starts", probe, "alice", 0},
		{"a sticky directory such as /tmp is allowed", sticky, "alice", 0},
		{"the server's own identity (root) is refused", probe, "", RootIdentity},
		{"uid 0 is refused", probe, "root", RootIdentity},
		{"group 0 is refused", probe, "wheel", RootIdentity},
		{"a uid below uid_min is refused", probe, "low", BelowMinimum},
		{"an unknown identity is refused", probe, "nobody-here", UnknownIdentity},
		{"a relative path is refused", "bin/php-cgi", "alice", Outside},
		{"a dot-dot path is refused", f.dir + "/../x", "alice", DotDot},
		{"a missing program", filepath.Join(f.dir, "missing"), "alice", NotFound},
		{"a directory is not a program", f.dir, "alice", NotRegular},
		{"a FIFO is not a program", fifo, "alice", NotRegular},
		{"setuid is refused", f.file("setuid", bin, 0o4755), "alice", SetID},
		{"setgid is refused", f.file("setgid", bin, 0o2755), "alice", SetID},
		{"group-writable is refused", f.file("gw", bin, 0o775), "alice", WritableFile},
		{"a program not owned by root is refused, even the identity's own", owned, "alice", OwnerMismatch},
		{"no execute permission for the identity", f.file("noexec", bin, 0o744), "alice", NoExecBit},
		{"a directory others may write is refused", open, "alice", WritableDir},
		{"a directory another user owns is refused", foreign, "alice", WritableDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runWorker(t, f.l, &WorkerSpec{Path: tc.path, Args: []string{"probe"}, Identity: tc.identity})
			if tc.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ff := failure(t, err, tc.want)
			if tc.want.Refused() && !strings.HasPrefix(ff.Kind.String(), "refused: ") {
				t.Errorf("cause %q is not a refusal", ff.Kind)
			}
		})
	}
}

func TestWorkerScriptWithCRLFIsDiagnosed(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	script := f.file("worker.sh", "#!/bin/sh\r\nexit 0\r\n", 0o755)
	_, err := runWorker(t, f.l, &WorkerSpec{Path: script, Identity: "alice"})
	failure(t, err, InterpreterCR)
}

func TestWorkerScriptRunsByItsPathWithItsDescriptors(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	script := f.file("worker.sh", "#!/bin/sh\nls /proc/$$/fd | sort -n | tr '\\n' ' '\necho \"$0\" \"$(id -u)\"\n", 0o755)
	sock, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	out, err := runWorker(t, f.l, &WorkerSpec{Path: script, Identity: "alice", ExtraFiles: []*os.File{sock}})
	if err != nil {
		t.Fatal(err)
	}
	// The shell's descriptors: 0-2, the socket as 3, and whatever it opened
	// the script on (dash moves it to 10 or above).
	want := "0 1 2 3 \n" + script + " " + strconv.Itoa(testutil.AliceUID) + "\n"
	if !strings.HasPrefix(out, "0 1 2 3 ") || !strings.HasSuffix(out, script+" "+strconv.Itoa(testutil.AliceUID)+"\n") {
		t.Fatalf("output %q, want %q", out, want)
	}
}
