package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/server"
	"github.com/suserve/suserve/internal/spawn"
	"github.com/suserve/suserve/internal/testutil"
)

// binary is suserve built once for the end-to-end tests, which run it as
// root and watch it split into spawner and front.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "suserve-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "suserve")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building suserve: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// frontUID is the front's [server] user, given as a bare uid: the tests
// create no accounts.
const frontUID = 61050

// instance is suserve started as root from the built binary.
type instance struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
	log  *testutil.LogBuffer
	done chan struct{}
}

// helloProgram is a CGI program that says which uid runs it.
const helloProgram = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello %s\\n' \"$(id -u)\"\n"

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freeLowAddr is a loopback address with a port free a moment ago that
// only root can open: below 1024, and below the host's
// net.ipv4.ip_unprivileged_port_start. Where that setting lets every user
// open every port, it is any free port, and the test says so.
func freeLowAddr(t *testing.T) string {
	t.Helper()
	top := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			top = min(top, n)
		}
	}
	for port := top - 1; port >= max(top-400, 1); port-- {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return ln.Addr().String()
		}
	}
	t.Logf("no free port that only root can open (ip_unprivileged_port_start %d): listening on any", top)
	return freeAddr(t)
}

// startSuserve writes a configuration with one route of two programs,
// hello and slow, run as alice, and starts suserve on a free loopback
// port. It returns once the front answers.
func startSuserve(t *testing.T, cells string) *instance {
	t.Helper()
	return startSuserveWith(t, cells, nil)
}

// startSuserveWith is startSuserve with more configuration: extra(dir)
// returns sections appended to the file, which lies in dir.
func startSuserveWith(t *testing.T, cells string, extra func(dir string) string) *instance {
	t.Helper()
	return startSuserveCmd(t, cells, extra, nil)
}

// startSuserveCmd is startSuserveWith with prep(cmd) called on suserve's
// command before it starts.
func startSuserveCmd(t *testing.T, cells string, extra func(dir string) string, prep func(*exec.Cmd)) *instance {
	t.Helper()
	testutil.RequireRoot(t)
	// The front reads the configuration as its own user: every directory
	// on the way must let it through.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cgi := filepath.Join(dir, "cgi")
	if err := os.Mkdir(cgi, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"hello": helloProgram,
		"motd":  motdProgram,
		// The header block, then its pid in the body, then it waits.
		"slow": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' $$\nexec sleep 300\n",
	} {
		writeProgram(t, filepath.Join(cgi, name), body, testutil.AliceUID)
	}
	addr := freeAddr(t)
	conf := fmt.Sprintf(`[server]
listen = %q
user = "%d"
shutdown_timeout = "2s"

[identities]
source = "static"

[[identities.static]]
name = "alice"
uid = %d
gid = %d
home = "/nonexistent"

[cells]
%s

[[route]]
path = "/cgi-bin/"
dir = %q
run_as = "account"
account = "alice"
`, addr, frontUID, testutil.AliceUID, testutil.AliceUID, cells, cgi)
	if extra != nil {
		conf += extra(dir)
	}
	file := filepath.Join(dir, "suserve.toml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "-config", file)
	if prep != nil {
		prep(cmd)
	}
	in := startInstance(t, dir, addr, cmd)
	in.waitServing(10 * time.Second)
	return in
}

// reload writes text to the configuration file, sends suserve SIGHUP and
// waits for one more log line containing wantLog.
func (in *instance) reload(text, wantLog string) {
	in.t.Helper()
	before := in.log.Count(wantLog)
	if err := os.WriteFile(filepath.Join(in.dir, "suserve.toml"), []byte(text), 0o644); err != nil {
		in.t.Fatal(err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		in.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for in.log.Count(wantLog) == before {
		if time.Now().After(deadline) {
			in.t.Fatalf("no new %q in the log after SIGHUP:\n%s", wantLog, in.log.String())
		}
		time.Sleep(5 * time.Millisecond) // the log has no event to wait on
	}
}

// startInstance starts cmd, suserve serving on addr with its files in
// dir, and stops it at the end of the test: SIGTERM, then a kill after 15s.
func startInstance(t *testing.T, dir, addr string, cmd *exec.Cmd) *instance {
	t.Helper()
	in := &instance{t: t, dir: dir, addr: addr, cmd: cmd, log: &testutil.LogBuffer{}, done: make(chan struct{})}
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.cmd.Wait(); close(in.done) }()
	t.Cleanup(func() {
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(15 * time.Second):
			in.cmd.Process.Kill()
			<-in.done
		}
		if t.Failed() {
			t.Logf("suserve's log:\n%s", in.log.String())
		}
	})
	return in
}

// get requests path on a new connection.
func (in *instance) get(path string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + in.addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

// waitServing polls the port until a program runs through it.
func (in *instance) waitServing(within time.Duration) {
	in.t.Helper()
	if out, want := in.poll("/cgi-bin/hello", within), fmt.Sprintf("hello %d\n", testutil.AliceUID); out != want {
		in.t.Fatalf("hello says %q, want %q", out, want)
	}
}

// poll requests path until it answers 200 and returns the body. suserve
// exiting, or within passing first, fails the test.
func (in *instance) poll(path string, within time.Duration) string {
	in.t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := in.get(path, time.Second)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("suserve does not serve %s within %v: %v\n%s", path, within, err, in.log.String())
		}
		select {
		case <-in.done:
			in.t.Fatalf("suserve exited: %v\n%s", in.cmd.ProcessState, in.log.String())
		case <-time.After(20 * time.Millisecond): // polling the port for the server to come up
		}
	}
}

