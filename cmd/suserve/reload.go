package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/server"
)

// reloading is what a SIGHUP needs: the file to read again, and what the
// command line overrides in it.
type reloading struct {
	hup      <-chan os.Signal
	path     string               // "" is the embedded demo, which has no file to read again
	override func(*config.Config) // the -listen and -admin-listen flags
}

// next reads the configuration again and returns it when it may replace
// running. A refusal is logged, and the running configuration stays: a
// file with problems (each with its file, line and key), or a change to a
// setting only a restart applies.
func (rl *reloading) next(running *config.Config, log *slog.Logger) (*config.Config, bool) {
	if rl.path == "" {
		log.Warn("reload: suserve serves the embedded demo, which has no file to read again")
		return nil, false
	}
	next, err := config.Load(rl.path)
	if err != nil {
		log.Error("reload refused: the running configuration stays", "config", rl.path, "err", err.Error())
		return nil, false
	}
	if rl.override != nil {
		rl.override(next)
	}
	if keys := config.RestartKeys(running, next); len(keys) > 0 {
		log.Error("reload refused: these settings change only with a restart; the running configuration stays", "config", rl.path, "keys", strings.Join(keys, ", "))
		return nil, false
	}
	return next, true
}

// watch calls apply with each configuration a SIGHUP brings that may
// replace running, until ctx ends. What apply refuses is logged, and the
// running configuration stays.
func (rl *reloading) watch(ctx context.Context, running *config.Config, log *slog.Logger, apply func(*config.Config) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-rl.hup:
		}
		next, ok := rl.next(running, log)
		if !ok {
			continue
		}
		if err := apply(next); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("reload refused: the running configuration stays", "config", rl.path, "err", err.Error())
			continue
		}
		running = next
	}
}

// servers turns each SIGHUP into a server built from the file read again,
// for server.ServeReloading, until ctx ends.
func (rl *reloading) servers(ctx context.Context, running *config.Config, opts server.Options, log *slog.Logger) <-chan *server.Server {
	out := make(chan *server.Server)
	go rl.watch(ctx, running, log, func(next *config.Config) error {
		srv, err := server.New(next, opts)
		if err != nil {
			return err
		}
		select {
		case out <- srv:
			// The launcher outlives reloads; the variables it adds to
			// programs' environments follow [cgi] pass_env.
			if l, ok := opts.Spawner.(interface{ SetPassEnv([]string) }); ok {
				l.SetPassEnv(next.CGI.PassEnv)
			}
			return nil
		case <-ctx.Done():
			_ = srv.Close(context.Background()) // it served nothing: no worker to stop
			return ctx.Err()
		}
	})
	return out
}
