package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/app"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
	"github.com/suserve/suserve/internal/server"
	"github.com/suserve/suserve/internal/spawn"
)

// Started as root, suserve splits in two (DESIGN.md "The privilege
// boundary"): this process opens the listeners, becomes the spawner and
// re-executes itself as the front under [server] user, which serves HTTP
// and asks the spawner for every program. These variables tell the front
// what it is and what it inherited.
const (
	envFront    = "SUSERVE_FRONT"     // "1" in the front
	envState    = "SUSERVE_STATE_DIR" // the state directory the spawner prepared
	envAdmin    = "SUSERVE_ADMIN"     // "1" when fd 5 is the admin listener
	envNotes    = "SUSERVE_NOTES"     // how programs run, one note a line
	envDemo     = "SUSERVE_DEMO"      // "1" when the front serves the root demo
	frontListen = spawn.FrontBootFD + 1
	frontAdmin  = spawn.FrontBootFD + 2
)

func isFront() bool { return os.Getenv(envFront) == "1" }

// frontCredential resolves [server] user: an account of the system, or a
// bare uid (the front then runs as uid:uid with no other groups), which
// serves hosts and tests that have no account for it.
func frontCredential(name string) (*syscall.Credential, error) {
	var cred *syscall.Credential
	u, err := (&identity.System{}).Lookup(name)
	switch {
	case err == nil:
		cred = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}
	default:
		n, perr := strconv.ParseUint(name, 10, 32)
		if perr != nil {
			return nil, fmt.Errorf("[server] user %q, the account the front runs as when suserve starts as root, does not exist (%v): create it (useradd --system %s) or name another", name, err, name)
		}
		cred = &syscall.Credential{Uid: uint32(n), Gid: uint32(n), Groups: []uint32{}}
	}
	if cred.Uid == 0 || cred.Gid == 0 {
		return nil, fmt.Errorf("[server] user %q is uid %d gid %d: the front never runs as root", name, cred.Uid, cred.Gid)
	}
	for _, g := range cred.Groups {
		if g == 0 {
			return nil, fmt.Errorf("[server] user %q is in group 0: the front never holds root's group", name)
		}
	}
	return cred, nil
}

// runSpawner is start for a server started as root with a configuration
// file (or the demo): the listeners stay here, the front runs as [server]
// user.
func runSpawner(ctx context.Context, cfg *config.Config, listenKey string, log *slog.Logger, demo bool, rl *reloading) error {
	cred, err := frontCredential(cfg.Server.User)
	if err != nil {
		return err
	}
	ln, err := server.Listen(cfg.Server.Listen, listenKey)
	if err != nil {
		return err
	}
	defer ln.Close()
	files, err := listenerFiles(ln)
	if err != nil {
		return err
	}
	env := append(frontEnv(), envFront+"=1")
	if os.Getenv("GOMAXPROCS") == "" {
		// The front's count comes from the runtime's choice, before the
		// spawner lowers its own.
		env = append(env, "GOMAXPROCS="+strconv.Itoa(frontProcs(runtime.GOMAXPROCS(0))))
		runtime.GOMAXPROCS(spawnerProcs(runtime.NumCPU()))
	}
	if demo {
		env = append(env, envDemo+"=1")
	}
	if cfg.Server.AdminListen != "" {
		admin, err := server.Listen(cfg.Server.AdminListen, "[server] admin_listen")
		if err != nil {
			return err
		}
		defer admin.Close()
		af, err := listenerFiles(admin)
		if err != nil {
			return err
		}
		files = append(files, af...)
		env = append(env, envAdmin+"=1")
	}
	defer closeFiles(files)
	state, cleanup, err := server.PrepareState(cfg.Server.StateDir)
	if err != nil {
		return err
	}
	defer cleanup()
	// The front resolves scripts beneath {state} routes: it may search the
	// directory, not list or change it.
	if err := os.Chmod(state, 0o711); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if len(cfg.Apps) > 0 {
		if err := frontSocketDir(state, cred); err != nil {
			return err
		}
	}
	launch, err := server.NewLocal(cfg, log)
	if err != nil {
		return err
	}
	defer launch.Close()
	notes := append([]string{fmt.Sprintf("privilege separation: HTTP is served by a front running as %s (uid %d); programs are started by the spawner (pid %d), which alone holds root and the cells", cfg.Server.User, cred.Uid, os.Getpid())}, launch.Notes...)
	env = append(env, envState+"="+state, envNotes+"="+strings.Join(notes, "\n"))

	sp := &spawn.Spawner{Local: launch.Spawn, Routes: routeResolver(cfg, state, launch.Identities), Apps: appResolver(cfg, state), FrontUID: cred.Uid, Log: log}
	sup := &spawn.Supervisor{
		Spawner: sp,
		Args:    []string{os.Args[0], "serve", "-config", cfg.File},
		Env:     env,
		Files:   files,
		Cred:    cred,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Log:     log,
		Drain:   cfg.Server.ShutdownTimeout.D() + frontGrace,
	}
	log.Info("suserve listening", "addr", "http://"+ln.Addr().String()+"/", "config", displayName(cfg.File), "state_dir", state, "front_user", cfg.Server.User)
	go spawnerReloads(ctx, rl, cfg, state, cred, launch.Identities, sp, sup, log)
	return sup.Run(ctx)
}