// children are the processes whose parent is pid and whose uid is uid.
func children(pid, uid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st := status(p)
		if st["PPid"] == strconv.Itoa(pid) && strings.Fields(st["Uid"] + " x")[0] == strconv.Itoa(uid) {
			out = append(out, p)
		}
	}
	return out
}

// status is /proc/pid/status as a map; empty when pid is gone.
func status(pid int) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := map[string]string{}
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func (in *instance) front() int {
	in.t.Helper()
	fs := children(in.cmd.Process.Pid, frontUID)
	if len(fs) != 1 {
		in.t.Fatalf("fronts %v, want one", fs)
	}
	return fs[0]
}

// gone waits until pid has exited (pidfd readable) and is no longer a
// live process.
func gone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	if err := testutil.WaitPidExit(pid, within); err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
}

// socketOwners are the pids holding the socket with inode ino.
func socketOwners(ino string) []int {
	var out []int
	want := "socket:[" + ino + "]"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p, fd.Name())); l == want {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// serverSocket is the inode of the server's end of the TCP connection from
// local to remote (/proc/net/tcp, addresses in the kernel's hex form).
func serverSocket(t *testing.T, client net.Conn) string {
	t.Helper()
	hex := func(a net.Addr) string {
		ta := a.(*net.TCPAddr)
		ip := ta.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
	}
	local, remote := hex(client.RemoteAddr()), hex(client.LocalAddr())
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) > 9 && fs[1] == local && fs[2] == remote {
			return fs[9]
		}
	}
	t.Fatalf("no server socket for %s in /proc/net/tcp", client.LocalAddr())
	return ""
}

func TestTheProcessThatAcceptsConnectionsHoldsNoPrivilege(t *testing.T) {
	in := startSuserve(t, `backend = "auto"
root = "suserve-privsep-test"`)
	front := in.front()
	st := status(front)
	for k, want := range map[string]string{"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "NoNewPrivs": "1"} {
		if st[k] != want {
			t.Errorf("front %s = %q, want %q", k, st[k], want)
		}
	}
	for _, k := range []string{"Uid", "Gid"} {
		for _, v := range strings.Fields(st[k]) {
			if v != strconv.Itoa(frontUID) {
				t.Errorf("front %s = %q, want %d throughout", k, st[k], frontUID)
			}
		}
	}
	if g := st["Groups"]; g != "" {
		t.Errorf("front groups %q, want none", g)
	}

	// The server's end of an accepted connection is held by the front
	// alone.
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatalf("slow program's pid: %v", err)
	}
	prog, _ := strconv.Atoi(strings.TrimSpace(line))
	owners := socketOwners(serverSocket(t, c))
	if len(owners) != 1 || owners[0] != front {
		t.Fatalf("the accepted connection is held by %v, want only the front %d", owners, front)
	}

	// The program's cell files: root's to write, not the front's.
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", prog))
	if err != nil {
		t.Fatal(err)
	}
	var tried int
	for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "suserve-privsep-test") {
			continue
		}
		ctrl := parts[1]
		if ctrl == "" {
			ctrl = "unified"
		}
		ctrl = strings.TrimPrefix(ctrl, "name=")
		dir := filepath.Join("/sys/fs/cgroup", ctrl, parts[2])
		for _, name := range []string{"cgroup.procs", "tasks", "memory.limit_in_bytes", "pids.max", "cgroup.kill"} {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			tried++
			sh := exec.Command("/bin/sh", "-c", `echo 1 > "$0"`, p)
			sh.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: frontUID, Gid: frontUID, Groups: []uint32{}}}
			if out, err := sh.CombinedOutput(); err == nil {
				t.Errorf("the front's uid can write %s (%s)", p, out)
			}
		}
	}
	t.Logf("the front cannot write any of %d cell files", tried)
	if tried == 0 {
		t.Logf("the program is in no cell of this test (%s): cells are off on this host", strings.TrimSpace(string(cg)))
	}
}

