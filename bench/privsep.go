package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/server"
)

// The privilege-separation rows (root only): the hello program run as a
// static identity (uid 61001) in its cell, by suserve in-process and by
// suserve split into spawner and front (the built binary, started as a
// child), each compared with the raw setuid spawn limit of the same run.
const (
	benchUID      = 61001 // a spare test uid (internal/testutil)
	benchFrontUID = 61050 // the front's [server] user
	setuidLimit   = "raw fork/exec+wait4 as uid 61001 (setuid limit)"
)

// setuidRows measures the raw limit of spawning as benchUID.
func setuidRows(prog string, d time.Duration) ([]row, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	res, err := setuidSpawn(prog, d)
	if err != nil {
		return nil, err
	}
	if setuidLimitResult == nil {
		setuidLimitResult = new(loadResult)
		*setuidLimitResult = res
	}
	return []row{{name: setuidLimit, res: res, base: setuidLimitResult}}, nil
}

// setuidSpawn is the raw spawn loop as benchUID.
func setuidSpawn(prog string, d time.Duration) (loadResult, error) {
	res, err := rawSpawn(prog, &syscall.Credential{Uid: benchUID, Gid: benchUID, Groups: []uint32{}}, d)
	if err != nil {
		return res, fmt.Errorf("raw setuid spawn: %w", err)
	}
	return res, nil
}

// measuresIdentityRows reports whether setups has a row compared with the
// setuid limit that the row filter lets through.
func measuresIdentityRows(setups []target) bool {
	for _, s := range setups {
		if s.base != nil && rowFilter.MatchString(s.name) {
			return true
		}
	}
	return false
}

// setuidLimitResult is the setuid limit the identity rows are compared
// with: the first measurement, raised by the one at the end of the run.
var setuidLimitResult *loadResult

func bySetuidLimit([]row) *loadResult { return setuidLimitResult }

// benchCells are the cell backends of the in-process identity rows, each
// measured in the same run: BENCH_CELLS (comma-separated), or none, cgroup2
// and auto, so that the cost of cells is visible side by side. On a hybrid
// host cgroup2 is the controller-less unified mount: CLONE_INTO_CGROUP
// placement and cgroup.kill without limits, the cost of the v2 path itself.
func benchCells() []string {
	if b := os.Getenv("BENCH_CELLS"); b != "" {
		return strings.Split(b, ",")
	}
	return []string{"none", "cgroup2", "auto"}
}

// privsepCells are the backends of the privilege-separation rows: those
// of the in-process rows, so that each is compared with its own.
func privsepCells() []string {
	if b := os.Getenv("BENCH_PRIVSEP_CELLS"); b != "" {
		return strings.Split(b, ",")
	}
	return benchCells()
}

// benchIdentities is the configuration's identity section: one static
// account, bench, as benchUID.
var benchIdentities = fmt.Sprintf(`
[identities]
source = "static"

[[identities.static]]
name = "bench"
uid = %d
gid = %d
home = "/nonexistent"
`, benchUID, benchUID)

// privsepConfig serves dir's programs as benchUID through an account route.
func privsepConfig(addr, dir, cellsRoot, cells string) string {
	return fmt.Sprintf(`[server]
listen = %q
user = "%d"

%s
[cells]
root = %q
backend = %q

[[route]]
path = "/cgi-bin/"
dir = %q
run_as = "account"
account = "bench"
`, addr, benchFrontUID, benchIdentities, cellsRoot, cells, dir)
}

