package spawn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// boundary is a spawner serving one end of a socketpair, with the test as
// the front on the other end. The spawner's configuration has two routes
// in f.dir: /acct/ runs programs as alice only, /auth/ as any identity
// policy allows. Both have the authenticated mode's owner check, so that
// the fixture's root-owned programs pass it.
type boundary struct {
	f     *fixture
	s     *Spawner
	front *net.UnixConn
	serve chan error
}

func newBoundary(t *testing.T, frontUID uint32, cells ...Cells) *boundary {
	t.Helper()
	return newBoundaryWith(t, frontUID, func(b *boundary) {
		if len(cells) > 0 {
			b.f.l.Cells = cells[0]
		}
	})
}

// newBoundaryWith is newBoundary with setup run on it before the spawner
// serves.
func newBoundaryWith(t *testing.T, frontUID uint32, setup func(*boundary)) *boundary {
	t.Helper()
	testutil.RequireRoot(t)
	f := newFixture(t)
	b := &boundary{f: f, serve: make(chan error, 1)}
	b.s = &Spawner{
		Local:    f.l,
		FrontUID: frontUID,
		Routes: func(route, id string) (string, string, error) {
			switch route {
			case "/acct/":
				if id != "alice" {
					return "", "", refuse(RouteIdentity, "", "route %s runs programs as alice, not %q", route, id)
				}
				return f.dir, ModeAuthenticated, nil
			case "/auth/":
				return f.dir, ModeAuthenticated, nil
			}
			return "", "", refuse(UnknownRoute, "", "no route %q", route)
		},
	}
	setup(b)
	sp, front, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	b.front = front
	go func() { b.serve <- b.s.Serve(context.Background(), sp) }()
	t.Cleanup(func() {
		front.Close()
		if err := <-b.serve; err != nil && frontUID == 0 {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// pipe returns both ends of a pipe, closed at the end of the test.
func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// run starts s through a client and returns its output and the error of
// Start or Wait.
func (b *boundary) run(c *Client, s *Spec) (string, *RemoteProcess, error) {
	b.f.t.Helper()
	r, w := pipe(b.f.t)
	s.Stdout = w
	p, err := c.Start(context.Background(), s)
	w.Close()
	if err != nil {
		return "", nil, err
	}
	defer p.Kill()
	out, _ := io.ReadAll(r)
	return string(out), p, p.Wait()
}

func TestClientRunsProgramsThroughTheSpawner(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	out, p, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "id"}, Route: "/acct/", Identity: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "61001 61001 [61001 61050]\n"; out != want {
		t.Fatalf("the program reports %q, want %q", out, want)
	}
	if p.Pid() <= 0 || p.Runtime() <= 0 {
		t.Errorf("pid %d, runtime %v", p.Pid(), p.Runtime())
	}
}

func TestRemoteEndingsKeepTheirDiagnosis(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	probe := b.f.probe("probe")

	_, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "exit", "3"}, Route: "/acct/", Identity: "alice"})
	f := failure(t, err, Exited)
	if f.ExitCode() != 3 || f.HTTPStatus() != 502 || f.Sys() != syscall.WaitStatus(3<<8) {
		t.Errorf("exit 3 came back as code %d, status %d, sys %v", f.ExitCode(), f.HTTPStatus(), f.Sys())
	}

	_, _, err = b.run(c, &Spec{Path: probe, Args: []string{"probe", "signal"}, Route: "/acct/", Identity: "alice"})
	if f := failure(t, err, Signaled); f.Signal != syscall.SIGTERM || f.Killed {
		t.Errorf("a program that killed itself: %v killed=%v", f.Signal, f.Killed)
	}

	p, err := c.Start(context.Background(), &Spec{Path: probe, Args: []string{"probe", "sleep"}, Route: "/acct/", Identity: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if f := failure(t, p.Wait(), Signaled); f.Signal != syscall.SIGKILL || !f.Killed || !strings.Contains(f.Error(), "sent by suserve") {
		t.Errorf("Kill came back as %v", f)
	}
	pidGone(t, p.Pid())
}

func TestContextEndKillsARemoteProgram(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := c.Start(ctx, &Spec{Path: b.f.probe("probe"), Args: []string{"probe", "sleep"}, Route: "/acct/", Identity: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	failure(t, p.Wait(), Signaled)
	pidGone(t, p.Pid())
}

// TestFrontSeesAProgramCloseItsOutput: once a program has started, the
// spawner holds no copy of the descriptors the front sent, so a program
// that closes its output while it runs is seen to close it, as it is
// in-process, not only after the spawner has reported its exit.
func TestFrontSeesAProgramCloseItsOutput(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	r, w := pipe(t)
	p, err := c.Start(context.Background(), &Spec{Path: b.f.probe("probe"), Args: []string{"probe", "close"}, Route: "/acct/", Identity: "alice", Stdout: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	// A guard, not a synchronisation: the end of output is the event.
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("the output did not end while the program ran: %v", err)
	}
	if err := syscall.Kill(p.Pid(), 0); err != nil || p.Runtime() != 0 {
		t.Fatalf("the program is no longer running (%v, runtime %v): it should sleep after closing its output", err, p.Runtime())
	}
}

// TestSpawnerRefusesWhatPolicyForbids sends requests a compromised front
// could send: each is refused with its cause, and the spawner goes on
// serving.
func TestSpawnerRefusesWhatPolicyForbids(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	outside := filepath.Join(base, "probe") // the original, outside every route
	for _, tc := range []struct {
		name string
		spec Spec
		want Cause
	}{
		{"uid 0 identity", Spec{Path: probe, Route: "/auth/", Identity: "root"}, RootIdentity},
		{"supplementary group 0", Spec{Path: probe, Route: "/auth/", Identity: "wheel"}, RootIdentity},
		{"identity below uid_min", Spec{Path: probe, Route: "/auth/", Identity: "low"}, BelowMinimum},
		{"no identity: the server's own, root", Spec{Path: probe, Route: "/auth/"}, RootIdentity},
		{"unknown identity", Spec{Path: probe, Route: "/auth/", Identity: "mallory"}, UnknownIdentity},
		{"path outside every route", Spec{Path: outside, Route: "/acct/", Identity: "alice"}, Outside},
		{"path with ..", Spec{Path: b.f.dir + "/../probe", Route: "/acct/", Identity: "alice"}, DotDot},
		{"unknown route", Spec{Path: probe, Route: "/elsewhere/", Identity: "alice"}, UnknownRoute},
		{"route's directory claimed by the front is ignored", Spec{Path: outside, Route: "/acct/", Identity: "alice", RouteDir: base}, Outside},
		{"identity the account route does not run as", Spec{Path: probe, Route: "/acct/", Identity: "bob"}, RouteIdentity},
		{"working directory outside the route", Spec{Path: probe, Route: "/acct/", Identity: "alice", Dir: "/root"}, Outside},
		{"working directory with ..", Spec{Path: probe, Route: "/acct/", Identity: "alice", Dir: b.f.dir + "/../.."}, DotDot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			_, err := c.Start(context.Background(), &s)
			f := failure(t, err, tc.want)
			if f.HTTPStatus() != 403 {
				t.Errorf("status %d, want 403", f.HTTPStatus())
			}
			if out, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "exit", "0"}, Route: "/acct/", Identity: "alice"}); err != nil {
				t.Fatalf("the spawner no longer serves: %q %v", out, err)
			}
		})
	}
}

// raw sends bytes with descriptors straight to the spawner and returns its
// reply.
func (b *boundary) raw(t *testing.T, msg []byte, fds ...*os.File) *Message {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		ints := make([]int, len(fds))
		for i, f := range fds {
			ints[i] = int(f.Fd())
		}
		oob = unix.UnixRights(ints...)
	}
	if _, _, err := b.front.WriteMsgUnix(msg, oob, nil); err != nil {
		t.Fatal(err)
	}
	buf, ob := newBuffers()
	b.front.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := readMessage(b.front, buf, ob)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return m
}