// TestTheFrontHasNoTerminal starts suserve as root from a terminal (a
// pseudo-terminal it controls): the front leads a session of its own and
// has no controlling terminal, so it can neither open /dev/tty nor type
// into the root shell's input.
func TestTheFrontHasNoTerminal(t *testing.T) {
	testutil.RequireRoot(t)
	ptmx, pts := openPty(t)
	defer ptmx.Close()
	in := startSuserveCmd(t, `backend = "none"`, nil, func(cmd *exec.Cmd) {
		cmd.Stdin = pts
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	})
	pts.Close()
	spawner, front := in.cmd.Process.Pid, in.front()
	if sid, tty := sessionTTY(t, spawner); sid != spawner || tty == 0 {
		t.Fatalf("the spawner's session %d and terminal %d: the test did not give it its terminal", sid, tty)
	}
	if sid, tty := sessionTTY(t, front); sid != front || tty != 0 {
		t.Errorf("the front (pid %d) is in session %d with terminal %d, want a session of its own and no terminal", front, sid, tty)
	}
}

// TestTheFrontGetsNoneOfTheServersEnvironment: what the service manager
// or root's shell put in suserve's environment stays with the spawner,
// pass_env's variables included; programs still get pass_env's, from the
// spawner.
func TestTheFrontGetsNoneOfTheServersEnvironment(t *testing.T) {
	in := startSuserveCmd(t, `backend = "none"`, func(string) string { return "\n[cgi]\npass_env = [\"SITE_MOTD\"]\n" }, func(cmd *exec.Cmd) {
		cmd.Env = append(motdEnv(), "DB_PASSWORD=hunter2", "HOME=/root", "TZ=Europe/Paris")
	})
	env := environ(t, in.front())
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == "DB_PASSWORD" || name == "SITE_MOTD" || name == "HOME" {
			t.Errorf("the front's environment has %s", kv)
		}
	}
	if !slices.Contains(env, "TZ=Europe/Paris") {
		t.Errorf("the front's environment %q lacks TZ", env)
	}
	if !slices.ContainsFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") && strings.Contains(kv, server.SysmonPolling)
	}) {
		t.Errorf("the front's environment %q lacks GODEBUG with %s", env, server.SysmonPolling)
	}
	if out, err := in.get("/cgi-bin/motd", 5*time.Second); err != nil || out != "[from the host]\n" {
		t.Errorf("a pass_env variable reached the program as %q (%v)", out, err)
	}
}

// openPty opens a new pseudo-terminal: its master and its slave.
func openPty(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ptmx, pts
}

// sessionTTY reads a process's session id and controlling terminal (0:
// none) from /proc/PID/stat.
func sessionTTY(t *testing.T, pid int) (sid, tty int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which ends at the last ')':
	// state ppid pgrp session tty_nr ...
	_, rest, _ := strings.Cut(string(b[strings.LastIndexByte(string(b), ')'):]), " ")
	f := strings.Fields(rest)
	sid, _ = strconv.Atoi(f[3])
	tty, _ = strconv.Atoi(f[4])
	return sid, tty
}

