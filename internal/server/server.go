// Package server composes suserve: it routes requests to the CGI gateway and
// the application workers, gives every request an id and an access-log line,
// serves the demo and the admin listener (status page), and drains in-flight
// requests on shutdown. It owns no protocol and no kernel interface.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/cell"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
)

// Version is the server's version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Software is SERVER_SOFTWARE (RFC 3875 §4.1.17).
func Software() string { return "suserve/" + Version }

// Options are what New needs besides the configuration.
type Options struct {
	Logger     *slog.Logger
	Spawner    Spawner         // starts programs; see NewLocal
	Identities identity.Source // resolves owner routes' users
	Cells      *cell.Pool      // for the status page; nil when cells are off
	StateDir   string          // expands {state}; must exist
	Demo       *Demo           // the embedded demo, when the default configuration is served
	// Notes are facts about how the server runs, shown on the status page
	// and the demo's front page (e.g. "all programs run as alice").
	Notes []string
	// Workers starts [[app]] workers; nil uses Spawner when it is a
	// *spawn.Local or a *spawn.Client, and a configuration with apps is
	// refused otherwise.
	Workers WorkerStarter
}

// Server is one configured suserve.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	opts    Options
	handler http.Handler
	recent  *recentFailures
	started time.Time
	auth    *authenticator
	ids     identity.Source

	appRoutes []*appRoute
	closeOnce sync.Once
	closeErr  error

	metrics  *metrics
	active   atomic.Int64   // requests in flight, for the log and the status page
	inflight sync.WaitGroup // the same, to wait for at shutdown
	admin    http.Handler   // the admin listener's surface

	// stopped ends when this server's requests are to be cancelled, which
	// kills their programs: its drain after a reload took too long.
	stopped     context.Context
	endRequests context.CancelFunc
}

// New builds the server's handlers from cfg. It does not listen.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Spawner == nil || opts.Identities == nil {
		return nil, errors.New("server: no spawner or identity source")
	}
	a, err := newAuthenticator(cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: opts.Logger, opts: opts, recent: newRecentFailures(50), started: time.Now(), auth: a, ids: opts.Identities}
	s.metrics = newMetrics(s)
	if s.appRoutes, err = s.apps(); err != nil {
		return nil, err
	}
	router, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.handler = s.observe(router)
	s.admin = s.adminHandler()
	s.stopped, s.endRequests = context.WithCancel(context.Background())
	return s, nil
}

// Handler is the whole HTTP surface of the main listener.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves ln (and admin, when not nil) until ctx is done, then stops
// accepting, lets in-flight requests finish for shutdown_timeout, and then
// cancels them, which kills their programs.
func (s *Server) Serve(ctx context.Context, ln, admin net.Listener) error {
	return ServeReloading(ctx, ln, admin, s, nil)
}

// ServeReloading is Serve with reloads: each server received from reload
// takes over from the current one for every request that starts from then
// on, on the same listeners and connections, so no client is refused while
// it happens. The server it replaces finishes the requests it has (for its
// shutdown_timeout, then they are cancelled) and stops its app workers
// (SIGTERM, then a kill after their grace period) in the background.
func ServeReloading(ctx context.Context, ln, admin net.Listener, s *Server, reload <-chan *Server) error {
	var cur atomic.Pointer[Server]
	cur.Store(s)
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cur.Load().handler.ServeHTTP(w, r) }),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var adminSrv *http.Server
	if admin != nil {
		adminSrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { cur.Load().admin.ServeHTTP(w, r) }), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- adminSrv.Serve(admin) }()
	}
	var retiring sync.WaitGroup
	defer retiring.Wait()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				continue
			}
			srv.Close()
			if adminSrv != nil {
				adminSrv.Close()
			}
			_ = cur.Load().stopApps()
			return err
		case next := <-reload:
			old := cur.Swap(next)
			next.log.Info("configuration reloaded: new requests use it; the previous one drains", "config", displayFile(next.cfg.File), "draining", old.Active())
			retiring.Add(1)
			go func() {
				defer retiring.Done()
				old.retire()
			}()
			continue
		case <-ctx.Done():
		}
		break
	}
	s = cur.Load()
	grace := s.cfg.Server.ShutdownTimeout.D()
	s.log.Info("shutting down: draining in-flight requests", "active", s.Active(), "shutdown_timeout", grace.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if adminSrv != nil {
		go adminSrv.Shutdown(drainCtx)
	}
	if err := srv.Shutdown(drainCtx); err != nil {
		s.log.Warn("shutdown time-out reached: killing the programs of the requests still running", "active", s.Active())
		cancelRequests()
		// Programs are killed when their request's context ends; give the
		// handlers a moment to report before the connections are closed.
		// The listeners are closed: no request starts any more.
		if !waitGroupFor(&s.inflight, 2*time.Second) {
			s.log.Warn("requests still running after their programs were killed", "active", s.Active())
		}
		srv.Close()
	}
	// No request uses a worker any more: stop them all.
	if err := s.stopApps(); err != nil {
		s.log.Warn("app workers did not stop in time", "err", err.Error())
	}
	s.log.Info("stopped")
	return nil
}

// retire ends a server a reload replaced: it lets the requests it has
// finish for its shutdown_timeout, cancels the rest, and stops its app
// workers.
func (s *Server) retire() {
	grace := s.cfg.Server.ShutdownTimeout.D()
	if !waitGroupFor(&s.inflight, grace) {
		s.log.Warn("reload: the previous configuration's requests outlived shutdown_timeout; killing their programs", "active", s.Active())
		s.endRequests()
		waitGroupFor(&s.inflight, 2*time.Second)
	}
	if err := s.stopApps(); err != nil {
		s.log.Warn("reload: the previous configuration's app workers did not stop in time", "err", err.Error())
	}
	s.log.Info("reload: the previous configuration is retired", "config", displayFile(s.cfg.File))
}

// stopApps is Close once no request uses a worker any more, bounded by
// appsGrace.
func (s *Server) stopApps() error {
	ctx, cancel := context.WithTimeout(context.Background(), appsGrace)
	defer cancel()
	return s.Close(ctx)
}

// waitGroupFor waits for wg for at most d, and says whether it ended.
func waitGroupFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Active is the number of requests in flight.
func (s *Server) Active() int { return int(s.active.Load()) }

var errAddrInUse = syscall.EADDRINUSE

// ListenError explains a listener that could not be opened, and how to pick
// another address.
type ListenError struct {
	Addr string
	Key  string // the configuration key or flag that chose Addr
	Err  error
}

func (e *ListenError) Error() string {
	if errors.Is(e.Err, errAddrInUse) {
		return fmt.Sprintf("cannot listen on %s: the address is already in use (another server runs there?); choose another with -listen 127.0.0.1:PORT or the %s key", e.Addr, e.Key)
	}
	return fmt.Sprintf("cannot listen on %s (%s): %v", e.Addr, e.Key, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Listen opens addr for the key that configured it.
func Listen(addr, key string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Key: key, Err: err}
	}
	return ln, nil
}

// PrepareState returns the state directory: the configured one, created
// private if missing, or a new private temporary directory (remove it with
// the returned function).
func PrepareState(configured string) (dir string, cleanup func(), err error) {
	if configured != "" {
		if err := os.MkdirAll(configured, 0o700); err != nil {
			return "", nil, fmt.Errorf("state directory: %w", err)
		}
		return configured, func() {}, nil
	}
	dir, err = os.MkdirTemp("", "suserve-state-")
	if err != nil {
		return "", nil, fmt.Errorf("state directory: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