func spawnBytes(t *testing.T, id uint64, path string) []byte {
	t.Helper()
	b, err := Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{ID: id, Route: "/acct/", Identity: "alice", Path: path, Args: []string{"probe", "exit", "0"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSpawnerRefusesMalformedMessagesAndClosesTheirDescriptors(t *testing.T) {
	b := newBoundary(t, 0)
	probe := b.f.probe("probe")
	good := spawnBytes(t, 7, probe)
	big := make([]byte, MaxMessage+100)
	big[0] = byte(KindSpawn)
	big[1] = 9 // its id, little-endian
	hugeCount := append([]byte{byte(KindSpawn)}, make([]byte, 8)...)
	hugeCount = append(hugeCount, 0xff, 0xff, 0xff, 0x7f)
	for _, tc := range []struct {
		name  string
		msg   []byte
		nfds  int
		want  error
		wantI uint64
	}{
		{"no descriptors", good, 0, ErrFDCount, 7},
		{"two descriptors", good, 2, ErrFDCount, 7},
		{"four descriptors", good, 4, ErrFDCount, 7},
		{"more descriptors than room", good, maxFDs + 2, ErrFDCount, 7},
		{"oversized", big, 3, ErrOversized, 9},
		{"truncated", good[:len(good)-3], 3, ErrTruncated, 7},
		{"trailing bytes", append(append([]byte{}, good...), 0), 3, ErrTrailing, 7},
		{"a string longer than the rest", hugeCount, 3, ErrOversized, 0},
		{"unknown kind", []byte{99, 1, 2, 3}, 0, ErrUnknownKind, 0},
		{"a kill without its handle", []byte{byte(KindKill)}, 0, ErrTruncated, 0},
		{"started, from the front", append([]byte{byte(KindStarted)}, make([]byte, 20)...), 0, ErrUnknownKind, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each descriptor is the write end of a pipe that the test closes
			// at once: the read end sees EOF only once the spawner has closed
			// its copy too.
			var fds []*os.File
			var reads []*os.File
			for range tc.nfds {
				r, w := pipe(t)
				fds, reads = append(fds, w), append(reads, r)
			}
			m := b.raw(t, tc.msg, fds...)
			for _, w := range fds {
				w.Close()
			}
			if m.Kind != KindRefused {
				t.Fatalf("reply %v, want refused", m.Kind)
			}
			r := m.Refused
			if r.Cause != BadMessage || r.Status != 403 || r.ID != tc.wantI || !strings.Contains(r.Detail, tc.want.Error()) {
				t.Fatalf("refusal %+v, want cause %q, id %d, detail with %q", r, BadMessage, tc.wantI, tc.want)
			}
			for _, rd := range reads {
				rd.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := rd.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Fatalf("a descriptor sent with the message is still open in the spawner (%d, %v)", n, err)
				}
			}
			// The spawner still serves.
			nul := devNull(t)
			m = b.raw(t, spawnBytes(t, 8, probe), nul, nul, nul)
			if m.Kind != KindStarted || m.Started.ID != 8 {
				t.Fatalf("after the bad message a good one got %v %+v", m.Kind, m.Refused)
			}
			buf, ob := newBuffers()
			x, err := readMessage(b.front, buf, ob)
			if err != nil || x.Kind != KindExited || x.Exited.Handle != m.Started.Handle || x.Exited.Cause != 0 {
				t.Fatalf("exit report %+v, %v", x, err)
			}
			kill, _ := Encode(&Message{Kind: KindKill, Kill: &KillRequest{Handle: m.Started.Handle}})
			if _, err := b.front.Write(kill); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReadMessageRefusesControlMessagesOtherThanRights: control data that
// holds anything but SCM_RIGHTS (here SCM_CREDENTIALS, which a socket with
// SO_PASSCRED receives) makes the message a refusal that names its request,
// and the descriptors that came with it are closed.
func TestReadMessageRefusesControlMessagesOtherThanRights(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(pair[1], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range pair {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c.(*net.UnixConn)
	}
	r, w := pipe(t)
	cred := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
	if _, _, err := conns[0].WriteMsgUnix(spawnBytes(t, 7, "/bin/true"), append(unix.UnixRights(int(w.Fd())), cred...), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Room for the credentials besides the descriptor, so that the
	// descriptor arrives (a control buffer too small for both would have
	// the kernel close it).
	buf, _ := newBuffers()
	m, err := readMessage(conns[1], buf, make([]byte, 256))
	var me *MessageError
	if !errors.As(err, &me) || !errors.Is(err, ErrField) || me.ID != 7 || me.Kind != KindSpawn {
		t.Fatalf("readMessage: %v, %v; want a refusal of spawn request 7 (%v)", m, err, ErrField)
	}
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the descriptor sent with the message is still open (%d, %v)", n, err)
	}
}

func TestSpawnerRefusesAPeerWithTheWrongUID(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	s := &Spawner{Local: f.l, FrontUID: testutil.AliceUID}
	sp, front, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	err = s.Serve(context.Background(), sp)
	var pe *PeerError
	if !errors.As(err, &pe) || !errors.Is(err, ErrWrongPeer) || pe.UID != 0 || pe.Want != testutil.AliceUID {
		t.Fatalf("Serve with a root peer: %v, want a *PeerError", err)
	}
	buf, oob := newBuffers()
	if _, err := readMessage(front, buf, oob); !errors.Is(err, errClosed) {
		t.Fatalf("the refused peer's connection: %v, want closed", err)
	}
}

func TestFrontClosingKillsItsPrograms(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	var pids []int
	for range 3 {
		p, err := c.Start(context.Background(), &Spec{Path: probe, Args: []string{"probe", "sleep"}, Route: "/acct/", Identity: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, p.Pid())
	}
	c.Close()
	for _, pid := range pids {
		pidGone(t, pid)
	}
	if err := <-b.serve; err != nil {
		t.Fatalf("Serve after the front closed: %v", err)
	}
	b.serve <- nil
	if _, err := c.Start(context.Background(), &Spec{Path: probe, Route: "/acct/", Identity: "alice"}); !errors.Is(err, ErrSpawnerGone) {
		t.Fatalf("Start after the connection ended: %v, want ErrSpawnerGone", err)
	}
}

func TestEncodeRefusesWhatDecodeWould(t *testing.T) {
	_, err := Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{Env: make([]string, MaxEnv+1)}})
	if !errors.Is(err, ErrOversized) {
		t.Errorf("too many env entries: %v", err)
	}
	_, err = Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{Args: []string{strings.Repeat("x", MaxMessage)}}})
	if !errors.Is(err, ErrOversized) {
		t.Errorf("an oversized message: %v", err)
	}
	if _, err := Encode(&Message{Kind: 77}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("an unknown kind: %v", err)
	}
	// One string over its limit, in a message under its own: refused
	// with the request's id, so that its caller learns of it.
	var me *MessageError
	_, err = Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{ID: 5, Env: []string{"QUERY_STRING=" + strings.Repeat("q", MaxString)}}})
	if !errors.Is(err, ErrOversized) || !errors.As(err, &me) || me.ID != 5 {
		t.Errorf("a string over MaxString: %v", err)
	}
	for _, m := range []*Message{
		{Kind: KindSpawn, Spawn: &SpawnRequest{Env: []string{"A=b\x00c"}}},
		{Kind: KindSpawn, Spawn: &SpawnRequest{Path: "/a\x00b"}},
		{Kind: KindWorker, Worker: &WorkerRequest{Socket: "/s\x00"}},
	} {
		if _, err := Encode(m); !errors.Is(err, ErrField) {
			t.Errorf("a NUL byte in %+v: %v", m, err)
		}
	}
}

func TestSignalOutsideTheKernelsRangeIsRefused(t *testing.T) {
	for _, sig := range []uint32{0, 65, 1 << 31} {
		if _, err := Encode(&Message{Kind: KindSignal, Signal: &SignalRequest{Handle: 1, Signal: sig}}); !errors.Is(err, ErrField) {
			t.Errorf("encode signal %d: %v", sig, err)
		}
		b := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64([]byte{byte(KindSignal)}, 1), sig)
		if _, err := Decode(b, nil); !errors.Is(err, ErrField) {
			t.Errorf("decode signal %d: %v", sig, err)
		}
	}
}