// spawnerProcs is the spawner's GOMAXPROCS on a host with ncpu CPUs: one
// per eight CPUs, at least one. The spawner's own Go code is small. Its
// waits, for a cell, for a program's exit, for the front, are pidfd and
// socket events or blocking system calls, which give up the P, so programs
// queue, run and end concurrently. So does a fork: on one P, spawn's own
// (startWith). Go's fork (on more Ps, in builds without cgo, and where
// clone3 is refused) keeps its P until the child has exec'd (a vfork): on
// one P its forks follow one another, and the spawner's other work waits
// while one is under way. That
// window is the child's way to its exec, and on a busy machine the child
// waits for a CPU like any other process: on a 2-CPU host under the bench's
// hello program with cgroup v1 cells, 0.27 ms at the least and 1.4 ms on
// average at 32 connections, whether or not the child starts in its cell's
// cpu group (timed by perf trace, which adds to them).
// What more Ps buy is threads that wake, spin and sleep again around every
// message, and on a busy host that costs more CPU than the spawner's work.
// On 2 CPUs under the hello program, two Ps against one: with cells off,
// 0.70-0.74 ms of spawner CPU per request against 0.45, and 12% fewer
// requests at 32 connections; with v1 cells, the machine's idle time fell
// from 13% to 1% and the spawner's CPU rose by a tenth, but the bench's
// req/s did not rise beyond its noise.
func spawnerProcs(ncpu int) int { return max(1, ncpu/8) }

// frontProcs is the front's GOMAXPROCS where the runtime would choose
// procs: half of them, at least one. The front waits on the spawner, on
// programs and on workers far more than it computes, and every wait that
// leaves a P idle has the runtime wake another thread to look for work and
// put it back to sleep. The other half is where a request's CPU mostly
// goes: the programs, the workers and the spawner. On 2 CPUs, under 32
// connections of the bench's hello program, the front used 0.47-0.49 ms
// of CPU per request with one P against 0.72-0.77 ms with two, and served
// 10% more requests; its HTTP app proxy used 0.31-0.36 ms against
// 0.39-0.43 ms. What the front computes itself is bounded by the same
// half: password checks of credentials not in the cache (bcrypt) run on at
// most that many CPUs at once. The count is fixed when the front starts:
// unlike the runtime's own choice, it does not follow a later change of
// the process's CPU limit.
func frontProcs(procs int) int { return max(1, procs/2) }

