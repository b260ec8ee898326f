package spawn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The messages between the front and the spawner (DESIGN.md "The privilege
// boundary"). One message is one SOCK_SEQPACKET datagram: the kernel keeps
// the boundaries, so a message is never split or merged. Each has a fixed
// shape: a kind byte, then fixed-width little-endian integers and
// length-prefixed strings in an order set by the kind, with no optional
// parts. The decoder checks every length against what is left and against
// the limits below, and refuses trailing bytes, so that a message either
// decodes to exactly one value or is refused with a *MessageError.

// MsgKind says which message a datagram carries.
type MsgKind uint8

// The message kinds. The front sends spawn, worker, kill, signal and
// hello; the spawner sends started, refused and exited.
const (
	KindSpawn   MsgKind = iota + 1 // a program to start; 3 descriptors attached
	KindStarted                    // the reply: the program's handle and pid
	KindRefused                    // the reply: why it was not started
	KindExited                     // how a started program ended
	KindKill                       // kill a started program's tree before it has exited
	KindHello                      // the front's own end of the connection; 1 descriptor attached
	KindWorker                     // an app worker to start; 2 descriptors attached (its socket, its log)
	KindSignal                     // signal a started program (a worker's graceful stop)
)

var kindNames = map[MsgKind]string{
	KindSpawn: "spawn", KindStarted: "started", KindRefused: "refused",
	KindExited: "exited", KindKill: "kill", KindHello: "hello",
	KindWorker: "worker", KindSignal: "signal",
}

func (k MsgKind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// wantFDs is how many descriptors each kind carries.
func (k MsgKind) wantFDs() int {
	switch k {
	case KindSpawn:
		return 3
	case KindWorker:
		return 2
	case KindHello:
		return 1
	}
	return 0
}

// Limits of one message. A request larger than MaxMessage is refused
// whole; the limits on counts keep the decoder's allocations bounded by
// the message's own size.
const (
	MaxMessage = 64 << 10 // bytes in one datagram
	MaxArgs    = 1024     // argv entries
	MaxEnv     = 1024     // environment entries
	MaxString  = 16 << 10 // bytes in one string (path, identity, one argument, detail)
	maxFDs     = 8        // descriptors the receiver makes room for; more is an error
)

// Protocol errors: what was wrong with a message. A *MessageError wraps
// one of them (errors.Is).
var (
	ErrOversized   = errors.New("message larger than the limit")
	ErrTruncated   = errors.New("message truncated")
	ErrTrailing    = errors.New("trailing bytes after the message")
	ErrUnknownKind = errors.New("unknown message kind")
	ErrFDCount     = errors.New("wrong number of descriptors")
	ErrNoRoom      = errors.New("no room for the message's descriptors") // the reader's open-file limit, not the sender's fault
	ErrField       = errors.New("field out of range")
	ErrWrongPeer   = errors.New("the peer is not the front")
)

// MessageError is a message refused by the decoder. Every descriptor that
// came with it has been closed.
type MessageError struct {
	Kind   MsgKind // the kind byte, when there was one
	ID     uint64  // the request id, when the message got that far
	Err    error   // one of the Err* values
	Detail string
}

func (e *MessageError) Error() string {
	s := "spawner message"
	if e.Kind != 0 {
		s += " (" + e.Kind.String() + ")"
	}
	s += ": " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *MessageError) Unwrap() error { return e.Err }

// SpawnRequest asks the spawner to start a program. The spawner takes the
// route and identity as names only: it finds the route's directory and
// run-as mode in its own configuration and checks everything again.
type SpawnRequest struct {
	ID       uint64 // chosen by the front; the reply carries it back
	Route    string // the route path that chose the program ("/~alice/cgi-bin/" for owner routes)
	Identity string
	Path     string
	Args     []string
	Env      []string
	Dir      string
}

// StartedReply is the spawner's reply to a request it carried out.
type StartedReply struct {
	ID     uint64
	Handle uint64 // names the program in Kill and Exited
	Pid    int32
}

// Refusal is the spawner's reply to a request it did not carry out.
type Refusal struct {
	ID         uint64
	Cause      Cause  // the spawn cause, or 0 when the error was not a *Failure
	CauseText  string // the error's Cause(), as the gateway logs it
	Status     uint16 // the HTTP status the client gets
	Path       string
	Detail     string
	RetryAfter time.Duration // a full budget's Retry-After; 0 when none
}

// ExitReport says how a started program ended. The spawner sends it once
// the program has exited and its tree has been killed and reaped, so the
// front sends no kill for a program it has the report of.
type ExitReport struct {
	Handle  uint64
	Cause   Cause // 0: exited with status 0
	Exit    int32 // exit status, or -1
	Signal  int32
	Killed  bool
	Cell    CellEvents
	Runtime time.Duration // from the fork to the exit
	Detail  string
}

// KillRequest asks the spawner to kill a program's tree and reap it.
type KillRequest struct {
	Handle uint64
}

// WorkerRequest asks the spawner to start a worker of an [[app]]. As with
// SpawnRequest only names travel: the spawner finds the app's command,
// environment, directory and protocol in its own configuration. The two
// descriptors are the worker's listening socket, which the front created
// in its own directory (the worker needs no path), and the write end of
// the front's log pipe for the worker's stdout and stderr.
type WorkerRequest struct {
	ID       uint64
	App      string // the app's path, as in the configuration
	Identity string
	Slot     uint32 // the worker's number in its pool: SUSERVE_WORKER
	Socket   string // the socket's path, for SUSERVE_SOCKET only
}

// SignalRequest asks the spawner to send a signal to a started program
// (SIGTERM: a worker's graceful stop).
type SignalRequest struct {
	Handle uint64
	Signal uint32
}

// maxSignal bounds SignalRequest.Signal: the kernel's signals are 1..64.
const maxSignal = 64

// Message is one decoded message: exactly one field is set, as Kind says.
// FDs are the descriptors that came with it, owned by the receiver.
type Message struct {
	Kind    MsgKind
	Spawn   *SpawnRequest
	Started *StartedReply
	Refused *Refusal
	Exited  *ExitReport
	Kill    *KillRequest
	Worker  *WorkerRequest
	Signal  *SignalRequest
	FDs     []*os.File
}

// Close closes the message's descriptors.
func (m *Message) Close() {
	for _, f := range m.FDs {
		f.Close()
	}
	m.FDs = nil
}

// encoder appends fields to a buffer. err is the first string the decoder
// would refuse.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) {
	if len(s) > MaxString && e.err == nil {
		e.err = fmt.Errorf("%w: a string of %d bytes (limit %d)", ErrOversized, len(s), MaxString)
	}
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

// strNoNUL is a string in which the decoder refuses a NUL byte (a path,
// a name, an argument, an environment entry).
func (e *encoder) strNoNUL(s string) {
	if strings.IndexByte(s, 0) >= 0 && e.err == nil {
		e.err = fmt.Errorf("%w: a NUL byte in a string", ErrField)
	}
	e.str(s)
}
func (e *encoder) strs(ss []string) {
	e.u32(uint32(len(ss)))
	for _, s := range ss {
		e.strNoNUL(s)
	}
}

// Encode returns m's bytes. It refuses a message the decoder would refuse,
// so that a sender learns of it before the datagram is sent.
func Encode(m *Message) ([]byte, error) {
	e := &encoder{b: make([]byte, 0, 256)}
	e.u8(uint8(m.Kind))
	switch m.Kind {
	case KindSpawn:
		r := m.Spawn
		if len(r.Args) > MaxArgs || len(r.Env) > MaxEnv {
			return nil, &MessageError{Kind: m.Kind, ID: r.ID, Err: ErrOversized, Detail: fmt.Sprintf("%d arguments, %d environment entries", len(r.Args), len(r.Env))}
		}
		e.u64(r.ID)
		e.strNoNUL(r.Route)
		e.strNoNUL(r.Identity)
		e.strNoNUL(r.Path)
		e.strs(r.Args)
		e.strs(r.Env)
		e.strNoNUL(r.Dir)
	case KindStarted:
		e.u64(m.Started.ID)
		e.u64(m.Started.Handle)
		e.u32(uint32(m.Started.Pid))
	case KindRefused:
		r := m.Refused
		e.u64(r.ID)
		e.u32(uint32(r.Cause))
		e.str(clip(r.CauseText))
		e.u16(r.Status)
		e.str(clip(r.Path))
		e.str(clip(r.Detail))
		e.u64(uint64(max(r.RetryAfter, 0)))
	case KindExited:
		x := m.Exited
		e.u64(x.Handle)
		e.u32(uint32(x.Cause))
		e.u32(uint32(x.Exit))
		e.u32(uint32(x.Signal))
		if x.Killed {
			e.u8(1)
		} else {
			e.u8(0)
		}
		e.u64(uint64(x.Cell.OOMKills))
		e.u64(uint64(x.Cell.PidsMax))
		e.u64(uint64(max(x.Runtime, 0)))
		e.str(clip(x.Detail))
	case KindKill:
		e.u64(m.Kill.Handle)
	case KindWorker:
		r := m.Worker
		e.u64(r.ID)
		e.strNoNUL(r.App)
		e.strNoNUL(r.Identity)
		e.u32(r.Slot)
		e.strNoNUL(r.Socket)
	case KindSignal:
		if m.Signal.Signal == 0 || m.Signal.Signal > maxSignal {
			return nil, &MessageError{Kind: m.Kind, Err: ErrField, Detail: fmt.Sprintf("signal %d", m.Signal.Signal)}
		}
		e.u64(m.Signal.Handle)
		e.u32(m.Signal.Signal)
	case KindHello:
	default:
		return nil, &MessageError{Kind: m.Kind, Err: ErrUnknownKind}
	}
	if e.err != nil {
		return nil, &MessageError{Kind: m.Kind, ID: requestID(m), Err: e.err}
	}
	if len(e.b) > MaxMessage {
		return nil, &MessageError{Kind: m.Kind, ID: requestID(m), Err: ErrOversized, Detail: fmt.Sprintf("%d bytes, limit %d", len(e.b), MaxMessage)}
	}
	return e.b, nil
}

// requestID is the id of a spawn or worker request, 0 for other kinds.
func requestID(m *Message) uint64 {
	switch {
	case m.Spawn != nil:
		return m.Spawn.ID
	case m.Worker != nil:
		return m.Worker.ID
	}
	return 0
}

// clip shortens the spawner's own texts to what the decoder accepts.
func clip(s string) string {
	if len(s) > MaxString {
		return s[:MaxString]
	}
	return s
}

// decoder reads fields, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = ErrTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}
func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}
func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}
func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// str reads a string; noNUL refuses a NUL byte, which no path, argument or
// environment entry can hold (exec would cut it there).
func (d *decoder) str(noNUL bool) string {
	n := d.u32()
	if d.err != nil {
		return ""
	}
	if n > MaxString {
		d.err = fmt.Errorf("%w: a string of %d bytes (limit %d)", ErrOversized, n, MaxString)
		return ""
	}
	v := d.take(int(n))
	if d.err != nil {
		return ""
	}
	s := string(v)
	if noNUL && strings.IndexByte(s, 0) >= 0 {
		d.err = fmt.Errorf("%w: a NUL byte in a string", ErrField)
		return ""
	}
	return s
}