func TestDecodeRefusesNULInPaths(t *testing.T) {
	b, err := Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{Path: "/a\x01b"}})
	if err != nil {
		t.Fatal(err)
	}
	b[bytes.Index(b, []byte("/a\x01b"))+2] = 0 // what Encode refuses, sent all the same
	if _, err := Decode(b, nil); !errors.Is(err, ErrField) {
		t.Fatalf("a NUL in the path: %v", err)
	}
}

func FuzzSpawnerMessage(f *testing.F) {
	seeds := []*Message{
		{Kind: KindSpawn, Spawn: &SpawnRequest{ID: 1, Route: "/cgi-bin/", Identity: "alice", Path: "/srv/cgi-bin/x", Args: []string{"x", "-v"}, Env: []string{"A=b"}, Dir: "/srv"}},
		{Kind: KindStarted, Started: &StartedReply{ID: 1, Handle: 2, Pid: 3}},
		{Kind: KindRefused, Refused: &Refusal{ID: 1, Cause: Outside, CauseText: "refused", Status: 403, Path: "/x", Detail: "d", RetryAfter: time.Second}},
		{Kind: KindExited, Exited: &ExitReport{Handle: 2, Cause: Signaled, Exit: -1, Signal: 9, Killed: true, Cell: CellEvents{OOMKills: 1}, Runtime: time.Millisecond, Detail: "oom"}},
		{Kind: KindKill, Kill: &KillRequest{Handle: 9}},
		{Kind: KindHello},
		{Kind: KindWorker, Worker: &WorkerRequest{ID: 4, App: "/wiki/", Identity: "wiki", Slot: 2, Socket: "/var/lib/suserve/apps/wiki/2.sock"}},
		{Kind: KindSignal, Signal: &SignalRequest{Handle: 9, Signal: 15}},
	}
	for _, m := range seeds {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{99})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b, kindOf(b).wantFDs())
		if err != nil {
			var me *MessageError
			if !errors.As(err, &me) {
				t.Fatalf("error %v is not a *MessageError", err)
			}
			return
		}
		// What decodes encodes to the same bytes: one message, one form.
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the message:\n%x\n%x", b, again)
		}
	})
}