// spawnerReloads applies each SIGHUP to the spawner's policy and then has
// the front reload: the spawner first, so that the front never asks for
// what the new configuration adds before the spawner allows it. The front
// reads the file again itself, as its own user.
func spawnerReloads(ctx context.Context, rl *reloading, running *config.Config, state string, cred *syscall.Credential, ids identity.Source, sp *spawn.Spawner, sup *spawn.Supervisor, log *slog.Logger) {
	rl.watch(ctx, running, log, func(next *config.Config) error {
		if len(next.Apps) > 0 {
			if err := frontSocketDir(state, cred); err != nil {
				return err
			}
		}
		sp.SetPolicy(routeResolver(next, state, ids), appResolver(next, state))
		sp.Local.SetPassEnv(next.CGI.PassEnv)
		log.Info("reload: the spawner follows the new configuration; the front reloads", "config", rl.path)
		if err := sup.Signal(syscall.SIGHUP); err != nil {
			log.Warn("reload: the front was not told; a new front reads the file when it starts", "err", err.Error())
		}
		return nil
	})
}

// frontGrace is what a draining front gets beyond shutdown_timeout to
// report and exit.
const frontGrace = 5 * time.Second

// frontEnv is what the front gets of the spawner's environment: the Go
// runtime's settings, the locale, the time zone, TMPDIR and PATH, with
// server.SysmonPolling (which the spawner's own environment lacks only
// when suserve could not re-execute itself). Nothing else: whatever the
// service manager or root's shell put there (a password, root's HOME)
// stays with root. Programs get their pass_env variables from the
// spawner.
func frontEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if frontEnvNames[name] || strings.HasPrefix(name, "LC_") {
			out = append(out, kv)
		}
	}
	return server.WithSysmonPolling(out)
}

var frontEnvNames = map[string]bool{
	"GODEBUG": true, "GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true, "GOTRACEBACK": true, "GORACE": true,
	"LANG": true, "TZ": true, "TMPDIR": true, "PATH": true,
}

func listenerFiles(ln net.Listener) ([]*os.File, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("listener %s is a %T, not TCP", ln.Addr(), ln)
	}
	f, err := tl.File()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", ln.Addr(), err)
	}
	return []*os.File{f}, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// routeResolver is the spawner's own view of the routes: for the route
// path a front names (with {user} filled in on owner routes) and an
// identity, the directory programs must lie beneath and the run-as mode,
// or the refusal.
func routeResolver(cfg *config.Config, state string, ids identity.Source) spawn.RouteFunc {
	routes := cfg.Routes
	return func(route, id string) (string, string, error) {
		for _, r := range routes {
			user, prefix, rest, ok := r.Match(route)
			if !ok || prefix != route || rest != "" {
				continue
			}
			switch r.RunAs {
			case config.RunAsAccount:
				if id != r.Account {
					return "", "", &spawn.Failure{Kind: spawn.RouteIdentity, Detail: fmt.Sprintf("route %s runs programs as %s, not as %q", r.Path, r.Account, id), Exit: -1}
				}
				return r.ExpandDir(state, "", ""), spawn.ModeAccount, nil
			case config.RunAsAuthenticated:
				// Who authenticated is the front's to decide; the spawner
				// holds it to the identities policy allows.
				return r.ExpandDir(state, "", ""), spawn.ModeAuthenticated, nil
			case config.RunAsOwner:
				if id != user {
					return "", "", &spawn.Failure{Kind: spawn.RouteIdentity, Detail: fmt.Sprintf("route %s runs programs as the user its path names, %s, not as %q", route, user, id), Exit: -1}
				}
				who, err := ids.Lookup(user)
				if err != nil {
					return "", "", err
				}
				return r.ExpandDir(state, user, who.Home), spawn.ModeOwner, nil
			default:
				return "", "", &spawn.Failure{Kind: spawn.RouteIdentity, Detail: fmt.Sprintf("route %s runs programs as the server's own user, which is root here", r.Path), Exit: -1}
			}
		}
		return "", "", &spawn.Failure{Kind: spawn.UnknownRoute, Detail: fmt.Sprintf("no route is %q", route), Exit: -1}
	}
}

// frontSocketDir makes {state}/apps the front's own 0700 directory: the
// front creates its app workers' sockets there and alone connects to them
// (a worker receives its listening socket as a descriptor and needs no
// path).
func frontSocketDir(state string, cred *syscall.Credential) error {
	dir := filepath.Join(state, "apps")
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("app socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("app socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("app socket directory %s is not a directory", dir)
	}
	if err := os.Lchown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("app socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("app socket directory: %w", err)
	}
	return nil
}

