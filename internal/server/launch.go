package server

import (
	"context"
	"log/slog"
	"os"
	"strconv"

	"github.com/suserve/suserve/internal/cell"
	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
	"github.com/suserve/suserve/internal/spawn"
)

// Spawner starts programs as identities: spawn.Local in-process, or
// spawn.Client, the front's side of the privileged spawner.
type Spawner interface {
	Launch(ctx context.Context, s *spawn.Spec) (spawn.Started, error)
}

// gateway adapts a Spawner to the gateway's Launcher interface, with the
// route's run-as mode, which decides the spawner's owner check.
type gateway struct {
	spawn Spawner
	mode  string
}

func (g gateway) Start(ctx context.Context, c *cgi.Command) (cgi.Process, error) {
	p, err := g.spawn.Launch(ctx, &spawn.Spec{
		Path:     c.Path,
		Args:     c.Args,
		Env:      c.Env,
		Dir:      c.Dir,
		Identity: c.Identity,
		Route:    c.Route,
		RouteDir: c.RouteDir,
		Mode:     g.mode,
		Stdin:    c.Stdin,
		Stdout:   c.Stdout,
		Stderr:   c.Stderr,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Server) launcherFor(mode string) cgi.Launcher {
	return gateway{spawn: s.opts.Spawner, mode: mode}
}

// Launch is what runs programs for one server: the launcher, the identity
// source it and the owner routes resolve names with, and the cell pool.
type Launch struct {
	Spawn      *spawn.Local
	Identities identity.Source
	Cells      *cell.Pool // nil when cells are off
	Notes      []string   // how programs run, for the log and the status page
	Close      func()     // stops the cell pool and removes its cells
}

// NewLocal builds the in-process launcher, the identity source and the cell
// pool for cfg.
func NewLocal(cfg *config.Config, log *slog.Logger) (*Launch, error) {
	if err := CheckRunAs(cfg); err != nil {
		return nil, err
	}
	ids, err := Identities(cfg, log)
	if err != nil {
		return nil, err
	}
	cells, pool, cellNote, closeCells, err := Cells(cfg, log)
	if err != nil {
		return nil, err
	}
	l := &spawn.Local{
		Identities: ids,
		UIDMin:     cfg.Identities.UIDMin,
		GIDMin:     cfg.Identities.GIDMin,
		PassEnv:    cfg.CGI.PassEnv,
		Cells:      cells,
	}
	var notes []string
	if os.Geteuid() == 0 {
		notes = append(notes, "programs run as the identity each route names (run_as), never as root")
	} else {
		notes = append(notes, "programs run as "+SelfName()+", the server's own user: suserve was not started as root, so it does not switch identities")
	}
	notes = append(notes, cellNote)
	return &Launch{Spawn: l, Identities: ids, Cells: pool, Notes: notes, Close: closeCells}, nil
}

// Options are a server's options for programs run by l: its launcher,
// identity source and cell pool, with log and the state directory. The
// caller adds the rest (Notes, Demo).
func (l *Launch) Options(log *slog.Logger, state string) Options {
	return Options{Logger: log, Spawner: l.Spawn, Identities: l.Identities, Cells: l.Cells, StateDir: state}
}

// SelfName is the name of the user suserve runs as, or its uid.
func SelfName() string {
	if id, err := identity.Self(&identity.System{}); err == nil && id.Name != strconv.FormatUint(uint64(id.UID), 10) {
		return id.Name
	}
	return "uid " + strconv.Itoa(os.Getuid())
}
