package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
	"github.com/suserve/suserve/internal/server"
)

// demoFrontUID is the front's uid in the demo started as root when the host
// has no account named by [server] user: a spare uid, so that the demo
// needs no account created.
const demoFrontUID = 61050

// runRootDemo serves the demo as root the way a configured server runs: the
// demo users' configuration is written to the state directory, and the
// spawner starts an unprivileged front for it, so that nothing that parses
// HTTP runs as root even in the demo.
func runRootDemo(ctx context.Context, base *config.Config, listenKey string, log *slog.Logger, stdout io.Writer, rl *reloading) error {
	state, cleanup, err := server.PrepareState(base.Server.StateDir)
	if err != nil {
		return err
	}
	defer cleanup()
	frontUser := base.Server.User
	if _, err := (&identity.System{}).Lookup(frontUser); err != nil {
		frontUser = strconv.Itoa(demoFrontUID)
	}
	cred, err := frontCredential(frontUser)
	if err != nil {
		return err
	}
	cfg, users, err := server.RootDemo(state, base, frontUser)
	if err != nil {
		return err
	}
	// The front checks the passwords, so it reads the htpasswd file.
	if err := os.Chown(cfg.Auth.Htpasswd, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("demo users: %w", err)
	}
	if err := server.WriteDemoPrograms(state); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "suserve demo: open http://%s/ (Ctrl-C stops)\n", cfg.Server.Listen)
	for _, u := range users {
		fmt.Fprintf(stdout, "  demo user %s (uid %d), password %s\n", u.Name, u.UID, u.Password)
	}
	// rl has no file: the demo's configuration is made here, and a SIGHUP
	// only says there is nothing to reload.
	return runSpawner(ctx, cfg, listenKey, log, true, rl)
}