// appResolver is the spawner's own view of the [[app]] sections: for the
// app and identity a front names, the worker to start, or the refusal.
// The command, environment and directory are the configuration's; the
// front contributes the socket's path (for SUSERVE_SOCKET) and the
// worker's number.
func appResolver(cfg *config.Config, state string) spawn.AppFunc {
	apps := cfg.Apps
	return func(r *spawn.WorkerRequest) (*spawn.WorkerSpec, bool, error) {
		for _, a := range apps {
			if a.Path != r.App {
				continue
			}
			switch a.RunAs {
			case config.RunAsAccount:
				if r.Identity != a.Account {
					return nil, false, &spawn.Failure{Kind: spawn.RouteIdentity, Path: a.Command[0], Detail: fmt.Sprintf("app %s runs as %s, not as %q", a.Path, a.Account, r.Identity), Exit: -1}
				}
			case config.RunAsAuthenticated:
				// Who authenticated is the front's to decide, as on
				// routes; the spawner holds it to what policy allows.
			default:
				return nil, false, &spawn.Failure{Kind: spawn.RouteIdentity, Path: a.Command[0], Detail: fmt.Sprintf("app %s has run_as %q", a.Path, a.RunAs), Exit: -1}
			}
			return &spawn.WorkerSpec{
				Path: a.Command[0],
				Args: append([]string(nil), a.Command...),
				Env:  app.WorkerEnv(a.Protocol, a.Env, r.Socket, int(r.Slot)),
				Dir:  a.ExpandDir(state),
			}, a.Protocol == config.ProtocolHTTP, nil
		}
		return nil, false, &spawn.Failure{Kind: spawn.UnknownRoute, Detail: fmt.Sprintf("no app is %q", r.App), Exit: -1}
	}
}

// runFront is start in the front: the normal server, with the listeners
// the spawner opened and the spawner's client as its launcher.
func runFront(ctx context.Context, cfg *config.Config, log *slog.Logger, rl *reloading) error {
	client, err := spawn.ConnectFront(os.NewFile(spawn.FrontBootFD, "spawner"))
	if err != nil {
		return err
	}
	defer client.Close()
	ln, err := net.FileListener(os.NewFile(frontListen, "listener"))
	if err != nil {
		return fmt.Errorf("the inherited listener: %w", err)
	}
	var admin net.Listener
	if os.Getenv(envAdmin) == "1" {
		if admin, err = net.FileListener(os.NewFile(frontAdmin, "admin listener")); err != nil {
			return fmt.Errorf("the inherited admin listener: %w", err)
		}
	}
	ids, err := server.Identities(cfg, log)
	if err != nil {
		return err
	}
	notes := strings.Split(os.Getenv(envNotes), "\n")
	opts := server.Options{Logger: log, Spawner: client, Identities: ids, StateDir: os.Getenv(envState), Notes: notes}
	if os.Getenv(envDemo) == "1" {
		opts.Demo = &server.Demo{Identities: server.DemoUsers(cfg), Cells: notes[len(notes)-1]}
		if admin != nil {
			opts.Demo.Admin = "http://" + admin.Addr().String() + "/"
		}
	}
	srv, err := server.New(cfg, opts)
	if err != nil {
		return err
	}
	// Without the spawner nothing can run: stop, and let it start a new
	// front (or, when it is gone, the parent-death signal ends this one).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-client.Done():
			log.Error("the spawner is gone: the front stops", "err", fmt.Sprint(client.Err()))
			cancel()
		case <-ctx.Done():
		}
	}()
	log.Info("front serving", "pid", os.Getpid(), "uid", os.Getuid(), "addr", "http://"+ln.Addr().String()+"/")
	if err := server.ServeReloading(ctx, ln, admin, srv, rl.servers(ctx, cfg, opts, log)); err != nil {
		return err
	}
	select {
	case <-client.Done():
		return errors.New("the spawner is gone")
	default:
	}
	return nil
}