func (d *decoder) strs(limit int) []string {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if n > uint32(limit) {
		d.err = fmt.Errorf("%w: %d entries (limit %d)", ErrOversized, n, limit)
		return nil
	}
	// Each entry takes at least its 4-byte length: a count the rest of the
	// message cannot hold is truncated, and allocates nothing.
	if int(n) > len(d.b)/4 {
		d.err = ErrTruncated
		return nil
	}
	out := make([]string, 0, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		out = append(out, d.str(true))
	}
	return out
}

func (d *decoder) duration() time.Duration {
	v := d.u64()
	if v > math.MaxInt64 {
		d.err = fmt.Errorf("%w: a duration out of range", ErrField)
		return 0
	}
	return time.Duration(v)
}

// Decode parses one datagram and takes ownership of fds: on success they
// are the message's FDs; on any error they are closed and the error is a
// *MessageError.
func Decode(b []byte, fds []*os.File) (*Message, error) {
	m, err := decode(b, len(fds))
	if err != nil {
		for _, f := range fds {
			f.Close()
		}
		return nil, err
	}
	m.FDs = fds
	return m, nil
}

func decode(b []byte, nfds int) (*Message, error) {
	if len(b) > MaxMessage {
		return nil, &MessageError{Err: ErrOversized, Detail: fmt.Sprintf("%d bytes, limit %d", len(b), MaxMessage)}
	}
	if len(b) == 0 {
		return nil, &MessageError{Err: ErrTruncated, Detail: "an empty message"}
	}
	d := &decoder{b: b[1:]}
	m := &Message{Kind: MsgKind(b[0])}
	var id uint64
	switch m.Kind {
	case KindSpawn:
		r := &SpawnRequest{}
		r.ID = d.u64()
		id = r.ID
		r.Route = d.str(true)
		r.Identity = d.str(true)
		r.Path = d.str(true)
		r.Args = d.strs(MaxArgs)
		r.Env = d.strs(MaxEnv)
		r.Dir = d.str(true)
		m.Spawn = r
	case KindStarted:
		m.Started = &StartedReply{ID: d.u64(), Handle: d.u64(), Pid: int32(d.u32())}
		id = m.Started.ID
	case KindRefused:
		r := &Refusal{ID: d.u64()}
		id = r.ID
		r.Cause = Cause(d.u32())
		r.CauseText = d.str(false)
		r.Status = d.u16()
		r.Path = d.str(false)
		r.Detail = d.str(false)
		r.RetryAfter = d.duration()
		m.Refused = r
	case KindExited:
		x := &ExitReport{Handle: d.u64()}
		x.Cause = Cause(d.u32())
		x.Exit = int32(d.u32())
		x.Signal = int32(d.u32())
		switch d.u8() {
		case 0:
		case 1:
			x.Killed = true
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: killed flag", ErrField)
			}
		}
		x.Cell.OOMKills = int64(d.u64())
		x.Cell.PidsMax = int64(d.u64())
		x.Runtime = d.duration()
		x.Detail = d.str(false)
		m.Exited = x
	case KindKill:
		m.Kill = &KillRequest{Handle: d.u64()}
	case KindWorker:
		r := &WorkerRequest{ID: d.u64()}
		id = r.ID
		r.App = d.str(true)
		r.Identity = d.str(true)
		r.Slot = d.u32()
		r.Socket = d.str(true)
		m.Worker = r
	case KindSignal:
		m.Signal = &SignalRequest{Handle: d.u64(), Signal: d.u32()}
		if d.err == nil && (m.Signal.Signal == 0 || m.Signal.Signal > maxSignal) {
			d.err = fmt.Errorf("%w: signal %d", ErrField, m.Signal.Signal)
		}
	case KindHello:
	default:
		return nil, &MessageError{Kind: m.Kind, Err: ErrUnknownKind}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes", ErrTrailing, len(d.b))
	}
	if d.err != nil {
		return nil, &MessageError{Kind: m.Kind, ID: id, Err: d.err}
	}
	if nfds != m.Kind.wantFDs() {
		return nil, &MessageError{Kind: m.Kind, ID: id, Err: ErrFDCount, Detail: fmt.Sprintf("%d attached, want %d", nfds, m.Kind.wantFDs())}
	}
	return m, nil
}

