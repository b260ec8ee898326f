package spawn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FrontBootFD is the descriptor on which the front finds its bootstrap
// connection to the spawner; the inherited listeners follow it (4, 5, ...).
const FrontBootFD = 3

// Supervisor runs the privileged side of a server started as root: it
// starts the unprivileged front (this program again, as another user),
// serves its spawn requests with Spawner, and starts a new front when one
// dies, keeping the listeners open throughout, so that connections made
// while no front runs wait in the listen queue instead of being refused.
type Supervisor struct {
	Spawner *Spawner // FrontUID must be Cred.Uid
	Path    string   // the front's executable; "" is /proc/self/exe
	Args    []string // its argv, Args[0] included
	Env     []string // its whole environment
	Files   []*os.File
	Cred    *syscall.Credential // the front's uid, gid and groups: never uid 0
	Stdout  *os.File
	Stderr  *os.File
	Log     *slog.Logger

	MinBackoff time.Duration // before the first restart; 0 is 100ms
	MaxBackoff time.Duration // 0 is 5s
	Drain      time.Duration // how long a front may drain after SIGTERM; 0 is 30s

	// Started, when set, is told each front's pid once its connection is
	// up.
	Started func(pid int)

	front atomic.Pointer[os.Process] // the front whose connection is up
}

// ErrNoFront is Signal's error when no front is up.
var ErrNoFront = errors.New("no front is up")

// Signal sends sig to the front that is up (SIGHUP: reload its
// configuration).
func (s *Supervisor) Signal(sig os.Signal) error {
	p := s.front.Load()
	if p == nil {
		return ErrNoFront
	}
	return p.Signal(sig)
}

// FrontExit is how a front ended.
type FrontExit struct {
	Pid   int
	State *os.ProcessState
	// Connected is whether the front came up: it connected to the spawner
	// before it ended.
	Connected bool
}

func (e *FrontExit) Error() string {
	if !e.Connected {
		return fmt.Sprintf("the front (pid %d) ended before it connected to the spawner: %v", e.Pid, e.State)
	}
	return fmt.Sprintf("the front (pid %d) ended: %v", e.Pid, e.State)
}

// Run starts fronts until ctx ends. Then it sends the running front
// SIGTERM so that it drains its requests, waits for it (SIGKILL after
// Drain), lets the spawner kill what is left, and returns.
//
// When the first front ends before it has connected, Run returns its
// *FrontExit at once: a front that cannot start (a configuration file its
// user cannot read, say) would fail the same way every time, and clients
// would wait in the listen queue for nothing. Later fronts are restarted
// whatever their end.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.Cred == nil || s.Cred.Uid == 0 {
		return errors.New("the front must not run as root: no credential or uid 0")
	}
	if s.Spawner.FrontUID != s.Cred.Uid {
		return fmt.Errorf("the spawner expects the front as uid %d, and it starts as uid %d", s.Spawner.FrontUID, s.Cred.Uid)
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 100 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 5 * time.Second
	}
	backoff := minB
	up := false
	for {
		began := time.Now()
		err := s.once(ctx, log)
		if ctx.Err() != nil {
			return nil
		}
		var fe *FrontExit
		if errors.As(err, &fe) {
			up = up || fe.Connected
			if !up {
				log.Error("the front did not start: stopping", "err", err.Error())
				return err
			}
		}
		// A front that served for a while is restarted at once; one that
		// keeps dying is restarted ever more slowly.
		if time.Since(began) > time.Minute {
			backoff = minB
		}
		log.Error("the front died; starting a new one", "err", fmt.Sprint(err), "backoff", backoff.String())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, maxB)
	}
}

