package server

import (
	"context"
	"log/slog"
	"os"
	"os/user"
	"strconv"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
	"github.com/suserve/suserve/internal/spawn"
)

// Spawner starts programs as identities: spawn.Local in-process, or the
// client of the privileged spawner.
type Spawner interface {
	Start(ctx context.Context, s *spawn.Spec) (*spawn.Process, error)
}

// gateway adapts a Spawner to the gateway's Launcher interface, with the
// route's run-as mode, which decides the spawner's owner check.
type gateway struct {
	spawn Spawner
	mode  string
}

func (g gateway) Start(ctx context.Context, c *cgi.Command) (cgi.Process, error) {
	p, err := g.spawn.Start(ctx, &spawn.Spec{
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

// NewLocal builds the in-process launcher and the identity source for cfg,
// and says how programs will run, for the log and the status page.
func NewLocal(cfg *config.Config, log *slog.Logger) (*spawn.Local, identity.Source, []string, error) {
	if err := CheckRunAs(cfg); err != nil {
		return nil, nil, nil, err
	}
	ids, err := Identities(cfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	l := &spawn.Local{
		Identities: ids,
		UIDMin:     cfg.Identities.UIDMin,
		GIDMin:     cfg.Identities.GIDMin,
		PassEnv:    cfg.CGI.PassEnv,
	}
	var notes []string
	if os.Geteuid() == 0 {
		notes = append(notes, "programs run as the identity each route names (run_as), never as root")
	} else {
		notes = append(notes, "programs run as "+SelfName()+", the server's own user: suserve was not started as root, so it does not switch identities")
	}
	return l, ids, notes, nil
}

// SelfName is the name of the user suserve runs as, or its uid.
func SelfName() string {
	uid := os.Getuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}