// MessageError unwraps to one of the Err* sentinels, but a nested
// fmt.Errorf("%w: ...") must also match them: errors.Is walks the chain.
var _ interface{ Unwrap() error } = (*MessageError)(nil)

// oobSpace is the control buffer for up to maxFDs descriptors.
var oobSpace = unix.CmsgSpace(maxFDs * 4)

// parseRights turns the control messages of one datagram into files. A
// descriptor that came in any form is returned, so that it is closed.
func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control message: %v", ErrField, err)
	}
	var files []*os.File
	var bad error
	for _, c := range cmsgs {
		if c.Header.Level != unix.SOL_SOCKET || c.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("%w: control message of type %d", ErrField, c.Header.Type)
			continue
		}
		fds, err := unix.ParseUnixRights(&c)
		if err != nil {
			bad = fmt.Errorf("%w: rights: %v", ErrField, err)
			continue
		}
		// The descriptors are close-on-exec already: the net package
		// receives with MSG_CMSG_CLOEXEC (or sets the flag itself where
		// the kernel has none), so no program inherits one by accident.
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, bad
}

// errClosed is a connection the peer has closed.
var errClosed = errors.New("the connection is closed")

// readMessage reads one datagram from c and decodes it. A read of zero
// bytes is the peer's close (SOCK_SEQPACKET reads 0 at end of stream, and
// the net package reports it as io.EOF; the peers never send an empty
// message): errClosed. A
// *MessageError leaves c usable for the next message; any other error is
// the connection's.
func readMessage(c *net.UnixConn, buf, oob []byte) (*Message, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	var fds []*os.File
	if oobn > 0 {
		var ferr error
		fds, ferr = parseRights(oob[:oobn])
		if ferr != nil {
			closeAll(fds)
			b := buf[:max(n, 0)]
			return nil, &MessageError{Kind: kindOf(b), ID: idOf(b), Err: ferr}
		}
	}
	if err != nil {
		closeAll(fds)
		if errors.Is(err, io.EOF) {
			return nil, errClosed
		}
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, errClosed
	}
	switch {
	case flags&unix.MSG_TRUNC != 0 || n > MaxMessage:
		closeAll(fds)
		return nil, &MessageError{Kind: kindOf(buf[:n]), ID: idOf(buf[:n]), Err: ErrOversized, Detail: fmt.Sprintf("more than %d bytes", MaxMessage)}
	case flags&unix.MSG_CTRUNC != 0:
		// Descriptors the kernel could not pass: more than the control
		// buffer holds (it is then full), or fewer because this process
		// is at its open-file limit. The message itself is whole, and its
		// id lets the front answer the request.
		closeAll(fds)
		me := &MessageError{Kind: kindOf(buf[:n]), ID: idOf(buf[:n]), Err: ErrFDCount, Detail: fmt.Sprintf("more than %d descriptors", maxFDs)}
		if len(fds) < maxFDs {
			me.Err, me.Detail = ErrNoRoom, fmt.Sprintf("%d of them received: the open-file limit is reached", len(fds))
		}
		return nil, me
	}
	return Decode(buf[:n], fds)
}

