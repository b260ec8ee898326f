package spawn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Refusals that only the spawner makes: a request that names no route the
// spawner knows, an identity the route does not run as, or a message it
// could not read. They are policy refusals (403).
const (
	UnknownRoute  Cause = iota + 150 // the route path is none of the configuration's routes
	RouteIdentity                    // the route does not run programs as this identity
	BadMessage                       // the message was malformed (size, shape, descriptors)
)

func init() {
	causeNames[UnknownRoute] = "refused: unknown route"
	causeNames[RouteIdentity] = "refused: identity not allowed on route"
	causeNames[BadMessage] = "refused: malformed message"
}

// RouteFunc finds, in the spawner's own configuration, the directory and
// run-as mode for a request on route (the route path the front matched,
// with {user} filled in for owner routes) as identity. It also decides
// whether the route may run programs as identity at all (an account
// route only as its account, an owner route only as the user the path
// names). It returns a *Failure for a refusal.
type RouteFunc func(route, identity string) (dir, mode string, err error)

// AppFunc finds, in the spawner's own configuration, the worker a front's
// request names: the [[app]] at r.App, run as r.Identity (an account app
// only as its account). It returns the worker's program, arguments,
// complete environment and directory, and whether its socket is an HTTP
// listener (descriptor 3, LISTEN_FDS) rather than FastCGI's descriptor 0;
// or a *Failure for a refusal.
type AppFunc func(r *WorkerRequest) (spec *WorkerSpec, http bool, err error)

// Spawner is the privileged side of the boundary: it reads spawn requests
// from one front, checks each against its own configuration and policy,
// starts the program with Local, and reports how it ended. Nothing the
// front computed is used except the names it sends; the route directory
// and mode come from Routes, an app worker's command from Apps, the
// identity from Local's source.
type Spawner struct {
	Local    *Local
	Routes   RouteFunc
	Apps     AppFunc // nil: the spawner starts no app workers
	FrontUID uint32  // the uid the front runs as: the peer must have it (SO_PEERCRED)
	Log      *slog.Logger
	// MaxWaiting bounds the spawn and worker requests of one front that
	// the spawner has read and not yet answered (those waiting for a
	// cell, mostly); 0 is DefaultMaxWaiting. Each holds its descriptors
	// and a goroutine in a root process: beyond the bound a request is
	// refused at once (503, SpawnerBusy), so a front cannot make the
	// spawner hold more.
	MaxWaiting int

	handles atomic.Uint64
	mu      sync.RWMutex // guards Routes and Apps once Serve runs: see SetPolicy
}

// DefaultMaxWaiting is Spawner.MaxWaiting's default: far more requests
// than wait for cells at once on a busy host, far fewer descriptors than
// the spawner may hold.
const DefaultMaxWaiting = 4096

// SpawnerBusy is the refusal of a request the spawner has no room for:
// beyond Spawner.MaxWaiting, or at its open-file limit.
type SpawnerBusy struct{ Detail string }

func (e *SpawnerBusy) Error() string             { return e.Detail + "; try again shortly" }
func (e *SpawnerBusy) Cause() string             { return "spawner busy" }
func (e *SpawnerBusy) HTTPStatus() int           { return 503 }
func (e *SpawnerBusy) RetryAfter() time.Duration { return time.Second }

// SetPolicy replaces Routes and Apps, as a configuration reload does:
// every request read from then on is checked against the new ones.
func (s *Spawner) SetPolicy(routes RouteFunc, apps AppFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Routes, s.Apps = routes, apps
}

func (s *Spawner) policy() (RouteFunc, AppFunc) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.Routes, s.Apps
}

// PeerError is a connection whose other end is not the front.
type PeerError struct {
	UID, Want uint32
	PID       int32
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("spawner connection from pid %d uid %d, and the front runs as uid %d: refused", e.PID, e.UID, e.Want)
}

func (e *PeerError) Unwrap() error { return ErrWrongPeer }