// once runs one front from start to end.
func (s *Supervisor) once(ctx context.Context, log *slog.Logger) error {
	boot, theirs, err := Socketpair()
	if err != nil {
		return err
	}
	defer boot.Close()
	tf, err := theirs.File()
	theirs.Close()
	if err != nil {
		return err
	}
	path := s.Path
	if path == "" {
		path = "/proc/self/exe"
	}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       s.Args,
		Env:        s.Env,
		Stdout:     s.Stdout,
		Stderr:     s.Stderr,
		ExtraFiles: append([]*os.File{tf}, s.Files...),
		SysProcAttr: &syscall.SysProcAttr{
			Credential: s.Cred,
			// The front dies with the spawner: it can do nothing without it.
			Pdeathsig: syscall.SIGKILL,
			// Its own session: no controlling terminal, so a front that
			// parsed its way into trouble cannot open /dev/tty and type
			// into the shell that started suserve as root (TIOCSTI).
			Setsid: true,
		},
	}
	// Pdeathsig fires when the thread that forked exits, not the process
	// (go.dev/issue/27505): the goroutine keeps its thread locked until the
	// front has exited. The thread also sets no_new_privs, a per-thread
	// attribute the front inherits across its exec; the goroutine ends
	// locked, so the thread ends with it and no other fork inherits it.
	startc := make(chan error, 1)
	exitc := make(chan *os.ProcessState, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			startc <- fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
			return
		}
		if err := cmd.Start(); err != nil {
			startc <- err
			return
		}
		startc <- nil
		_ = cmd.Wait()
		exitc <- cmd.ProcessState
	}()
	err = <-startc
	tf.Close()
	if err != nil {
		return fmt.Errorf("starting the front: %w", err)
	}
	pid := cmd.Process.Pid
	log.Info("front started", "pid", pid, "uid", s.Cred.Uid, "gid", s.Cred.Gid)

	// The front sends, as its first message, an end of a socketpair it
	// made itself: SO_PEERCRED on it names the front, where on the
	// inherited pair it would name this process, which made that one.
	connc := make(chan *net.UnixConn, 1)
	go func() {
		c, err := acceptHello(boot, pid)
		if err != nil {
			log.Error("the front's connection is refused", "pid", pid, "err", err.Error())
			_ = cmd.Process.Kill()
		}
		connc <- c
	}()
	var state *os.ProcessState
	var conn *net.UnixConn
	select {
	case conn = <-connc:
	case state = <-exitc:
		boot.Close()
		<-connc
		return &FrontExit{Pid: pid, State: state}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exitc
		return nil
	}
	servec := make(chan error, 1)
	if conn != nil {
		s.front.Store(cmd.Process)
		defer s.front.CompareAndSwap(cmd.Process, nil)
		if s.Started != nil {
			s.Started(pid)
		}
		go func() { servec <- s.Spawner.Serve(context.Background(), conn) }()
	} else {
		servec <- nil
	}
	select {
	case state = <-exitc:
	case <-ctx.Done():
		log.Info("stopping: the front drains its requests", "pid", pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		drain := s.Drain
		if drain <= 0 {
			drain = 30 * time.Second
		}
		select {
		case state = <-exitc:
		case <-time.After(drain):
			log.Warn("the front did not drain in time: killing it", "pid", pid)
			_ = cmd.Process.Kill()
			state = <-exitc
		}
	}
	// The front's end is closed with it: Serve sees the end of the
	// connection and kills what the front had started.
	if err := <-servec; err != nil {
		log.Warn("spawner connection", "pid", pid, "err", err.Error())
	}
	if ctx.Err() != nil {
		log.Info("front stopped", "pid", pid, "state", state.String())
		return nil
	}
	return &FrontExit{Pid: pid, State: state, Connected: conn != nil}
}

// acceptHello reads the front's hello on the bootstrap connection and
// returns the connection it carries, checked to come from the front: its
// peer is pid, which made it.
func acceptHello(boot *net.UnixConn, pid int) (*net.UnixConn, error) {
	buf, oob := newBuffers()
	m, err := readMessage(boot, buf, oob)
	if err != nil {
		return nil, err
	}
	if m.Kind != KindHello {
		m.Close()
		return nil, &MessageError{Kind: m.Kind, Err: ErrUnknownKind, Detail: "the front's first message must be hello"}
	}
	c, err := FileConn(m.FDs[0])
	if err != nil {
		return nil, err
	}
	cred, err := PeerCred(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	if int(cred.Pid) != pid {
		c.Close()
		return nil, fmt.Errorf("%w: the connection was made by pid %d, not by the front (pid %d)", ErrWrongPeer, cred.Pid, pid)
	}
	return c, nil
}

// FrontError is a front that finds itself able to do what it must not.
type FrontError struct{ Detail string }

func (e *FrontError) Error() string { return "the front refuses to run: " + e.Detail }

// ConnectFront is the front's first step: it sets no_new_privs, checks
// that it holds neither root nor any capability, makes its own connection
// to the spawner and sends one end over boot (FrontBootFD), and returns
// the client on the other.
func ConnectFront(boot *os.File) (*Client, error) {
	// Nothing this process executes can gain privileges again (setuid
	// binaries, file capabilities). The spawner set it before the exec;
	// a front started some other way sets it on every thread itself, or,
	// in a build with cgo, where the runtime cannot (AllThreadsSyscall is
	// ENOTSUP there), refuses to run.
	if nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); nnp != 1 {
		if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
			boot.Close()
			return nil, fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", e)
		}
	}
	if os.Getuid() == 0 || os.Geteuid() == 0 || os.Getgid() == 0 || os.Getegid() == 0 {
		boot.Close()
		return nil, &FrontError{Detail: fmt.Sprintf("it runs as uid %d gid %d", os.Geteuid(), os.Getegid())}
	}
	var hdr unix.CapUserHeader
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		if data[0].Effective|data[1].Effective|data[0].Permitted|data[1].Permitted != 0 {
			boot.Close()
			return nil, &FrontError{Detail: "it holds capabilities"}
		}
	}
	bc, err := FileConn(boot)
	if err != nil {
		return nil, err
	}
	defer bc.Close()
	mine, theirs, err := Socketpair()
	if err != nil {
		return nil, err
	}
	tf, err := theirs.File()
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, err
	}
	defer tf.Close()
	if err := writeMessage(bc, &Message{Kind: KindHello, FDs: []*os.File{tf}}); err != nil {
		mine.Close()
		return nil, fmt.Errorf("hello to the spawner: %w", err)
	}
	return NewClient(mine), nil
}
