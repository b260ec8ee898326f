package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/suserve/suserve/internal/app"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/spawn"
)

// WorkerStarter starts persistent app workers as their identities, in their
// identities' cells: spawn.Local in-process, spawn.Client across the
// privilege boundary (the spawner then takes the command from its own
// configuration).
type WorkerStarter interface {
	LaunchWorker(ctx context.Context, s *spawn.WorkerSpec) (spawn.Worker, error)
}

// workerLauncher adapts a WorkerStarter to the app package's Launcher.
type workerLauncher struct{ w WorkerStarter }

func (l workerLauncher) Start(ctx context.Context, c *app.Command) (app.Process, error) {
	p, err := l.w.LaunchWorker(ctx, &spawn.WorkerSpec{
		Path:       c.Path,
		Args:       c.Args,
		Env:        c.Env,
		Dir:        c.Dir,
		Identity:   c.Identity,
		App:        c.App,
		Stdin:      c.Stdin,
		Stdout:     c.Stdout,
		Stderr:     c.Stderr,
		ExtraFiles: c.ExtraFiles,
		Socket:     c.Socket,
		Slot:       c.Slot,
	})
	if err != nil {
		return nil, err
	}
	return workerProcess{p}, nil
}

// workerProcess is a worker as a pool sees it. A pool waits for a worker
// and kills it only when stopping it takes too long; spawn reaps a program
// (and gives back its cell slot) in Kill. So once the worker has exited,
// Wait kills what is left of its tree (children it left behind) and reaps
// it: nothing of an exited worker outlives it, and its cell slot returns
// to the budget.
type workerProcess struct{ spawn.Worker }

func (p workerProcess) Wait() error {
	err := p.Worker.Wait()
	p.Worker.Kill()
	return err
}

// appRoute is one [[app]] ready to serve.
type appRoute struct {
	cfg     config.App
	handler *app.Handler
	account *app.Pool      // run_as = "account"
	users   *app.UserPools // run_as = "authenticated"
}

// appsGrace bounds how long shutdown waits for workers beyond their own
// SIGTERM-to-kill grace period.
const appsGrace = app.DefaultGrace + 5*time.Second

// refuseApps refuses a configuration with [[app]] sections when the
// server's launcher cannot start workers; launcher names it.
func refuseApps(cfg *config.Config, launcher string) error {
	var errs []error
	for _, a := range cfg.Apps {
		errs = append(errs, fmt.Errorf("%s: app %s (line %d): [[app]] sections need a launcher that starts persistent workers, and %s starts none; remove the section", displayFile(cfg.File), a.Path, a.Line, launcher))
	}
	return errors.Join(errs...)
}

// apps builds a pool (or a pool per user) and a handler for every [[app]].
func (s *Server) apps() ([]*appRoute, error) {
	if len(s.cfg.Apps) == 0 {
		return nil, nil
	}
	ws := s.opts.Workers
	if ws == nil {
		switch l := s.opts.Spawner.(type) {
		case *spawn.Local:
			ws = l
		case *spawn.Client:
			ws = l
		}
	}
	if ws == nil {
		return nil, refuseApps(s.cfg, fmt.Sprintf("this server's launcher (%T)", s.opts.Spawner))
	}
	// Only suserve connects to the workers' sockets; each pool makes its
	// own 0700 directory below this one.
	sockets := filepath.Join(s.opts.StateDir, "apps")
	if err := os.MkdirAll(sockets, 0o700); err != nil {
		return nil, fmt.Errorf("app socket directory: %w", err)
	}
	launcher := workerLauncher{w: ws}
	var out []*appRoute
	for _, a := range s.cfg.Apps {
		dir := a.ExpandDir(s.opts.StateDir)
		maxQueue := a.MaxQueue
		if maxQueue == 0 {
			maxQueue = -1 // the configuration's 0 is "refuse when every worker is busy"
		}
		newPool := func(identity string) *app.Pool {
			return &app.Pool{
				Name:         a.Path,
				Protocol:     a.Protocol,
				Command:      a.Command,
				Dir:          dir,
				Env:          a.Env,
				Identity:     identity,
				Launcher:     launcher,
				SocketDir:    sockets,
				Workers:      a.Workers,
				Concurrency:  a.Concurrency,
				MaxQueue:     maxQueue,
				StartTimeout: a.StartTimeout.D(),
				IdleStop:     a.IdleStop.D(),
				Logger:       s.log, // the pool names the app itself
			}
		}
		x := &appRoute{cfg: a}
		h := &app.Handler{
			Prefix:         a.Path,
			Dir:            dir,
			MaxRequestBody: s.cfg.CGI.MaxRequestBody.Bytes(),
			Diagnostics:    s.cfg.Server.Diagnostics == "client",
			ServerSoftware: Software(),
			Logger:         s.log,
		}
		if a.Protocol == config.ProtocolFastCGI {
			// nginx's usual PHP location: /x.php/rest gives PATH_INFO
			// /rest, and a directory serves its index.php.
			h.Index, h.SplitPath = "index.php", ".php"
		}
		switch a.RunAs {
		case config.RunAsAuthenticated:
			x.users = &app.UserPools{New: newPool}
			h.Pools = x.users
		case config.RunAsAccount:
			x.account = newPool(a.Account)
			h.Pools = x.account
		default: // self: only when suserve is not root (CheckRunAs)
			x.account = newPool("")
			h.Pools = x.account
		}
		x.handler = h
		out = append(out, x)
	}
	// Longest prefix first, as the routes.
	slices.SortStableFunc(out, func(a, b *appRoute) int { return len(b.cfg.Path) - len(a.cfg.Path) })
	return out, nil
}

// appFor returns the app with the longest prefix of urlPath, or nil.
func (rt *router) appFor(urlPath string) *appRoute {
	for _, a := range rt.apps {
		if strings.HasPrefix(urlPath, a.cfg.Path) {
			return a
		}
	}
	return nil
}

// serve authenticates the request when the app runs as the authenticated
// user (there is no anonymous identity for an app: such requests get 401),
// and passes it to the app's handler.
func (a *appRoute) serve(s *Server, w http.ResponseWriter, r *http.Request) {
	if a.users != nil {
		if _, ok := s.login(w, r, false); !ok {
			return
		}
	}
	a.handler.ServeHTTP(w, r)
}

// closeApps stops every app's workers gracefully and waits for them.
func (s *Server) closeApps(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.appRoutes))
	for i, a := range s.appRoutes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a.users != nil {
				errs[i] = a.users.Close(ctx)
			} else {
				errs[i] = a.account.Close(ctx)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every app's workers gracefully (SIGTERM, then a kill of each
// worker's tree after its grace period) and waits for them, or for ctx.
// Serve calls it on shutdown; a caller that serves Handler itself calls it
// when done.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.closeApps(ctx) })
	return s.closeErr
}

// appStatus is one pool on the status page.
type appStatus struct {
	Path, Protocol, Identity string
	Stats                    *app.Stats
}

// appStatuses lists every app's pools, for the status page: the account's
// pool, or the pool of each user who has one now.
func (s *Server) appStatuses() []appStatus {
	var out []appStatus
	for _, a := range s.appRoutes {
		if a.account != nil {
			st := a.account.Stats()
			out = append(out, appStatus{Path: a.cfg.Path, Protocol: a.cfg.Protocol, Identity: a.account.Identity, Stats: &st})
			continue
		}
		for _, us := range a.users.Stats() {
			out = append(out, appStatus{Path: a.cfg.Path, Protocol: a.cfg.Protocol, Identity: us.Identity, Stats: &us.Stats})
		}
	}
	return out
}
