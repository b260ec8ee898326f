package app

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/suserve/suserve/internal/fcgi"
)

// stderrLines is how many of a worker's last stderr lines a failure keeps.
const stderrLines = 20

// worker is one running worker process and its socket.
type worker struct {
	slot int
	sock string // path of its listening socket
	pid  int

	proc   Process
	done   chan struct{} // closed once the process has exited and its stderr is read
	exit   error         // Process.Wait's result, valid after done
	cancel context.CancelFunc

	fc *fcgi.Pool      // FastCGI connections to it
	tr *http.Transport // HTTP connections to it

	// Guarded by the pool's mutex.
	ready    bool
	stopping bool // asked to stop: its exit is not a failure
	served   bool // completed a request: it was healthy
	inflight int

	tailMu sync.Mutex
	tail   []string // last stderr lines, oldest first
}

func (w *worker) lastLines() []string {
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	return append([]string(nil), w.tail...)
}

// dead reports whether the worker's process has exited, which may be seen
// before its pool has taken it out of its slot.
func (w *worker) dead() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *worker) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", w.sock)
}

// listen creates the worker's listening socket in the pool's private
// directory and returns it as a file for the worker to inherit. Suserve's
// copy is closed once the worker holds it, so that when the worker dies
// connections are refused at once instead of waiting in the backlog.
func listen(path string) (*os.File, error) {
	os.Remove(path) // a stale socket of an earlier worker in this slot
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// launch starts w's process. It returns once the launcher has started it;
// the caller probes readiness.
func (p *Pool) launch(w *worker) *Failure {
	lf, err := listen(w.sock)
	if err != nil {
		return newFailure(StartFailed, err, "creating the worker's socket: %v", err)
	}
	defer lf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return newFailure(StartFailed, err, "creating the worker's log pipe: %v", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		pr.Close()
		pw.Close()
		return newFailure(StartFailed, err, "%v", err)
	}
	defer devnull.Close()

	cmd := &Command{
		Path:     p.Command[0],
		Args:     append([]string(nil), p.Command...),
		Env:      p.env(w),
		Dir:      p.Dir,
		Identity: p.Identity,
		App:      p.Name,
		Socket:   w.sock,
		Slot:     w.slot,
		Stdout:   pw,
		Stderr:   pw,
	}
	if p.Protocol == ProtocolHTTP {
		cmd.Stdin = devnull
		cmd.ExtraFiles = []*os.File{lf}
	} else {
		cmd.Stdin = lf
	}
	proc, err := p.Launcher.Start(context.Background(), cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		os.Remove(w.sock)
		return launchFailure(err)
	}
	p.mu.Lock() // stop reads it
	w.proc = proc
	w.pid = proc.Pid()
	p.mu.Unlock()

	logDone := make(chan struct{})
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer close(logDone)
		p.readStderr(w, pr)
	}()
	go func() {
		defer p.wg.Done()
		w.exit = proc.Wait()
		// The pipe ends when the worker and everything it started have
		// exited; Kill takes the whole tree, so this is short, but a
		// descendant that escaped must not hold the pool.
		t := time.NewTimer(time.Second)
		select {
		case <-logDone:
		case <-t.C:
			pr.Close()
		}
		t.Stop()
		w.cancel() // ends a readiness probe in progress
		close(w.done)
	}()
	return nil
}

// readStderr logs a worker's output a line at a time and keeps the last
// lines for its failure.
func (p *Pool) readStderr(w *worker, pr *os.File) {
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 4096), 4096)
	sc.Split(scanLinesOrFull)
	log := p.logger().With("app", p.Name, "identity", p.Identity, "pid", w.pid)
	for sc.Scan() {
		line := sc.Text()
		w.tailMu.Lock()
		if len(w.tail) == stderrLines {
			copy(w.tail, w.tail[1:])
			w.tail = w.tail[:stderrLines-1]
		}
		w.tail = append(w.tail, line)
		w.tailMu.Unlock()
		log.Info("app worker stderr", "line", line)
	}
}

// scanLinesOrFull splits at line ends, and cuts lines longer than the
// buffer instead of failing on them.
func scanLinesOrFull(data []byte, atEOF bool) (int, []byte, error) {
	adv, tok, err := bufio.ScanLines(data, atEOF)
	if adv == 0 && tok == nil && len(data) == cap(data) {
		return len(data), data, nil
	}
	return adv, tok, err
}

// env is the worker's complete environment: a fixed PATH, the app's own
// variables, and the socket variables.
//
// LISTEN_PID is not set. The socket-activation convention wants the
// worker's own pid there, which is known only after fork, and the launcher
// execs the worker directly (no shell or helper re-exec in between, which
// would be one more program to trust under the worker's identity). Programs
// that check LISTEN_PID == getpid() (sd_listen_fds, go-systemd's activation)
// therefore see no inherited socket; they should take descriptor 3 when
// LISTEN_FDS=1, or read SUSERVE_SOCKET.
func (p *Pool) env(w *worker) []string { return WorkerEnv(p.Protocol, p.Env, w.sock, w.slot) }

// WorkerEnv is the environment of worker number slot of an app with the
// configured env, listening on socket. Behind the privilege boundary the
// spawner builds it from its own configuration the same way.
func WorkerEnv(protocol string, configured []string, socket string, slot int) []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	env = append(env, configured...)
	env = append(env, "SUSERVE_SOCKET="+socket, "SUSERVE_WORKER="+strconv.Itoa(slot))
	if protocol == ProtocolHTTP {
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=suserve")
	}
	return env
}

// probe waits until the worker answers on its socket: FastCGI GET_VALUES
// (§4.1), or an HTTP "OPTIONS *" (RFC 9110 §9.3.7), which asks the server
// about itself and touches no resource. The socket exists before the worker
// starts, so a connection alone proves nothing; an answer proves the worker
// accepts and speaks its protocol.
func (p *Pool) probe(ctx context.Context, w *worker) error {
	if p.Protocol != ProtocolHTTP {
		_, err := w.fc.Values(ctx, "FCGI_MPXS_CONNS")
		return err
	}
	c, err := w.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte("OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("answer to OPTIONS * is not HTTP: %w", err)
	}
	resp.Body.Close()
	return nil
}

func sockPath(dir string, slot int) string {
	return filepath.Join(dir, "w"+strconv.Itoa(slot)+".sock")
}