// gateCells holds every Acquire for bob until the gate opens, and admits
// everyone else at once; slots are no cell at all.
type gateCells struct {
	gate    chan struct{}
	waiting chan struct{}
}

func (g *gateCells) Acquire(ctx context.Context, id string) (Slot, error) {
	if id == "bob" {
		g.waiting <- struct{}{}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nullSlot{}, nil
}

type nullSlot struct{}

func (nullSlot) Spawn(fork func(*syscall.SysProcAttr) (int, error)) (int, error) {
	return fork(&syscall.SysProcAttr{})
}
func (nullSlot) Kill(context.Context) error  { return nil }
func (nullSlot) Events() (CellEvents, error) { return CellEvents{}, nil }
func (nullSlot) Release()                    {}

// TestSpawnsDoNotWaitForEachOther holds one request in its cell's
// admission: another identity's requests are started meanwhile. Also with
// one P, which suserve's spawner runs on (cmd/suserve spawnerProcs).
func TestSpawnsDoNotWaitForEachOther(t *testing.T) {
	for _, procs := range []int{1, runtime.GOMAXPROCS(0)} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			spawnsDoNotWaitForEachOther(t)
		})
	}
}

func spawnsDoNotWaitForEachOther(t *testing.T) {
	g := &gateCells{gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	b := newBoundary(t, 0, g)
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	held := make(chan error, 1)
	go func() {
		_, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "exit", "0"}, Route: "/auth/", Identity: "bob"})
		held <- err
	}()
	<-g.waiting
	for range 3 {
		if out, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "id"}, Route: "/auth/", Identity: "alice"}); err != nil || !strings.HasPrefix(out, "61001 ") {
			t.Fatalf("alice's request while bob's waits: %q %v", out, err)
		}
	}
	close(g.gate)
	if err := <-held; err != nil {
		t.Fatalf("bob's request after the gate opened: %v", err)
	}
}