// frontConn is the state of one front's connection.
type frontConn struct {
	s    *Spawner
	c    *net.UnixConn
	log  *slog.Logger
	mu   sync.Mutex
	live map[uint64]*Process // started and not yet killed by the front
	done bool
	// waiting counts the spawn and worker requests read and not yet
	// answered: see Spawner.MaxWaiting.
	waiting atomic.Int64
	// ctx ends when the front is gone: a request still waiting for a cell
	// gives up, and (as Start's ctx) every program is killed.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Serve serves one front on c until the front closes it (or dies) or ctx
// ends, then kills every program it started for that front and returns.
// It closes c. A peer whose uid is not FrontUID is refused before any
// message is read (*PeerError).
func (s *Spawner) Serve(ctx context.Context, c *net.UnixConn) error {
	defer c.Close()
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cred, err := PeerCred(c)
	if err != nil {
		return fmt.Errorf("spawner: SO_PEERCRED: %w", err)
	}
	if cred.Uid != s.FrontUID {
		err := &PeerError{UID: cred.Uid, Want: s.FrontUID, PID: cred.Pid}
		log.Error("spawner refused a connection", "cause", err.Error())
		return err
	}
	fc := &frontConn{s: s, c: c, log: log.With("front_pid", cred.Pid), live: map[uint64]*Process{}}
	fc.ctx, fc.cancel = context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	err = fc.read()
	fc.closeAll()
	if errors.Is(err, errClosed) || ctx.Err() != nil {
		err = nil
	}
	return err
}

func (fc *frontConn) read() error {
	buf, oob := newBuffers()
	for {
		m, err := readMessage(fc.c, buf, oob)
		if err != nil {
			var me *MessageError
			if !errors.As(err, &me) {
				if errors.Is(err, net.ErrClosed) {
					return errClosed
				}
				return err
			}
			if errors.Is(err, ErrNoRoom) {
				// The spawner's own limit: the request was fine.
				fc.log.Error("spawner cannot take a request's descriptors", "cause", err.Error())
				fc.refuse(me.ID, &SpawnerBusy{Detail: err.Error()})
				continue
			}
			fc.log.Warn("spawner refused a message", "cause", err.Error())
			fc.refuse(me.ID, &Failure{Kind: BadMessage, Detail: err.Error(), Exit: -1, Err: err})
			continue
		}
		switch m.Kind {
		case KindSpawn, KindWorker:
			if n := fc.waiting.Add(1); n > int64(fc.s.maxWaiting()) {
				fc.waiting.Add(-1)
				fc.refused(m, &SpawnerBusy{Detail: fmt.Sprintf("%d requests already wait for the spawner", n-1)})
				continue
			}
			// One goroutine per request: a request that waits for a cell,
			// or (on one P, see startWith) for its child's exec, holds up
			// no other.
			fc.wg.Add(1)
			go func() {
				defer fc.wg.Done()
				fc.serveRequest(m)
			}()
		case KindKill:
			// Killing a cell's request group can take milliseconds
			// (freeze, kill, thaw on cgroup v1): not on the reader.
			fc.wg.Add(1)
			go func() {
				defer fc.wg.Done()
				fc.kill(m.Kill.Handle)
			}()
		case KindSignal:
			fc.signal(m.Signal)
		default:
			m.Close()
			err := &MessageError{Kind: m.Kind, Err: ErrUnknownKind, Detail: "not a message the front sends"}
			fc.log.Warn("spawner refused a message", "cause", err.Error())
			fc.refuse(0, &Failure{Kind: BadMessage, Detail: err.Error(), Exit: -1, Err: err})
		}
	}
}

func (fc *frontConn) send(m *Message) {
	if err := writeMessage(fc.c, m); err != nil && !errors.Is(err, net.ErrClosed) {
		fc.log.Warn("spawner cannot write to the front", "kind", m.Kind.String(), "err", err.Error())
	}
}

// refuse answers request id with err's diagnosis.
func (fc *frontConn) refuse(id uint64, err error) {
	r := &Refusal{ID: id, Status: 502, CauseText: "launch failed", Detail: err.Error()}
	var f *Failure
	var d interface {
		Cause() string
		HTTPStatus() int
	}
	switch {
	case errors.As(err, &f):
		r.Cause, r.CauseText, r.Status, r.Path, r.Detail = f.Kind, f.Kind.String(), uint16(f.HTTPStatus()), f.Path, f.Detail
	case errors.As(err, &d):
		r.CauseText, r.Status = d.Cause(), uint16(d.HTTPStatus())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		r.CauseText, r.Status = "canceled", 503
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		r.RetryAfter = ra.RetryAfter()
	}
	fc.send(&Message{Kind: KindRefused, Refused: r})
}

// serveRequest carries out a spawn or worker request: its checks, its
// start, then the reply and, once the program has ended, the report.
func (fc *frontConn) serveRequest(m *Message) {
	var p *Process
	var refusal, err error
	if m.Kind == KindSpawn {
		p, refusal, err = fc.spawn(m)
	} else {
		p, refusal, err = fc.worker(m)
	}
	// The request counts against MaxWaiting until its answer is sent: a
	// front that reads no answers soon finds the spawner reading no more.
	answered := func() { fc.waiting.Add(-1) }
	if refusal != nil {
		fc.refused(m, refusal)
		answered()
		return
	}
	fc.started(m, p, err, answered)
}

// spawn checks and starts one request's program: the refusal of its
// checks, or Start's result. The request's descriptors are the program's
// stdin, stdout and stderr.
func (fc *frontConn) spawn(m *Message) (p *Process, refusal, err error) {
	spec, err := fc.spec(m.Spawn, m.FDs)
	if err != nil {
		return nil, err, nil
	}
	// The program's lifetime is the front's, not the request's: the front
	// kills it with a kill message, and its death kills everything.
	p, err = fc.s.Local.Start(fc.ctx, spec)
	return p, nil, err
}

func (s *Spawner) maxWaiting() int {
	if s.MaxWaiting > 0 {
		return s.MaxWaiting
	}
	return DefaultMaxWaiting
}

// request is the id of m, a spawn or worker request, and the names its
// log lines give it: made only for a line that is logged.
func request(m *Message) (id uint64, attrs []any) {
	if r := m.Worker; r != nil {
		return r.ID, []any{"app", r.App, "identity", r.Identity}
	}
	r := m.Spawn
	return r.ID, []any{"route", r.Route, "identity", r.Identity, "program", r.Path}
}

// refused answers a request that failed its checks, closing its
// descriptors.
func (fc *frontConn) refused(m *Message, err error) {
	m.Close()
	id, attrs := request(m)
	fc.log.Warn("spawner refused a request", append(attrs, "cause", err.Error())...)
	fc.refuse(id, err)
}

// started follows a request's start, which returned p or err. The
// request's descriptors are closed now that the program has its own, so
// that the front sees the program close its output when it does, not when
// the spawner has reported its exit.
func (fc *frontConn) started(m *Message, p *Process, err error, answered func()) {
	m.Close()
	id, attrs := request(m)
	if err != nil {
		fc.log.Info("spawner did not start a program", append(attrs, "cause", err.Error())...)
		fc.refuse(id, err)
		answered()
		return
	}
	fc.watch(id, p, answered)
}

// watch registers a started program, replies to request id (then calls
// answered), waits for the program's exit and reports it.
func (fc *frontConn) watch(id uint64, p *Process, answered func()) {
	started := time.Now()
	h := fc.s.handles.Add(1)
	fc.mu.Lock()
	if fc.done {
		fc.mu.Unlock()
		answered()
		p.Kill()
		_ = p.Wait()
		return
	}
	fc.live[h] = p
	fc.mu.Unlock()
	fc.send(&Message{Kind: KindStarted, Started: &StartedReply{ID: id, Handle: h, Pid: int32(p.Pid())}})
	answered()
	// The report follows the reply: both go out on this goroutine.
	werr := p.Wait()
	rt := time.Since(started)
	// The program has exited: what it left running is killed, and it is
	// reaped, before the report goes out, as the gateway kills a program's
	// tree after every Wait. The front then owes no kill message for it,
	// and a program's cell slot is free as soon as its report is sent.
	fc.mu.Lock()
	delete(fc.live, h)
	fc.mu.Unlock()
	p.Kill()
	x := &ExitReport{Handle: h, Exit: 0, Runtime: rt}
	var f *Failure
	if errors.As(werr, &f) {
		x.Cause, x.Exit, x.Signal, x.Killed, x.Cell, x.Detail = f.Kind, int32(f.Exit), int32(f.Signal), f.Killed, f.Cell, f.Detail
	} else if werr != nil {
		x.Cause, x.Exit, x.Detail = ExecFailed, -1, werr.Error()
	}
	fc.send(&Message{Kind: KindExited, Exited: x})
}

// spec builds the Spec from the request's names and the spawner's own
// configuration.
func (fc *frontConn) spec(r *SpawnRequest, fds []*os.File) (*Spec, error) {
	routes, _ := fc.s.policy()
	if routes == nil {
		return nil, refuse(UnknownRoute, r.Path, "the spawner has no routes")
	}
	dir, mode, err := routes(r.Route, r.Identity)
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			return nil, err
		}
		return nil, &Failure{Kind: UnknownRoute, Path: r.Path, Detail: err.Error(), Exit: -1, Err: err}
	}
	// The working directory is the program's own or one beneath the
	// route's directory: the front does not get to choose where a program
	// starts.
	if r.Dir != "" {
		if !filepath.IsAbs(r.Dir) || hasDotDot(r.Dir) {
			return nil, refuse(DotDot, r.Dir, "working directory %q is not a clean absolute path", r.Dir)
		}
		if d := filepath.Clean(r.Dir); d != dir && !strings.HasPrefix(d, strings.TrimSuffix(dir, "/")+"/") {
			return nil, refuse(Outside, r.Dir, "working directory is not under the route directory %s", dir)
		}
	}
	return &Spec{
		Path: r.Path, Args: r.Args, Env: r.Env, Dir: r.Dir,
		Identity: r.Identity, Route: r.Route, RouteDir: dir, Mode: mode,
		Stdin: fds[0], Stdout: fds[1], Stderr: fds[2],
	}, nil
}