// TestKillingTheFrontLosesOnlyItsRequests kills the front while long
// requests run: a new front serves within 2 s, the old programs are gone,
// and a client connecting throughout never finds the port closed.
func TestKillingTheFrontLosesOnlyItsRequests(t *testing.T) {
	in := startSuserve(t, `backend = "none"`)
	old := in.front()
	const n = 8
	var pids []int
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(line))
		pids, conns = append(pids, pid), append(conns, c)
	}

	// The prober connects again and again, before, during and after.
	stop := make(chan struct{})
	var ok, failed, refused atomic.Int64
	served := make(chan struct{}, 1<<16) // one token per successful probe
	var probeWG sync.WaitGroup
	probeWG.Add(1)
	go func() {
		defer probeWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := in.get("/cgi-bin/hello", 5*time.Second)
			switch {
			case err == nil:
				ok.Add(1)
				select {
				case served <- struct{}{}:
				default:
				}
			case errors.Is(err, syscall.ECONNREFUSED):
				refused.Add(1)
			default:
				failed.Add(1)
			}
		}
	}()
	select {
	case <-served:
	case <-in.done:
		t.Fatal("suserve exited")
	}

	killed := time.Now()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone(t, old, 2*time.Second)
	// A new front serves within 2 s of the kill: drain the tokens of
	// probes the old front served, then wait for a new one.
	for len(served) > 0 {
		<-served
	}
	select {
	case <-served:
	case <-time.After(2*time.Second - time.Since(killed)):
		t.Fatalf("no request served within 2 s of killing the front\n%s", in.log.String())
	}
	if f := in.front(); f == old {
		t.Fatalf("the front is still %d", old)
	}
	// The prober goes on through the new front for a while.
	for range 10 {
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Fatal("the new front stopped serving")
		}
	}
	close(stop)
	probeWG.Wait()
	for _, pid := range pids {
		gone(t, pid, 2*time.Second)
	}
	// The in-flight requests lost their connection.
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("an in-flight request's connection: %v", err)
		}
	}
	if refused.Load() != 0 {
		t.Errorf("the listening socket refused %d connections", refused.Load())
	}
	if failed.Load() > 1 {
		t.Errorf("%d probe requests failed (at most the one in flight may)", failed.Load())
	}
	t.Logf("probe: %d ok, %d failed, %d refused; new front after %v", ok.Load(), failed.Load(), refused.Load(), time.Since(killed))
}

func TestKillingTheSpawnerEndsTheFrontAndItsPrograms(t *testing.T) {
	in := startSuserve(t, `backend = "none"`)
	front := in.front()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+in.addr+"/cgi-bin/slow", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := strconv.Atoi(strings.TrimSpace(line))
	if err := in.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-in.done
	gone(t, front, 2*time.Second)
	gone(t, prog, 2*time.Second)
}

func TestSIGTERMDrainsTheFrontThenStops(t *testing.T) {
	in := startSuserve(t, `backend = "none"`)
	front := in.front()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.done:
	case <-time.After(10 * time.Second):
		t.Fatal("suserve did not stop within 10 s of SIGTERM")
	}
	if !in.cmd.ProcessState.Success() {
		t.Errorf("suserve ended %v", in.cmd.ProcessState)
	}
	gone(t, front, time.Second)
	if log := in.log.String(); !strings.Contains(log, "the front drains") || !strings.Contains(log, "front stopped") {
		t.Errorf("the log does not show the drain:\n%s", log)
	}
}

// TestAFrontThatCannotStartStopsSuserve: a configuration file the front's
// user cannot read fails every front the same way. suserve says so and
// exits instead of restarting fronts while clients wait.
func TestAFrontThatCannotStartStopsSuserve(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "suserve.toml")
	conf := fmt.Sprintf("[server]\nlisten = \"127.0.0.1:0\"\nuser = \"%d\"\n", frontUID)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "-config", file)
	var out testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("suserve exited 0\n%s", out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("suserve still runs 10 s after its front failed\n%s", out.String())
	}
	log := out.String()
	for _, want := range []string{"the front runs as uid 61050 and cannot read the configuration", "permission denied", "the front did not start", "before it connected to the spawner"} {
		if !strings.Contains(log, want) {
			t.Errorf("the output does not say %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "front started"); n != 1 {
		t.Errorf("%d fronts started, want 1:\n%s", n, log)
	}
}

func TestFrontUserMustNotBeRoot(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"root", "never runs as root"},
		{"0", "never runs as root"},
		{"no-such-account-here", "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := frontCredential(tc.name)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("frontCredential(%q): %v, want %q", tc.name, err, tc.want)
			}
		})
	}
	cred, err := frontCredential("61050")
	if err != nil || cred.Uid != 61050 || cred.Gid != 61050 || len(cred.Groups) != 0 {
		t.Fatalf("a bare uid: %+v %v", cred, err)
	}
}