// TestSpawnerBoundsTheRequestsItHolds: with MaxWaiting requests waiting
// for their cell, the next is refused at once with 503 and a Retry-After,
// and once they are answered the spawner takes requests again.
func TestSpawnerBoundsTheRequestsItHolds(t *testing.T) {
	g := &gateCells{gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	b := newBoundaryWith(t, 0, func(b *boundary) {
		b.f.l.Cells = g
		b.s.MaxWaiting = 2
	})
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	held := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "exit", "0"}, Route: "/auth/", Identity: "bob"})
			held <- err
		}()
		<-g.waiting
	}
	_, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "exit", "0"}, Route: "/auth/", Identity: "alice"})
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 503 || re.CauseText != "spawner busy" || re.Retry != time.Second || !strings.Contains(re.Detail, "2 requests already wait") {
		t.Fatalf("a third request while two wait: %#v (%v), want 503 spawner busy with Retry-After", err, err)
	}
	close(g.gate)
	for range 2 {
		if err := <-held; err != nil {
			t.Fatalf("a held request after the gate opened: %v", err)
		}
	}
	if out, _, err := b.run(c, &Spec{Path: probe, Args: []string{"probe", "id"}, Route: "/auth/", Identity: "alice"}); err != nil || !strings.HasPrefix(out, "61001 ") {
		t.Fatalf("a request once the others were answered: %q %v", out, err)
	}
}

