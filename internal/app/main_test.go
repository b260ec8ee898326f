package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/testutil"
)

// Fixture workers, built by TestMain.
var fcgiWorker, httpWorker string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "app-fixtures-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Readable by the test identities the root-only tests run workers as.
	os.Chmod(dir, 0o755)
	fcgiWorker = filepath.Join(dir, "fcgiworker")
	httpWorker = filepath.Join(dir, "httpworker")
	for bin, src := range map[string]string{fcgiWorker: "./testdata/fcgiworker", httpWorker: "./testdata/httpworker"} {
		out, err := exec.Command("go", "build", "-o", bin, src).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", src, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// execLauncher starts workers with os/exec as the test's own user: the
// same descriptors and environment a real launcher gives them, without the
// identity switch and the cell.
type execLauncher struct {
	// uids, when set, maps identities to the uid (and gid) the worker runs
	// as; root-only tests use it to run workers as test identities.
	uids map[string]uint32

	mu      sync.Mutex
	started []int
}

func (l *execLauncher) Start(ctx context.Context, c *Command) (Process, error) {
	cmd := exec.Command(c.Path)
	cmd.Args = c.Args
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.ExtraFiles = c.ExtraFiles
	// Its own process group, so that Kill takes the whole tree.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid, ok := l.uids[c.Identity]; ok {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, NoSetGroups: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.started = append(l.started, cmd.Process.Pid)
	l.mu.Unlock()
	return &execProcess{cmd: cmd}, nil
}

func (l *execLauncher) pids() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.started...)
}

type execProcess struct{ cmd *exec.Cmd }

func (p *execProcess) Pid() int                        { return p.cmd.Process.Pid }
func (p *execProcess) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }
func (p *execProcess) Wait() error                     { return p.cmd.Wait() }
func (p *execProcess) Kill()                           { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// testLogger writes the pool's log into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// newPool returns a pool of bin workers speaking protocol, closed (and
// checked to leave no worker behind) when the test ends.
func newPool(t *testing.T, protocol, bin string, mod ...func(*Pool)) (*Pool, *execLauncher) {
	t.Helper()
	l := &execLauncher{}
	p := &Pool{
		Name:         "/app/",
		Protocol:     protocol,
		Command:      []string{bin},
		Dir:          t.TempDir(),
		Launcher:     l,
		SocketDir:    t.TempDir(),
		StartTimeout: 10 * time.Second,
		Grace:        2 * time.Second,
		Logger:       testLogger(t),
	}
	for _, m := range mod {
		m(p)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, pid := range l.pids() {
			if alive(pid) {
				t.Errorf("worker %d still running after Close", pid)
			}
		}
	})
	return p, l
}

// alive reports whether pid is still a process (not even a zombie: the
// pool reaps its workers).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// waitExit blocks until process pid has exited, through a pidfd: the
// kernel's event, not a poll.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	if err := testutil.WaitPidExit(pid, 20*time.Second); err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
}

// serve starts an HTTP server for h that puts a cgi.Record with user (and
// request id "req-1") into every request, as the server's middleware does.
func serve(t *testing.T, h http.Handler, user string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := user
		if hu := r.Header.Get("X-Test-User"); hu != "" {
			u = hu
		}
		rec := &cgi.Record{ID: "req-1", User: u}
		if u != "" {
			rec.AuthType = "Basic"
		}
		h.ServeHTTP(w, r.WithContext(cgi.NewContext(r.Context(), rec)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func getPid(t *testing.T, url string) int {
	t.Helper()
	code, body, _ := get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	pid, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("GET %s: not a pid: %q", url, body)
	}
	return pid
}

// both runs f for each protocol with its fixture worker.
func both(t *testing.T, f func(t *testing.T, protocol, bin string)) {
	for _, tc := range []struct{ protocol, bin string }{{ProtocolFastCGI, fcgiWorker}, {ProtocolHTTP, httpWorker}} {
		t.Run(tc.protocol, func(t *testing.T) { f(t, tc.protocol, tc.bin) })
	}
}

// fmtSscan reads values from a response body.
func fmtSscan(resp *http.Response, v ...any) (int, error) {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return fmt.Sscan(string(b), v...)
}