// privsepRows are the rows suserve's root mode adds: in-process as
// benchUID, and with privilege separation. prog is copied to a directory
// of its own, owned by benchUID as an account route requires.
func privsepRows(dir, prog string) ([]target, error) {
	pdir := filepath.Join(dir, "privsep")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(prog)
	if err != nil {
		return nil, err
	}
	hello := filepath.Join(pdir, "hello")
	if err := os.WriteFile(hello, b, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(hello, benchUID, benchUID); err != nil {
		return nil, err
	}
	url := "/cgi-bin/hello"
	var ts []target
	stopAll := func() {
		for _, t := range ts {
			t.stop()
		}
	}
	for _, cells := range benchCells() {
		in, err := inProcess(dir, pdir, url, cells)
		if err != nil {
			stopAll()
			return nil, err
		}
		ts = append(ts, in)
	}
	if a, err := authenticatedRow(dir, prog); err == nil {
		ts = append(ts, a)
	} else {
		stopAll()
		return nil, err
	}
	for _, cells := range privsepCells() {
		ps, err := startPrivsep(dir, pdir, url, cells, "")
		if err != nil {
			stopAll()
			return nil, err
		}
		ts = append(ts, ps)
	}
	return ts, nil
}

// inProcess is suserve in-process as root, in a process of its own (this
// bench started again with -serve): like the privilege-separated rows, it
// shares no runtime with the load generator, as no server in production
// does.
func inProcess(dir, pdir, url, cells string) (target, error) {
	name := "suserve in-process, uid 61001, cells " + cells
	config := func(addr string) string {
		return privsepConfig(addr, pdir, "suserve-bench-inprocess-"+cells, cells)
	}
	return startChild(name, dir, "inprocess-"+cells, url, nil, config, inProcessCommand(dir))
}

// inProcessCommand runs this bench again with -serve: suserve in-process
// on a configuration file, with dir as its state directory.
func inProcessCommand(dir string) func(file string) *exec.Cmd {
	return func(file string) *exec.Cmd {
		return exec.Command("/proc/self/exe", "-serve", file, "-state", dir)
	}
}

// serveConfig serves cfg in the bench's own process, with dir as its state
// directory. Its stop stops the server's apps too.
func serveConfig(name string, cfg *config.Config, dir, url string) (target, error) {
	srv, launch, err := inProcessServer(cfg, dir)
	if err != nil {
		return target{}, err
	}
	t, err := serve(name, srv.Handler(), url)
	if err != nil {
		launch.Close()
		return target{}, err
	}
	stop := t.stop
	t.stop = func() {
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		srv.Close(ctx)
		launch.Close()
	}
	return t, nil
}

// startPrivsep builds suserve and starts it as a child, which splits into
// spawner and front. extra is appended to its configuration; it is ready
// when url answers 200.
func startPrivsep(dir, pdir, url, cells, extra string) (target, error) {
	bin := filepath.Join(dir, "suserve")
	if _, err := os.Stat(bin); err != nil {
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/suserve/suserve/cmd/suserve").CombinedOutput(); err != nil {
			return target{}, &buildError{err: err, out: string(out)}
		}
	}
	config := func(addr string) string {
		return privsepConfig(addr, pdir, "suserve-bench-privsep-"+cells, cells) + extra
	}
	return startChild("suserve privsep, uid 61001, cells "+cells, dir, "privsep-"+cells, url, nil, config, func(file string) *exec.Cmd {
		return exec.Command(bin, "serve", "-config", file)
	})
}

// startChild starts a server under test as a child process: config(addr)
// is written to a file in dir (readable by a front running as another
// user) and command(file) runs it. It is ready when url answers 200 to a
// request with header, which the load sends too.
func startChild(name, dir, file, url string, header http.Header, config func(addr string) string, command func(file string) *exec.Cmd) (target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	f, err := os.CreateTemp(dir, file+"-*.toml")
	if err != nil {
		return target{}, err
	}
	f.Close()
	// The front reads the file as its own user.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return target{}, err
	}
	if err := os.WriteFile(f.Name(), []byte(config(addr)), 0o644); err != nil {
		return target{}, err
	}
	cmd := command(f.Name())
	// Its log goes to /dev/null itself: a pipe to the bench would add a
	// copy per access-log line.
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return target{}, err
	}
	defer null.Close()
	cmd.Stdout, cmd.Stderr = null, null
	// Every child runs with the GODEBUG suserve gives itself (main's
	// pollSysmon): an in-process server started by the bench is measured
	// as suserve would run.
	cmd.Env = server.WithSysmonPolling(os.Environ())
	// BENCH_CHILD_GOMAXPROCS sets GOMAXPROCS of every server started as a
	// child; BENCH_CHILD_LOG names a file their logs are appended to, for
	// a row with errors.
	if v := os.Getenv("BENCH_CHILD_GOMAXPROCS"); v != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+v)
	}
	if name := os.Getenv("BENCH_CHILD_LOG"); name != "" {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return target{}, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return target{}, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	full := "http://" + addr + url
	deadline := time.Now().Add(10 * time.Second)
	// A front that cannot start leaves connections waiting in the
	// spawner's backlog: each try has its own time limit.
	probe := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequest(http.MethodGet, full, nil)
		if err != nil {
			stop()
			return target{}, err
		}
		req.Header = header.Clone()
		resp, err := probe.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-done:
			return target{}, fmt.Errorf("%s exited: %v", name, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return target{}, fmt.Errorf("%s does not serve: %w", name, err)
		}
	}
	return target{name: name, url: full, header: header, stop: stop, base: bySetuidLimit}, nil
}

// serveFile is -serve: suserve in-process on file's configuration, with
// state as its state directory, until SIGTERM.
func serveFile(file, state string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(b, file)
	if err != nil {
		return err
	}
	srv, launch, err := inProcessServer(cfg, state)
	if err != nil {
		return err
	}
	defer launch.Close()
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// Served as cmd/suserve serves: the same http.Server settings, drain
	// and shutdown.
	return srv.Serve(ctx, ln, nil)
}

// inProcessServer builds suserve in-process on cfg, with dir as its state
// directory: the launcher, then the server.
func inProcessServer(cfg *config.Config, dir string) (*server.Server, *server.Launch, error) {
	log := quietLogger()
	launch, err := server.NewLocal(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	srv, err := server.New(cfg, launch.Options(log, dir))
	if err != nil {
		launch.Close()
		return nil, nil, err
	}
	return srv, launch, nil
}