func TestSpawnerResolvesRoutesFromItsOwnConfiguration(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[auth]
mode = "proxy"
proxy_header = "X-Remote-User"
proxy_trusted = ["127.0.0.1"]

[identities]
source = "static"

[[identities.static]]
name = "alice"
uid = 61001
gid = 61001
home = "/home/alice"

[[identities.static]]
name = "svc"
uid = 61002
gid = 61002

[[route]]
path = "/acct/"
dir = "{state}/acct"
run_as = "account"
account = "svc"

[[route]]
path = "/auth/"
dir = "/srv/auth"
run_as = "authenticated"

[[route]]
path = "/~{user}/cgi-bin/"
dir = "{home}/public_html/cgi-bin"
run_as = "owner"
`), "(test)")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := server.Identities(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resolve := routeResolver(cfg, "/var/lib/suserve", ids)
	for _, tc := range []struct {
		name, route, id string
		dir, mode       string
		refused         spawn.Cause
	}{
		{"account route as its account", "/acct/", "svc", "/var/lib/suserve/acct", spawn.ModeAccount, 0},
		{"account route as another identity", "/acct/", "alice", "", "", spawn.RouteIdentity},
		{"authenticated route", "/auth/", "alice", "/srv/auth", spawn.ModeAuthenticated, 0},
		{"owner route as the user it names", "/~alice/cgi-bin/", "alice", "/home/alice/public_html/cgi-bin", spawn.ModeOwner, 0},
		{"owner route as another user", "/~alice/cgi-bin/", "svc", "", "", spawn.RouteIdentity},
		{"owner route naming an unknown user", "/~mallory/cgi-bin/", "mallory", "", "", 0},
		{"a route that is only a prefix of one", "/acct/sub/", "svc", "", "", spawn.UnknownRoute},
		{"no such route", "/nowhere/", "svc", "", "", spawn.UnknownRoute},
		{"a route path with ..", "/~../cgi-bin/", "..", "", "", spawn.UnknownRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, mode, err := resolve(tc.route, tc.id)
			if tc.dir != "" {
				if err != nil || dir != tc.dir || mode != tc.mode {
					t.Fatalf("got %q %q %v, want %q %q", dir, mode, err, tc.dir, tc.mode)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q %q, want a refusal", dir, mode)
			}
			var f *spawn.Failure
			if tc.refused != 0 && (!errors.As(err, &f) || f.Kind != tc.refused) {
				t.Fatalf("error %v, want cause %q", err, tc.refused)
			}
		})
	}
}

// TestDemoAsRootServesFromAnUnprivilegedFront: `suserve` started as root
// with no configuration splits like a configured server does, so even the
// demo parses HTTP in a process without privilege, and its users' programs
// run as themselves. It listens on a port below 1024, which only root can
// open: the front, which could not, serves on it.
func TestDemoAsRootServesFromAnUnprivilegedFront(t *testing.T) {
	testutil.RequireRoot(t)
	addr := freeLowAddr(t)
	in := startInstance(t, "", addr, exec.Command(binary, "-listen", addr, "-admin-listen", freeAddr(t)))
	body := in.poll("/cgi-bin/hello", 10*time.Second)
	if !strings.Contains(body, "guest (uid 61000)") {
		t.Errorf("an anonymous request did not run as the demo's guest: %q", body)
	}
	fronts := children(in.cmd.Process.Pid, demoFrontUID)
	if len(fronts) != 1 {
		t.Fatalf("fronts as uid %d: %v", demoFrontUID, fronts)
	}
	if st := status(fronts[0]); st["CapEff"] != "0000000000000000" {
		t.Errorf("the demo's front has capabilities %s", st["CapEff"])
	}
	line := in.log.LineWith("demo user alice")
	pw := line[strings.LastIndex(line, " ")+1:]
	req, _ := http.NewRequest("GET", "http://"+addr+"/login/cgi-bin/whoami", nil)
	req.SetBasicAuth("alice", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "uid:      61001") {
		t.Errorf("alice's whoami: %d\n%s", resp.StatusCode, b)
	}
}

// TestSIGHUPReloadsTheSpawnerAndThenTheFront: SIGHUP to suserve (the
// spawner) applies a new route in both processes, the spawner's policy
// first; a file with a problem, or a change only a restart applies, is
// refused by name and the running configuration stays.
func TestSIGHUPReloadsTheSpawnerAndThenTheFront(t *testing.T) {
	in := startSuserve(t, `backend = "none"`)
	file := filepath.Join(in.dir, "suserve.toml")
	base, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.get("/more/hello", 5*time.Second); err == nil {
		t.Fatal("/more/ serves before it is configured")
	}
	more := string(base) + fmt.Sprintf("\n[[route]]\npath = \"/more/\"\ndir = %q\nrun_as = \"account\"\naccount = \"alice\"\n", filepath.Join(in.dir, "cgi"))
	in.reload(more, "configuration reloaded")
	want := fmt.Sprintf("hello %d\n", testutil.AliceUID)
	if out, err := in.get("/more/hello", 5*time.Second); err != nil || out != want {
		t.Fatalf("/more/hello after the reload: %q %v", out, err)
	}

	// A problem in the file: refused with its line; both routes still serve.
	in.reload(more+"\n[cgi]\nheader_timeout = \"soon\"\n", "reload refused")
	if !strings.Contains(in.log.String(), file+":") || !strings.Contains(in.log.String(), "header_timeout") {
		t.Errorf("the refusal does not name the file, line and key:\n%s", in.log.String())
	}
	// A new listener needs a restart.
	in.reload(strings.Replace(more, in.addr, "127.0.0.1:1", 1), "change only with a restart")
	if !strings.Contains(in.log.String(), "keys=server.listen") {
		t.Errorf("the refusal does not name server.listen:\n%s", in.log.String())
	}
	for _, p := range []string{"/cgi-bin/hello", "/more/hello"} {
		if out, err := in.get(p, 5*time.Second); err != nil || out != want {
			t.Errorf("%s after the refused reloads: %q %v", p, out, err)
		}
	}
	if n := in.log.Count("configuration reloaded"); n != 1 {
		t.Errorf("the front reloaded %d times, want once", n)
	}
}

// TestLongRequestsGetTheSameAnswerAcrossTheBoundary: a request whose
// environment is just under the gateway's bounds fits one spawn request
// and is served; one over them gets the gateway's 414, as in-process, not
// a refusal of a malformed message.
func TestLongRequestsGetTheSameAnswerAcrossTheBoundary(t *testing.T) {
	in := startSuserve(t, `backend = "none"`)
	q := strings.Repeat("q", cgi.MaxEnvVar-100)
	many := http.Header{}
	for i := range cgi.MaxEnvVars - 50 {
		many.Set(fmt.Sprintf("X-%d", i), "v")
	}
	for _, tc := range []struct {
		name, query string
		header      http.Header
		want        int
	}{
		{"just under the bounds", q, http.Header{"Cookie": {strings.Repeat("c", 12<<10)}}, http.StatusOK},
		{"just under the count of variables", "", many, http.StatusOK},
		{"a query string over them", q + strings.Repeat("q", 200), nil, http.StatusRequestURITooLong},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+in.addr+"/cgi-bin/hello?"+tc.query, nil)
		for k, v := range tc.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.want, body)
		}
	}
}

// motdProgram prints SITE_MOTD, which only [cgi] pass_env lets through.
const motdProgram = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n[%s]\\n' \"$SITE_MOTD\"\n"

// motdEnv is suserve's environment with the variable motdProgram prints.
func motdEnv() []string { return append(os.Environ(), "SITE_MOTD=from the host") }

// TestSIGHUPAppliesPassEnvBehindTheBoundary: a name added to pass_env by
// a reload reaches programs, and one removed no longer does. The front
// adds it and the spawner filters it: both follow the reload.
func TestSIGHUPAppliesPassEnvBehindTheBoundary(t *testing.T) {
	in := startSuserveCmd(t, `backend = "none"`, nil, func(cmd *exec.Cmd) { cmd.Env = motdEnv() })
	base, err := os.ReadFile(filepath.Join(in.dir, "suserve.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ conf, want string }{
		{"", "[]\n"},
		{"\n[cgi]\npass_env = [\"SITE_MOTD\"]\n", "[from the host]\n"},
		{"\n[cgi]\npass_env = []\n", "[]\n"},
	} {
		if step.conf != "" {
			in.reload(string(base)+step.conf, "configuration reloaded")
		}
		if out, err := in.get("/cgi-bin/motd", 5*time.Second); err != nil || out != step.want {
			t.Errorf("with %q: the program says %q (%v), want %q", step.conf, out, err, step.want)
		}
	}
}

// TestSIGHUPReloadsAnUnprivilegedServer: started as an ordinary user,
// suserve serves in one process, and SIGHUP applies a new route there.
func TestSIGHUPReloadsAnUnprivilegedServer(t *testing.T) {
	testutil.RequireRoot(t)
	const uid = testutil.UnprivilegedUID
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cgi := filepath.Join(dir, "cgi")
	hello := filepath.Join(cgi, "hello")
	motd := filepath.Join(cgi, "motd")
	if err := os.Mkdir(cgi, 0o755); err != nil {
		t.Fatal(err)
	}
	writeProgram(t, hello, helloProgram, uid)
	writeProgram(t, motd, motdProgram, uid)
	if err := os.Chown(cgi, uid, uid); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	route := func(path string) string {
		return fmt.Sprintf("\n[[route]]\npath = %q\ndir = %q\n", path, cgi)
	}
	conf := fmt.Sprintf("[server]\nlisten = %q\nadmin_listen = \"\"\n", addr) + route("/cgi-bin/")
	file := filepath.Join(dir, "suserve.toml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The built binary lies in root's private directory: a copy the user
	// can run.
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "suserve")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	cmd.Env = motdEnv()
	in := startInstance(t, dir, addr, cmd)
	want := fmt.Sprintf("hello %d\n", uid)
	if out := in.poll("/cgi-bin/hello", 10*time.Second); out != want {
		t.Fatalf("hello says %q, want %q", out, want)
	}
	if out, err := in.get("/cgi-bin/motd", 5*time.Second); err != nil || out != "[]\n" {
		t.Errorf("motd before pass_env names SITE_MOTD: %q %v", out, err)
	}
	in.reload(conf+route("/more/")+"\n[cgi]\npass_env = [\"SITE_MOTD\"]\n", "configuration reloaded")
	if out, err := in.get("/more/hello", 5*time.Second); err != nil || out != want {
		t.Errorf("/more/hello after the reload: %q %v", out, err)
	}
	// The launcher outlives the reload: its filter follows pass_env too.
	if out, err := in.get("/cgi-bin/motd", 5*time.Second); err != nil || out != "[from the host]\n" {
		t.Errorf("motd after the reload added SITE_MOTD to pass_env: %q %v", out, err)
	}
}

func TestSpawnerRunsOnOnePPerEightCPUs(t *testing.T) {
	for _, tt := range []struct{ ncpu, want int }{{1, 1}, {2, 1}, {15, 1}, {16, 2}, {64, 8}} {
		if got := spawnerProcs(tt.ncpu); got != tt.want {
			t.Errorf("spawnerProcs(%d) = %d, want %d", tt.ncpu, got, tt.want)
		}
	}
}

// TestTheFrontRunsOnHalfTheProcessors: the front's GOMAXPROCS is half of
// the runtime's choice, unless suserve's environment sets GOMAXPROCS.
func TestTheFrontRunsOnHalfTheProcessors(t *testing.T) {
	for _, tt := range []struct{ procs, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {64, 32}} {
		if got := frontProcs(tt.procs); got != tt.want {
			t.Errorf("frontProcs(%d) = %d, want %d", tt.procs, got, tt.want)
		}
	}
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set for the tests, and suserve would pass it on")
	}
	in := startSuserve(t, `backend = "none"`)
	want := "GOMAXPROCS=" + strconv.Itoa(frontProcs(runtime.GOMAXPROCS(0)))
	if env := environ(t, in.front()); !slices.Contains(env, want) {
		t.Errorf("the front's environment %q has no %s", env, want)
	}

	t.Setenv("GOMAXPROCS", "3")
	in = startSuserve(t, `backend = "none"`)
	if env := environ(t, in.front()); !slices.Contains(env, "GOMAXPROCS=3") {
		t.Errorf("the front's environment %q has no GOMAXPROCS=3, the administrator's", env)
	}
}

// environ is pid's environment.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\x00")
}

// TestServerProcessesRunWithSysmonPolling: suserve re-executes itself with
// server.SysmonPolling added to its GODEBUG, keeping the administrator's
// settings, its pid and its arguments; the front inherits the setting.
func TestServerProcessesRunWithSysmonPolling(t *testing.T) {
	t.Setenv("GODEBUG", "madvdontneed=1")
	in := startSuserve(t, `backend = "none"`)
	want := "GODEBUG=madvdontneed=1," + server.SysmonPolling
	for name, pid := range map[string]int{"spawner": in.cmd.Process.Pid, "front": in.front()} {
		if env := environ(t, pid); !slices.Contains(env, want) {
			t.Errorf("the %s's environment %q has no %s", name, env, want)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", in.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"); !slices.Equal(got, in.cmd.Args) {
		t.Errorf("the spawner's arguments %q, want %q", got, in.cmd.Args)
	}
}

// TestAStalledExecHoldsNoOtherSpawn: the spawner runs on one P (below
// sixteen CPUs). A program whose exec does not return, as one on a network
// filesystem that has stopped answering would not, must not hold other
// requests' programs, in its cell or another. The exec is held here by a
// fanotify permission event on the program file, released once the other
// requests have their answers. With each cell backend: each places
// programs its own way.
func TestAStalledExecHoldsNoOtherSpawn(t *testing.T) {
	for _, backend := range []string{"none", "cgroup1", "cgroup2"} {
		t.Run(backend, func(t *testing.T) {
			// One P, as the spawner has below sixteen CPUs, whatever
			// this host has.
			in := startSuserveCmd(t, fmt.Sprintf("backend = %q\nroot = \"suserve-stall-test\"", backend), bobsRoute(t), func(cmd *exec.Cmd) {
				cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
			})
			held := filepath.Join(in.dir, "cgi", "held")
			writeProgram(t, held, helloProgram, testutil.AliceUID)
			hold := testutil.HoldExec(t, held)

			heldDone := make(chan error, 1)
			go func() {
				_, err := in.get("/cgi-bin/held", 2*time.Minute)
				heldDone <- err
			}()
			pid := hold.Wait(time.Minute)
			if st := status(pid); st["Uid"] == "" || strings.Fields(st["Uid"])[0] != strconv.Itoa(testutil.AliceUID) {
				t.Errorf("the exec held is not the program's, as alice: pid %d, %v", pid, st)
			}
			// While its exec stalls, the child holds none of the
			// spawner's descriptors (other requests' pipes among them)
			// but the program's own: stdin, stdout, stderr, the script;
			// and the write end of its status pipe, which the exec
			// closes.
			if names, status := testutil.Descriptors(t, pid); strings.Join(names, " ") != "0 1 2 3" || status != 1 {
				t.Errorf("the stalled child holds descriptors %v and %d status pipe(s), want 0 1 2 3 and one", names, status)
			}
			// The spawner waits for the exec without a thread stopped in
			// the fork (a vfork's clone3 returns only after the exec).
			if tids := inSyscall(t, in.cmd.Process.Pid, unix.SYS_CLONE3); len(tids) > 0 {
				t.Errorf("threads %v of the spawner are in clone3 while a child's exec is held", tids)
			}

			// Held: other requests run their programs, in the same cell
			// and in a new one.
			for path, uid := range map[string]int{"/cgi-bin/hello": testutil.AliceUID, "/bob-bin/hello": testutil.BobUID} {
				if out, err := in.get(path, 20*time.Second); err != nil {
					t.Errorf("%s, while an exec was held: %v", path, err)
				} else if want := fmt.Sprintf("hello %d\n", uid); out != want {
					t.Errorf("%s, while an exec was held: %q, want %q", path, out, want)
				}
			}
			select {
			case err := <-heldDone:
				t.Fatalf("the held request was answered before its exec went on: %v", err)
			default:
			}
			hold.Release()
			if err := <-heldDone; err != nil {
				t.Errorf("the held request, once its exec went on: %v", err)
			}
		})
	}
}

// inSyscall lists the threads of process pid that are in system call nr.
func inSyscall(t *testing.T, pid int, nr int) []string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if err != nil {
			continue // gone
		}
		if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(nr) {
			in = append(in, task.Name())
		}
	}
	return in
}

// writeProgram writes a program of body at path, owned by uid (its
// identity, as the routes' checks require).
func writeProgram(t *testing.T, path, body string, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// bobsRoute is configuration for startSuserveWith: identity bob and a
// route /bob-bin/ of one program, hello, run as bob.
func bobsRoute(t *testing.T) func(dir string) string {
	return func(dir string) string {
		bin := filepath.Join(dir, "bob")
		if err := os.Mkdir(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		writeProgram(t, filepath.Join(bin, "hello"), helloProgram, testutil.BobUID)
		return fmt.Sprintf(`
[[identities.static]]
name = "bob"
uid = %d
gid = %d
home = "/nonexistent"

[[route]]
path = "/bob-bin/"
dir = %q
run_as = "account"
account = "bob"
`, testutil.BobUID, testutil.BobUID, bin)
	}
}
