package cgi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// fixtures is the directory TestMain writes the test programs into:
// fixtures/cgi-bin is the route's directory, fixtures/htdocs the document root.
var fixtures string

// programs are the fixture programs, by name under cgi-bin. They are written
// before any test starts a process, so that no file open for writing is
// inherited by a fork (which would make exec fail with ETXTBSY).
var programs = map[string]string{
	"hello": `printf 'Content-Type: text/plain\r\nX-Hello: yes\r\n\r\nhello\n'`,
	"env":   `printf 'Content-Type: text/plain\n\n'; exec env -0`,
	"cat":   `printf 'Content-Type: application/octet-stream\n\n'; exec cat`,
	"sha":   `printf 'Content-Type: text/plain\n\n'; echo "$CONTENT_LENGTH"; exec sha256sum`,
	"writefirst": `printf 'Content-Type: text/plain\n\n'
head -c 1048576 /dev/zero
exec sha256sum`,
	"noread":    `printf 'Content-Type: text/plain\n\nignored your input\n'`,
	"exit3":     `echo "cannot open the database" >&2; exit 3`,
	"segv":      `echo "about to crash" >&2; kill -SEGV $$`,
	"silent":    `exit 0`,
	"malformed": `printf 'Content-Type text/plain\n\nbody\n'`,
	"huge":      `printf 'X-Big: '; head -c 70000 /dev/zero | tr '\0' a; printf '\n\n'`,
	"manylines": `i=0; while [ $i -lt 3000 ]; do printf 'X-Line-%d: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n' $i; i=$((i+1)); done; printf '\n'`,
	"notype":    `printf 'X-Only: this\n\nbody\n'`,
	"status":    `printf 'Status: 418 I am a teapot\nContent-Type: text/plain\n\nshort and stout\n'`,
	"badstatus": `printf 'Status: abc\nContent-Type: text/plain\n\n'`,
	"exitlate":  `printf 'Content-Type: text/plain\n\ndone\n'; exit 1`,
	"local":     `printf 'Location: /cgi-bin/env/redirected?from=local\n\n'`,
	"client":    `printf 'Location: https://example.com/elsewhere\n\n'`,
	"moved":     `printf 'Status: 301 Moved Permanently\nLocation: https://example.com/moved\nContent-Type: text/plain\n\nmoved\n'`,
	"loop":      `printf 'Location: /cgi-bin/loop\n\n'`,
	"nph-raw":   `printf 'HTTP/1.1 203 Non-Authoritative Information\r\nContent-Type: text/plain\r\nX-Nph: yes\r\n\r\nraw body\n'`,
	"cutshort": `printf 'Content-Type: text/plain\n'
[ "$PATH_INFO" = /length ] && printf 'Content-Length: 100\n'
printf '\n'
head -c 50 /dev/zero | tr '\0' x
kill -KILL $$`,
	"shortlen": `printf 'Content-Type: text/plain\nContent-Length: 100\n\nshort\n'`,
	// stream writes a line, then waits for the test to write to the fifo
	// named by QUERY_STRING.
	"stream": `printf 'Content-Type: text/plain\n\nfirst\n'
read line < "$QUERY_STRING"
echo "second $line"`,
	// tree starts a background child, reports both pids on the fifo named
	// by QUERY_STRING, then waits forever (with PATH_INFO /headers, after
	// sending its header and a first line; with /exit, it waits for a line
	// on the fifo, answers and exits, leaving the child behind).
	"tree": `sleep 1000 &
echo "$$ $!" > "$QUERY_STRING"
case "$PATH_INFO" in
/headers) printf 'Content-Type: text/plain\n\nfirst\n' ;;
/exit) read go < "$QUERY_STRING"; printf 'Content-Type: text/plain\n\ndone\n'; exit 0 ;;
esac
exec sleep 1000`,
	// linger closes its output after a whole answer, then takes longer
	// than FlushDelay to exit.
	"linger":  `printf 'Content-Type: text/plain\n\nall of it\n'; exec >&-; sleep 0.2`,
	"pause":   `printf 'Content-Type: text/plain\n\nbefore\n'; sleep 0.5; echo after`,
	"marker":  `touch "$QUERY_STRING"; printf 'Content-Type: text/plain\n\nran\n'`,
	"chatter": `i=0; while [ $i -lt 400 ]; do echo "chatter $i" >&2; i=$((i+1)); done; printf 'Content-Type: text/plain\n\nok\n'`,
	// stdio reports what its standard streams are and their status flags
	// (octal, from fdinfo), a line each.
	"stdio": `printf 'Content-Type: text/plain\n\n'
for fd in 0 1 2; do echo "$(readlink /proc/$$/fd/$fd) $(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/$fd)"; done`,
	"sub/prog": `printf 'Content-Type: text/plain\n\n%s|%s\n' "$SCRIPT_NAME" "$PATH_INFO"`,
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "suserve-cgi-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		fixtures = dir
		if err := writeFixtures(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// The server's own environment must not reach programs, except
		// what pass_env names.
		os.Setenv("SUSERVE_TEST_SECRET", "server-only")
		os.Setenv("SUSERVE_TEST_PASSED", "passed-on")
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func writeFixtures(dir string) error {
	for _, d := range []string{"cgi-bin/sub", "cgi-bin/emptydir", "htdocs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for name, body := range programs {
		if err := os.WriteFile(filepath.Join(dir, "cgi-bin", name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			return err
		}
	}
	// Launch failures the launcher diagnoses.
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "noexec"), []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "noshebang"), []byte("echo no interpreter line\n"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cgi-bin", "badinterp"), []byte("#!/nonexistent/interpreter\n"), 0o755)
}

// logBuffer collects the handler's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines with message msg of request id.
func (l *logBuffer) lines(t *testing.T, id, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m["request_id"] == id && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// failureLine returns the one "cgi failure" line of request id.
func (l *logBuffer) failureLine(t *testing.T, id string) map[string]any {
	t.Helper()
	ls := l.lines(t, id, "cgi failure")
	if len(ls) != 1 {
		t.Fatalf("request %s: %d failure log lines, want exactly 1; log:\n%s", id, len(ls), l.String())
	}
	return ls[0]
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testServer is a Handler behind a real HTTP server on loopback, with a
// middleware that plays the server's part: a Record per request, with the
// id and user the test names in request headers.
type testServer struct {
	*httptest.Server
	h      *Handler
	logs   *logBuffer
	served chan *Record // a request's record, once its handler has returned
}

type serverOption func(*Handler)

func newTestServer(t testing.TB, tls bool, opts ...serverOption) *testServer {
	t.Helper()
	logs := &logBuffer{}
	h := &Handler{
		Launcher:       execLauncher{},
		Route:          "/cgi-bin/",
		Root:           filepath.Join(fixtures, "cgi-bin"),
		DocumentRoot:   filepath.Join(fixtures, "htdocs"),
		HeaderTimeout:  10 * time.Second,
		IdleTimeout:    10 * time.Second,
		MaxRequestBody: 200 << 20,
		ServerSoftware: "suserve-test",
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(h)
	}
	s := &testServer{h: h, logs: logs, served: make(chan *Record, 64)}
	mw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &Record{ID: r.Header.Get("X-Request-Id"), User: r.Header.Get("X-Test-User")}
		if rec.User != "" {
			rec.AuthType = "Basic"
		}
		defer func() {
			select {
			case s.served <- rec:
			default: // nobody waits (benchmarks)
			}
		}()
		if r.Header.Get("X-Expect-Chunked") != "" && (len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked") {
			http.Error(w, "the request body was not chunked", http.StatusTeapot)
			return
		}
		h.ServeHTTP(w, r.WithContext(NewContext(r.Context(), rec)))
	})
	if tls {
		s.Server = httptest.NewTLSServer(mw)
	} else {
		s.Server = httptest.NewServer(mw)
	}
	t.Cleanup(s.Close)
	return s
}

// get sends a request with id as its request id.
func (s *testServer) do(t *testing.T, req *http.Request, id string) *http.Response {
	t.Helper()
	req.Header.Set("X-Request-Id", id)
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

func (s *testServer) get(t *testing.T, path, id string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.do(t, req, id)
}

// waitServed waits until the handler of request id has returned.
func (s *testServer) waitServed(t *testing.T, id string) *Record {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case rec := <-s.served:
			if rec.ID == id {
				return rec
			}
		case <-timeout:
			t.Fatalf("request %s: the handler did not return", id)
			return nil
		}
	}
}

// treePids starts reading the fifo on which the tree fixture reports its own
// pid and its background child's, and returns pidfds for both, opened while
// they are alive. With release, it then lets the program go on.
func treePids(t *testing.T, fifo string, release bool) (pids [2]int, fds [2]int) {
	t.Helper()
	b, err := os.ReadFile(fifo) // blocks until the program has written
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(string(b), &pids[0], &pids[1]); err != nil {
		t.Fatalf("pids %q: %v", b, err)
	}
	for i, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v", pid, err)
		}
		fds[i] = fd
		t.Cleanup(func() { _ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); unix.Close(fd) })
	}
	if release {
		if err := os.WriteFile(fifo, []byte("go\n"), 0); err != nil {
			t.Fatal(err)
		}
	}
	return pids, fds
}

// requireGone checks that the processes have exited: their pidfds are
// readable (the kernel's exit event) and kill(pid, 0) finds nothing but at
// most a zombie awaiting its reaper.
func requireGone(t *testing.T, pids [2]int, fds [2]int) {
	t.Helper()
	for i, fd := range fds {
		if err := testutil.WaitExit(fd, 5*time.Second); err != nil {
			t.Errorf("process %d after the request ended: %v", pids[i], err)
			continue
		}
		if err := syscall.Kill(pids[i], 0); err == nil {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pids[i]))
			if _, after, ok := strings.Cut(string(stat), ") "); !ok || !strings.HasPrefix(after, "Z") {
				t.Errorf("process %d still exists: %s", pids[i], stat)
			}
		} else if err != syscall.ESRCH {
			t.Errorf("kill(%d, 0): %v", pids[i], err)
		}
	}
}

func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