// TestSpawnerAtItsOpenFileLimitAnswers503: when the spawner has room for
// only one of a request's three descriptors, the kernel cuts them off; the
// request was fine, so the answer is 503 with a Retry-After for that
// request, not a refusal of a malformed message, and the spawner serves
// the next one once it has room again.
func TestSpawnerAtItsOpenFileLimitAnswers503(t *testing.T) {
	b := newBoundary(t, 0)
	probe := b.f.probe("probe")
	nul := devNull(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = roomForOneMoreFile(t)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	m := b.raw(t, spawnBytes(t, 11, probe), nul, nul, nul)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindRefused {
		t.Fatalf("reply %v, want refused", m.Kind)
	}
	if r := m.Refused; r.ID != 11 || r.Status != 503 || r.CauseText != "spawner busy" || r.RetryAfter <= 0 || !strings.Contains(r.Detail, "open-file limit") {
		t.Fatalf("refusal %+v, want request 11 answered 503 spawner busy with a Retry-After, naming the open-file limit", r)
	}
	if m := b.raw(t, spawnBytes(t, 12, probe), nul, nul, nul); m.Kind != KindStarted || m.Started.ID != 12 {
		t.Fatalf("with room again, a request got %v %+v", m.Kind, m.Refused)
	}
}

// roomForOneMoreFile is the open-file limit under which this process can
// open one more descriptor and no second: the limit is the second-lowest
// free descriptor number, so only the lowest is under it.
func roomForOneMoreFile(t *testing.T) uint64 {
	t.Helper()
	n := 0
	for fdOpen(n) {
		n++
	}
	for n++; fdOpen(n); n++ {
	}
	return uint64(n)
}

func fdOpen(n int) bool {
	_, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0)
	return err == nil
}

// TestSpawnerStopsReadingAFrontThatReadsNoAnswers: a request counts
// against MaxWaiting until its answer is sent, so a front that sends and
// never reads soon finds the spawner reading no more of its requests
// (rather than holding a goroutine for each); and once it reads, every
// request it got through is answered, once.
func TestSpawnerStopsReadingAFrontThatReadsNoAnswers(t *testing.T) {
	b := newBoundaryWith(t, 0, func(b *boundary) { b.s.MaxWaiting = 2 })
	nul := devNull(t)
	oob := unix.UnixRights(int(nul.Fd()), int(nul.Fd()), int(nul.Fd()))
	probe := b.f.probe("probe")
	before := runtime.NumGoroutine()
	sent := 0
	for id := uint64(1); id <= 5000; id++ {
		msg, err := Encode(&Message{Kind: KindSpawn, Spawn: &SpawnRequest{ID: id, Route: "/elsewhere/", Identity: "alice", Path: probe}})
		if err != nil {
			t.Fatal(err)
		}
		b.front.SetWriteDeadline(time.Now().Add(time.Second))
		if _, _, err := b.front.WriteMsgUnix(msg, oob, nil); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
		sent++
		// A steady front, not a burst: each request's checks are done
		// before the next arrives, so that only answers still unsent
		// count against the bound.
		time.Sleep(200 * time.Microsecond)
	}
	if sent == 5000 {
		t.Fatal("the spawner read 5000 requests from a front that read none of its answers")
	}
	// The spawner is stuck now: a goroutine per request it holds.
	if n := runtime.NumGoroutine() - before; n > 2*b.s.MaxWaiting+5 {
		t.Errorf("the spawner holds %d goroutines more for a front that reads nothing, with MaxWaiting %d", n, b.s.MaxWaiting)
	}
	t.Logf("the spawner stopped reading after %d requests; goroutines +%d", sent, runtime.NumGoroutine()-before)
	seen := map[uint64]bool{}
	buf, ob := newBuffers()
	b.front.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(seen) < sent {
		m, err := readMessage(b.front, buf, ob)
		if err != nil {
			t.Fatalf("after %d answers: %v", len(seen), err)
		}
		if m.Kind != KindRefused || seen[m.Refused.ID] || m.Refused.ID == 0 || m.Refused.ID > uint64(sent) {
			t.Fatalf("answer %v %+v after %d", m.Kind, m.Refused, len(seen))
		}
		seen[m.Refused.ID] = true
	}
}

