package spawn

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Started is a started program, in this process or across the boundary:
// what the gateway needs of it (the methods of its Process interface).
type Started interface {
	Pid() int
	Wait() error
	Kill()
}

// Worker is a started app worker, in this process or across the
// boundary: a Started that can also be asked to stop (Signal).
type Worker interface {
	Started
	Signal(sig syscall.Signal) error
}

// LaunchWorker is StartWorker returning the Worker interface, so that a
// Local and a Client can stand in for each other.
func (l *Local) LaunchWorker(ctx context.Context, s *WorkerSpec) (Worker, error) {
	p, err := l.StartWorker(ctx, s)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Launch is Start returning the Started interface, so that a Local and a
// Client can stand in for each other.
func (l *Local) Launch(ctx context.Context, s *Spec) (Started, error) {
	p, err := l.Start(ctx, s)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Client is the front's side of the boundary: it sends spawn and kill
// requests to the spawner and receives replies and exit reports, for any
// number of concurrent requests over one connection.
type Client struct {
	c    *net.UnixConn
	done chan struct{}

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*call          // request id → its waiting Start
	procs   map[uint64]*RemoteProcess // handle → a program not yet reported
	err     error                     // why the connection ended

	nullOnce sync.Once
	null     *os.File
	nullErr  error
}

// call is a Start waiting for its reply; ch is nil once it gave up.
type call struct {
	ch   chan reply
	path string
}

type reply struct {
	p   *RemoteProcess
	err error
}

// ErrSpawnerGone is the error of every request and program when the
// connection to the spawner has ended.
var ErrSpawnerGone = errors.New("the spawner is gone")

// NewClient serves c, one end of the front's connection to the spawner.
func NewClient(c *net.UnixConn) *Client {
	cl := &Client{c: c, done: make(chan struct{}), pending: map[uint64]*call{}, procs: map[uint64]*RemoteProcess{}}
	go cl.read()
	return cl
}

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection: the spawner kills the programs it started for
// this client.
func (c *Client) Close() error {
	err := c.c.Close()
	<-c.done
	if c.null != nil {
		c.null.Close()
	}
	return err
}

// LaunchWorker is StartWorker returning the Worker interface.
func (c *Client) LaunchWorker(ctx context.Context, s *WorkerSpec) (Worker, error) {
	p, err := c.StartWorker(ctx, s)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Launch is Start returning the Started interface.
func (c *Client) Launch(ctx context.Context, s *Spec) (Started, error) {
	p, err := c.Start(ctx, s)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Start asks the spawner to start s. Only the names in s travel: the
// spawner ignores RouteDir and Mode and finds them in its own
// configuration. Refusals come back as *Failure, as Local's do, or as an
// error with the spawner's diagnosis (a full cell budget). When ctx ends
// before the program does, its tree is killed.
func (c *Client) Start(ctx context.Context, s *Spec) (*RemoteProcess, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var fds []*os.File
	for _, f := range []*os.File{s.Stdin, s.Stdout, s.Stderr} {
		if f == nil {
			c.nullOnce.Do(func() { c.null, c.nullErr = os.OpenFile(os.DevNull, os.O_RDWR, 0) })
			if c.nullErr != nil {
				return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: c.nullErr.Error(), Exit: -1, Err: c.nullErr}
			}
			f = c.null
		}
		fds = append(fds, f)
	}
	return c.request(ctx, s.Path, func(id uint64) *Message {
		return &Message{Kind: KindSpawn, FDs: fds, Spawn: &SpawnRequest{
			ID: id, Route: s.Route, Identity: s.Identity, Path: s.Path, Args: s.Args, Env: s.Env, Dir: s.Dir,
		}}
	})
}

// StartWorker asks the spawner to start a worker of the app s.App as
// s.Identity. Only the names and the two descriptors travel (the socket,
// s.Stdin for FastCGI or s.ExtraFiles[0] for HTTP, and the log pipe,
// s.Stdout): the spawner takes the command, environment and directory
// from its own configuration. The worker runs until Signal, Kill or the
// end of the connection: ctx is checked before the request goes out, and
// its end afterwards neither abandons the start nor kills the worker.
func (c *Client) StartWorker(ctx context.Context, s *WorkerSpec) (*RemoteProcess, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sock := s.Stdin
	if len(s.ExtraFiles) > 0 {
		sock = s.ExtraFiles[0]
	}
	if sock == nil || s.Stdout == nil {
		return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: "a worker needs its socket and its log pipe", Exit: -1}
	}
	return c.request(context.WithoutCancel(ctx), s.Path, func(id uint64) *Message {
		return &Message{Kind: KindWorker, FDs: []*os.File{sock, s.Stdout}, Worker: &WorkerRequest{
			ID: id, App: s.App, Identity: s.Identity, Slot: uint32(s.Slot), Socket: s.Socket,
		}}
	})
}

// request sends the message msg(id) makes and waits for its reply. When
// ctx ends before the program does, its tree is killed.
func (c *Client) request(ctx context.Context, path string, msg func(id uint64) *Message) (*RemoteProcess, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, c.gone(path, err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = &call{ch: ch, path: path}
	c.mu.Unlock()

	if err := writeMessage(c.c, msg(id)); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		var me *MessageError
		if errors.As(err, &me) {
			return nil, &Failure{Kind: BadMessage, Path: path, Detail: err.Error(), Exit: -1, Err: err}
		}
		return nil, c.gone(path, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		// The program ends with the request, as Local's does. The
		// registration holds p until ctx ends, which a request's does.
		context.AfterFunc(ctx, r.p.Kill)
		return r.p, nil
	case <-ctx.Done():
		// The reply is still to come: the reader kills what it starts.
		c.mu.Lock()
		if cl, ok := c.pending[id]; ok {
			cl.ch = nil
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		c.mu.Unlock()
		r := <-ch
		if r.err != nil {
			return nil, r.err
		}
		r.p.Kill()
		return nil, ctx.Err()
	}
}

func (c *Client) gone(path string, err error) *Failure {
	return &Failure{Kind: ExecFailed, Path: path, Detail: ErrSpawnerGone.Error() + ": " + err.Error(), Exit: -1, Err: errors.Join(ErrSpawnerGone, err)}
}

// read is the connection's only reader: replies and reports come in order,
// so a program's reply is always handled before its report.
func (c *Client) read() {
	buf, oob := newBuffers()
	var err error
	for {
		var m *Message
		m, err = readMessage(c.c, buf, oob)
		if err != nil {
			var me *MessageError
			if errors.As(err, &me) {
				// A spawner that sends what it must not is not to be
				// trusted further: end the connection.
				c.c.Close()
			}
			break
		}
		m.Close() // the spawner sends no descriptors; a kind that carries some is refused below
		switch m.Kind {
		case KindStarted:
			c.started(m.Started)
		case KindRefused:
			c.refused(m.Refused)
		case KindExited:
			c.exited(m.Exited)
		default:
			err = &MessageError{Kind: m.Kind, Err: ErrUnknownKind, Detail: "not a message the spawner sends"}
			c.c.Close()
		}
		if err != nil {
			break
		}
	}
	if errors.Is(err, net.ErrClosed) {
		err = errClosed
	}
	c.mu.Lock()
	c.err = err
	pending, procs := c.pending, c.procs
	c.pending, c.procs = map[uint64]*call{}, map[uint64]*RemoteProcess{}
	c.mu.Unlock()
	for _, cl := range pending {
		if cl.ch != nil {
			cl.ch <- reply{err: c.gone(cl.path, err)}
		}
	}
	for _, p := range procs {
		p.finish(c.gone(p.path, err), 0)
	}
	close(c.done)
}

func (c *Client) started(s *StartedReply) {
	p := &RemoteProcess{c: c, pid: int(s.Pid), handle: s.Handle, done: make(chan struct{})}
	c.mu.Lock()
	cl, ok := c.pending[s.ID]
	delete(c.pending, s.ID)
	var ch chan reply
	if ok {
		p.path, ch = cl.path, cl.ch
		c.procs[s.Handle] = p
	}
	c.mu.Unlock()
	if ch == nil {
		// Not a request of ours, or its Start gave up waiting: kill it
		// rather than leave it running.
		p.Kill()
		return
	}
	ch <- reply{p: p}
}

func (c *Client) refused(r *Refusal) {
	c.mu.Lock()
	cl, ok := c.pending[r.ID]
	delete(c.pending, r.ID)
	c.mu.Unlock()
	if !ok || cl.ch == nil {
		return
	}
	cl.ch <- reply{err: refusalError(r)}
}

// refusalError rebuilds the spawner's error: a *Failure when it was one,
// else a *RemoteError with the same diagnosis.
func refusalError(r *Refusal) error {
	if r.Cause != 0 {
		return &Failure{Kind: r.Cause, Path: r.Path, Detail: r.Detail, Exit: -1}
	}
	return &RemoteError{CauseText: r.CauseText, Status: int(r.Status), Detail: r.Detail, Retry: r.RetryAfter}
}

func (c *Client) exited(x *ExitReport) {
	c.mu.Lock()
	p := c.procs[x.Handle]
	delete(c.procs, x.Handle)
	c.mu.Unlock()
	if p == nil {
		return
	}
	var err error
	if x.Cause != 0 {
		err = &Failure{Kind: x.Cause, Path: p.path, Detail: x.Detail, Exit: int(x.Exit), Signal: syscall.Signal(x.Signal), Killed: x.Killed, Cell: x.Cell}
	}
	p.finish(err, x.Runtime)
}

// RemoteError is a refusal by the spawner that was not a *Failure, such as
// a full cell budget: its diagnosis as the spawner gave it.
type RemoteError struct {
	CauseText string
	Status    int
	Detail    string
	Retry     time.Duration
}

func (e *RemoteError) Error() string   { return e.CauseText + ": " + e.Detail }
func (e *RemoteError) Cause() string   { return e.CauseText }
func (e *RemoteError) HTTPStatus() int { return e.Status }

// RetryAfter is the spawner's Retry-After, 0 when it gave none.
func (e *RemoteError) RetryAfter() time.Duration { return e.Retry }

// RemoteProcess is a program the spawner started for this front.
type RemoteProcess struct {
	c      *Client
	pid    int
	handle uint64
	path   string

	done    chan struct{}
	once    sync.Once
	err     error
	runtime time.Duration

	killOnce sync.Once
}

// Pid is the program's process id (in the spawner's namespace, which is
// the front's).
func (p *RemoteProcess) Pid() int { return p.pid }

func (p *RemoteProcess) finish(err error, rt time.Duration) {
	p.once.Do(func() {
		p.err, p.runtime = err, rt
		close(p.done)
	})
}

// Wait waits for the spawner's exit report: nil for exit status 0, else a
// *Failure as Process.Wait returns it. When it returns, the program's
// whole tree is gone: the spawner kills what the program left running
// before it reports the exit.
func (p *RemoteProcess) Wait() error {
	<-p.done
	return p.err
}

// Runtime is how long the program ran, from the spawner's report; 0 before
// Wait has returned.
func (p *RemoteProcess) Runtime() time.Duration {
	select {
	case <-p.done:
		return p.runtime
	default:
		return 0
	}
}

// Signal asks the spawner to send sig to the program (SIGTERM: a worker's
// graceful stop). It returns os.ErrProcessDone once the exit report is in.
func (p *RemoteProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return writeMessage(p.c.c, &Message{Kind: KindSignal, Signal: &SignalRequest{Handle: p.handle, Signal: uint32(sig)}})
}

// Kill asks the spawner to kill the program's tree and reap it. It is
// idempotent and safe concurrently with Wait and after it. After the exit
// report it sends nothing: the spawner kills what a program left running
// and reaps it before reporting its exit, and a connection that ended
// took every program with it.
func (p *RemoteProcess) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.killOnce.Do(func() {
		_ = writeMessage(p.c.c, &Message{Kind: KindKill, Kill: &KillRequest{Handle: p.handle}})
	})
}