func hasDotDot(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return true
		}
	}
	return false
}

// worker checks and starts a worker request: the app's worker from the
// spawner's configuration, with the front's socket and log pipe.
func (fc *frontConn) worker(m *Message) (p *Process, refusal, err error) {
	spec, err := fc.workerSpec(m.Worker, m.FDs)
	if err != nil {
		return nil, err, nil
	}
	p, err = fc.s.Local.StartWorker(fc.ctx, spec)
	return p, nil, err
}

// workerSpec checks a worker request's descriptors and builds its spec. The
// socket must be a listening unix stream socket and the log a pipe: the
// front can hand a worker nothing else of its own.
func (fc *frontConn) workerSpec(r *WorkerRequest, fds []*os.File) (*WorkerSpec, error) {
	_, apps := fc.s.policy()
	if apps == nil {
		return nil, refuse(UnknownRoute, r.App, "the spawner starts no app workers")
	}
	if !filepath.IsAbs(r.Socket) || hasDotDot(r.Socket) {
		return nil, refuse(DotDot, r.Socket, "socket %q is not a clean absolute path", r.Socket)
	}
	if err := listeningUnixSocket(fds[0]); err != nil {
		return nil, &Failure{Kind: BadMessage, Path: r.App, Detail: "the worker's socket: " + err.Error(), Exit: -1, Err: err}
	}
	if err := pipeWriteEnd(fds[1]); err != nil {
		return nil, &Failure{Kind: BadMessage, Path: r.App, Detail: "the worker's log: " + err.Error(), Exit: -1, Err: err}
	}
	spec, http, err := apps(r)
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			return nil, err
		}
		return nil, &Failure{Kind: UnknownRoute, Path: r.App, Detail: err.Error(), Exit: -1, Err: err}
	}
	spec.Identity, spec.App = r.Identity, r.App
	spec.Stdout, spec.Stderr = fds[1], fds[1]
	if http {
		spec.ExtraFiles = []*os.File{fds[0]} // Stdin nil: /dev/null
	} else {
		spec.Stdin = fds[0]
	}
	return spec, nil
}