// TestFrontDeathEndsAWaitingRequest closes the front while a request
// waits for its cell: the spawner gives up on it and Serve returns.
func TestFrontDeathEndsAWaitingRequest(t *testing.T) {
	g := &gateCells{gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	b := newBoundary(t, 0, g)
	c := NewClient(b.front)
	probe := b.f.probe("probe")
	held := make(chan error, 1)
	go func() {
		_, err := c.Start(context.Background(), &Spec{Path: probe, Route: "/auth/", Identity: "bob"})
		held <- err
	}()
	<-g.waiting
	c.Close()
	if err := <-held; !errors.Is(err, ErrSpawnerGone) {
		t.Fatalf("the waiting request: %v, want ErrSpawnerGone", err)
	}
	if err := <-b.serve; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	b.serve <- nil
}

// BenchmarkBoundary is one program started, waited for and killed, in
// process and across the boundary: the difference is the boundary's cost.
func BenchmarkBoundary(b *testing.B) {
	testutil.RequireRoot(b)
	dir, err := os.MkdirTemp(base, "bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	prog := filepath.Join(dir, "probe")
	data, _ := os.ReadFile(probePath)
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		b.Fatal(err)
	}
	l := &Local{Identities: testIDs}
	spec := func() *Spec {
		return &Spec{Path: prog, Args: []string{"probe"}, Route: "/r/", RouteDir: dir, Mode: ModeAuthenticated, Identity: "alice"}
	}
	b.Run("local", func(b *testing.B) {
		for b.Loop() {
			p, err := l.Launch(context.Background(), spec())
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			p.Kill()
		}
	})
	b.Run("boundary", func(b *testing.B) {
		s := &Spawner{Local: l, Routes: func(string, string) (string, string, error) { return dir, ModeAuthenticated, nil }}
		sp, front, err := Socketpair()
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background(), sp) }()
		c := NewClient(front)
		for b.Loop() {
			p, err := c.Launch(context.Background(), spec())
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Wait(); err != nil {
				b.Fatal(err)
			}
			p.Kill()
		}
		c.Close()
		<-done
	})
}

// TestExitReportComesWithTheTreeGone: the spawner kills what a program
// left running and reaps it before it reports the exit, as the gateway
// kills after every Wait, so no kill from the front is needed for it.
func TestExitReportComesWithTheTreeGone(t *testing.T) {
	b := newBoundary(t, 0)
	c := NewClient(b.front)
	r, w := pipe(t)
	p, err := c.Start(context.Background(), &Spec{Path: b.f.probe("probe"), Args: []string{"probe", "bg", "exit"}, Route: "/acct/", Identity: "alice", Stdout: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the probe's output: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("the probe printed %q", line)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	// No Kill: the background child goes with the report.
	pidGone(t, child)
	pidGone(t, p.Pid())
}

// TestKillAfterTheReportSendsNothing plays the spawner to a client: once
// the exit report is in, Kill has nothing to ask for, and the next
// message the spawner reads is the next request.
func TestKillAfterTheReportSendsNothing(t *testing.T) {
	sp, front, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c := NewClient(front)
	defer c.Close()
	buf, oob := newBuffers()
	started := make(chan *RemoteProcess, 1)
	go func() {
		p, err := c.Start(context.Background(), &Spec{Path: "/bin/true", Route: "/r/", Identity: "alice"})
		if err != nil {
			t.Error(err)
		}
		started <- p
	}()
	next := func() *Message {
		t.Helper()
		sp.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := readMessage(sp, buf, oob)
		if err != nil {
			t.Fatalf("the spawner's side reads: %v", err)
		}
		m.Close()
		return m
	}
	m := next()
	if m.Kind != KindSpawn {
		t.Fatalf("first message %v, want spawn", m.Kind)
	}
	for _, reply := range []*Message{
		{Kind: KindStarted, Started: &StartedReply{ID: m.Spawn.ID, Handle: 7, Pid: 1}},
		{Kind: KindExited, Exited: &ExitReport{Handle: 7}},
	} {
		if err := writeMessage(sp, reply); err != nil {
			t.Fatal(err)
		}
	}
	p := <-started
	if p == nil {
		t.FailNow()
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	p.Kill()
	go c.Start(context.Background(), &Spec{Path: "/bin/false", Route: "/r/", Identity: "alice"})
	if m := next(); m.Kind != KindSpawn || m.Spawn.Path != "/bin/false" {
		t.Fatalf("after Kill of a reported program the spawner read %v %+v, want the next spawn", m.Kind, m.Kill)
	}
}
