package spawn

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workerBoundary is a boundary whose spawner knows four apps, each the
// probe program with one argument: /id/, /fds/ (an HTTP app: its socket is
// descriptor 3), /env/ and /sleep/. Every app runs as alice only.
func workerBoundary(t *testing.T) (*boundary, *Client) {
	t.Helper()
	b := newBoundaryWith(t, 0, func(b *boundary) { b.s.Apps = probeApps(b.f) })
	return b, NewClient(b.front)
}

func probeApps(f *fixture) AppFunc {
	probe := f.probe("probe")
	return func(r *WorkerRequest) (*WorkerSpec, bool, error) {
		mode := strings.Trim(r.App, "/")
		switch mode {
		case "id", "fds", "env", "sleep", "trap":
		default:
			return nil, false, refuse(UnknownRoute, "", "no app is %q", r.App)
		}
		if r.Identity != "alice" {
			return nil, false, refuse(RouteIdentity, probe, "app %s runs as alice, not as %q", r.App, r.Identity)
		}
		env := []string{"SUSERVE_SOCKET=" + r.Socket, "SUSERVE_WORKER=" + strconv.Itoa(int(r.Slot))}
		return &WorkerSpec{Path: probe, Args: []string{"probe", mode, "60"}, Env: env, Dir: f.dir}, mode == "fds", nil
	}
}

// listener is a listening unix socket in a fresh directory, as a file.
func listener(t *testing.T) (*os.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

// startRemoteWorker starts app as identity through c with a fresh socket
// and log pipe, and returns the worker and its log's read end.
func startRemoteWorker(t *testing.T, c *Client, app, identity string) (*RemoteProcess, *os.File, error) {
	t.Helper()
	sock, path := listener(t)
	r, w := pipe(t)
	p, err := c.StartWorker(context.Background(), &WorkerSpec{App: app, Identity: identity, Stdin: sock, Stdout: w, Socket: path, Slot: 2})
	w.Close()
	if p != nil {
		t.Cleanup(p.Kill)
	}
	return p, r, err
}

func TestWorkerStartsThroughTheSpawnerAsTheAppSays(t *testing.T) {
	_, c := workerBoundary(t)
	for _, tc := range []struct {
		app  string
		want func(string) bool
	}{
		{"/id/", func(s string) bool { return strings.HasPrefix(s, "61001 61001 ") }},
		// An HTTP app's socket is descriptor 3 and its stdin /dev/null.
		{"/fds/", func(s string) bool { return strings.TrimSpace(s) == "[0 1 2 3]" }},
		{"/env/", func(s string) bool {
			return strings.Contains(s, "SUSERVE_WORKER=2") && strings.Contains(s, "SUSERVE_SOCKET=/") && strings.Contains(s, "HOME=/home/alice")
		}},
	} {
		t.Run(tc.app, func(t *testing.T) {
			p, log, err := startRemoteWorker(t, c, tc.app, "alice")
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(log)
			if err := p.Wait(); err != nil {
				t.Fatalf("the worker ended with %v", err)
			}
			if !tc.want(string(out)) {
				t.Fatalf("the worker printed %q", out)
			}
		})
	}
}

func TestRemoteWorkerStopsOnSignalAndIsThenDone(t *testing.T) {
	_, c := workerBoundary(t)
	p, _, err := startRemoteWorker(t, c, "/sleep/", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ff := failure(t, p.Wait(), Signaled)
	if ff.Signal != syscall.SIGTERM || ff.Killed {
		t.Fatalf("ended by %v (killed: %v), want the SIGTERM of Signal", ff.Signal, ff.Killed)
	}
	pidGone(t, p.Pid())
	if err := p.Signal(syscall.SIGTERM); err != os.ErrProcessDone {
		t.Fatalf("Signal after the exit report: %v, want os.ErrProcessDone", err)
	}
}

// TestSpawnerSendsOnlyStopAndReloadSignals: a SIGSTOP from the front is
// not sent (the worker would hold its slot without an end), and the
// SIGTERM after it is: the messages are handled in order, and a stopped
// worker could not run its SIGTERM handler to end.
func TestSpawnerSendsOnlyStopAndReloadSignals(t *testing.T) {
	_, c := workerBoundary(t)
	p, log, err := startRemoteWorker(t, c, "/trap/", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(log).ReadString('\n'); err != nil || line != "trapping\n" {
		t.Fatalf("the worker said %q (%v)", line, err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGTERM} {
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the worker ended with %v, want exit 0 from its SIGTERM handler", err)
		}
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Fatal("the worker did not end on SIGTERM: the SIGSTOP before it reached it")
	}
}

// TestSpawnerRefusesWorkersItShouldNotStart: requests a compromised front
// could send, each refused with its cause.
func TestSpawnerRefusesWorkersItShouldNotStart(t *testing.T) {
	_, c := workerBoundary(t)
	sock, path := listener(t)
	_, w := pipe(t)
	r, _ := pipe(t)
	file, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name string
		spec WorkerSpec
		want Cause
	}{
		{"an identity the app does not run as", WorkerSpec{App: "/id/", Identity: "bob", Stdin: sock, Stdout: w, Socket: path}, RouteIdentity},
		{"an app the spawner does not know", WorkerSpec{App: "/nope/", Identity: "alice", Stdin: sock, Stdout: w, Socket: path}, UnknownRoute},
		{"a file instead of a listening socket", WorkerSpec{App: "/id/", Identity: "alice", Stdin: file, Stdout: w, Socket: path}, BadMessage},
		{"the read end of the log pipe", WorkerSpec{App: "/id/", Identity: "alice", Stdin: sock, Stdout: r, Socket: path}, BadMessage},
		{"a relative socket path", WorkerSpec{App: "/id/", Identity: "alice", Stdin: sock, Stdout: w, Socket: "w.sock"}, DotDot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := c.StartWorker(context.Background(), &tc.spec)
			if p != nil {
				p.Kill()
				t.Fatalf("started pid %d", p.Pid())
			}
			var f *Failure
			if !errors.As(err, &f) || f.Kind != tc.want {
				t.Fatalf("got %v, want the cause %q", err, tc.want)
			}
		})
	}
	// The spawner goes on serving.
	p, log, err := startRemoteWorker(t, c, "/id/", "alice")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(log)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}