// listeningUnixSocket checks that f is a unix stream socket in the
// listening state.
func listeningUnixSocket(f *os.File) error {
	fd := int(f.Fd())
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return err
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return err
	}
	if dom != unix.AF_UNIX || typ != unix.SOCK_STREAM || acc != 1 {
		return fmt.Errorf("domain %d, type %d, listening %d: want a listening unix stream socket", dom, typ, acc)
	}
	return nil
}

// pipeWriteEnd checks that f is the write end of a pipe.
func pipeWriteEnd(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO || fl&unix.O_ACCMODE != unix.O_WRONLY {
		return fmt.Errorf("mode %o, flags %#x: want the write end of a pipe", st.Mode, fl)
	}
	return nil
}

// signal sends a signal to a program the front has not killed yet.
func (fc *frontConn) signal(r *SignalRequest) {
	sig := syscall.Signal(r.Signal)
	if !workerSignals[sig] {
		fc.log.Warn("spawner refused a signal", "signal", sig.String(), "handle", r.Handle, "cause", "only the signals a worker is asked to stop or reload with are sent")
		return
	}
	fc.mu.Lock()
	p := fc.live[r.Handle]
	fc.mu.Unlock()
	if p != nil {
		_ = p.Signal(sig)
	}
}

// workerSignals are what the front may have sent to its programs: a stop
// (SIGTERM, SIGINT, SIGQUIT) or a reload (SIGHUP, SIGUSR1, SIGUSR2). Not
// SIGSTOP, which would hold a worker and its cell slot without an end,
// nor the signals that programs' own libraries use internally.
var workerSignals = map[syscall.Signal]bool{
	syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGQUIT: true,
	syscall.SIGHUP: true, syscall.SIGUSR1: true, syscall.SIGUSR2: true,
}

// kill kills a program the front is done with before it exited, and
// forgets it; Kill also reaps it once it has exited. A kill for a program
// already reported finds nothing: spawn has killed and reaped it.
func (fc *frontConn) kill(h uint64) {
	fc.mu.Lock()
	p := fc.live[h]
	delete(fc.live, h)
	fc.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// closeAll kills every program still started for the front: it is gone,
// and nothing else would ever kill them.
func (fc *frontConn) closeAll() {
	fc.mu.Lock()
	fc.done = true
	fc.cancel()
	live := fc.live
	fc.live = nil
	fc.mu.Unlock()
	if len(live) > 0 {
		fc.log.Warn("the front is gone: killing the programs it had started", "programs", len(live))
	}
	for _, p := range live {
		p.Kill()
	}
	fc.wg.Wait()
}