func kindOf(b []byte) MsgKind {
	if len(b) == 0 {
		return 0
	}
	return MsgKind(b[0])
}

// idOf is the request id of a spawn or worker request that could not be
// decoded, which both encode first: the refusal then reaches the request
// that waits for it. 0 (no request) for other kinds and short messages.
func idOf(b []byte) uint64 {
	if len(b) < 9 || (MsgKind(b[0]) != KindSpawn && MsgKind(b[0]) != KindWorker) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[1:9])
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// writeMessage encodes m and sends it with m's descriptors attached.
// Concurrent calls are safe: each is one datagram.
func writeMessage(c *net.UnixConn, m *Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(m.FDs) > 0 {
		fds := make([]int, len(m.FDs))
		for i, f := range m.FDs {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// newBuffers are the receive buffers of one reader: one byte more than
// MaxMessage, so that a larger datagram shows as MSG_TRUNC or n > MaxMessage.
func newBuffers() (buf, oob []byte) {
	return make([]byte, MaxMessage+1), make([]byte, oobSpace)
}

// Socketpair returns the two ends of a new SOCK_SEQPACKET socketpair as
// connections.
func Socketpair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	a, err := FileConn(os.NewFile(uintptr(fds[0]), "spawner-a"))
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := FileConn(os.NewFile(uintptr(fds[1]), "spawner-b"))
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// FileConn makes a connection of a SOCK_SEQPACKET socket's file and closes
// the file (the connection holds its own descriptor).
func FileConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("spawner socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("spawner socket: a %T, not a unix socket", c)
	}
	return uc, nil
}

// PeerCred is the kernel's record of who holds the other end of c
// (SO_PEERCRED): for a socketpair, the process that created it.
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}
