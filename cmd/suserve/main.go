// Command suserve is a web gateway for multi-user Linux hosts: it runs each
// request's program as a Unix identity inside that identity's cell, and says
// why a program failed.
//
//	suserve [serve] [-config FILE] [-listen ADDR]
//	suserve check -config FILE
//	suserve capacity [-config FILE]
//	suserve passwd -file FILE [-delete] USER
//	suserve version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/suserve/suserve/internal/cell"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/server"
)

func main() {
	if cmd, _ := command(os.Args[1:]); cmd == "serve" {
		pollSysmon()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command splits args into the subcommand and its arguments: "serve"
// when the first argument is a flag or there is none.
func command(args []string) (cmd string, rest []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "serve", args
}

// pollSysmon re-executes suserve, once, with server.SysmonPolling in its
// GODEBUG, which the Go runtime reads only as it starts. The pid, the
// arguments and the open descriptors stay as they are. If the exec fails
// (no /proc), suserve goes on as it is and costs more CPU per request.
func pollSysmon() {
	env := os.Environ()
	next := server.WithSysmonPolling(slices.Clone(env))
	if slices.Equal(env, next) {
		return
	}
	_ = syscall.Exec("/proc/self/exe", os.Args, next)
}

const usage = `usage:
  suserve [serve] [-config FILE] [-listen ADDR] [-admin-listen ADDR|off]
                                                  run the server (the default)
  suserve check [-config FILE]                    report every problem in FILE, or summarise it
  suserve capacity [-config FILE]                 the cell arithmetic and a size-versus-count table
  suserve passwd -file FILE [-delete] USER        set (password from the terminal or stdin) or remove a user
  suserve version                                 print the version
`

// run is main without the exit, so that tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	cmd, args := command(args)
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "capacity":
		return capacity(args, stdout, stderr)
	case "passwd":
		return passwd(args, os.Stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, server.Software())
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "suserve: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// configFlag parses the -config flag of a subcommand that takes only it.
func configFlag(cmd string, args []string, stderr io.Writer) (path string, ok bool) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := fs.String("config", "", "configuration file (default: the embedded demo)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	return *p, true
}

func check(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := loadConfig(path)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n%v\n", displayName(path), len(problems), err)
		} else {
			fmt.Fprintf(stderr, "suserve check: %v\n", err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n\n%s", displayName(path), cfg.Summary())
	fmt.Fprintf(stdout, "\ncells on this host: %s\n", cellBackend(cfg.Cells.Backend))
	return 0
}

// cellBackend says which cell backend [cells] backend picks on this host,
// and why, without creating anything.
func cellBackend(kind string) string {
	b, why, err := cell.Detect(kind)
	if err != nil {
		return fmt.Sprintf("backend %q cannot work here: %v", kind, err)
	}
	s := b.Name() + ": " + why
	if os.Geteuid() != 0 && b.Name() != cell.None {
		s += " (suserve must start as root to create cells; as " + server.SelfName() + " they are off)"
	}
	return s
}

func displayName(path string) string {
	if path == "" {
		return "(embedded default)"
	}
	return path
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded demo)")
	listen := fs.String("listen", "", "address to listen on, overriding [server] listen")
	adminListen := fs.String("admin-listen", "", "address of the status page and /metrics, overriding [server] admin_listen (\"off\" disables)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		if isFront() && errors.Is(err, os.ErrPermission) {
			// The spawner read the file as root; the front reads it again
			// as [server] user.
			err = fmt.Errorf("the front runs as uid %d and cannot read the configuration: %w; let that user read the file and the directories above it", os.Getuid(), err)
		}
		fmt.Fprintf(stderr, "suserve: %v\n", err)
		return 1
	}
	override := func(c *config.Config) {
		if *listen != "" {
			c.Server.Listen = *listen
		}
		switch *adminListen {
		case "":
		case "off":
			c.Server.AdminListen = ""
		default:
			c.Server.AdminListen = *adminListen
		}
	}
	override(cfg)
	listenKey := "[server] listen"
	if *listen != "" {
		listenKey = "-listen flag"
	}
	log := newLogger(cfg.Server.LogFormat, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP reloads the configuration file.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl := &reloading{hup: hup, path: *path, override: override}
	if err := start(ctx, cfg, listenKey, log, stdout, rl); err != nil {
		log.Error("suserve cannot start", "err", err.Error())
		fmt.Fprintf(stderr, "suserve: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// start opens the listeners, prepares the state directory and the demo (when
// no file was given), and serves until ctx ends, reloading the
// configuration on rl's signals.
func start(ctx context.Context, cfg *config.Config, listenKey string, log *slog.Logger, stdout io.Writer, rl *reloading) error {
	demo := rl.path == ""
	// Nothing that parses network input runs as root: see privsep.go.
	switch {
	case isFront():
		return runFront(ctx, cfg, log, rl)
	case os.Geteuid() == 0 && demo:
		return runRootDemo(ctx, cfg, listenKey, log, stdout, rl)
	case os.Geteuid() == 0:
		return runSpawner(ctx, cfg, listenKey, log, false, rl)
	}
	ln, err := server.Listen(cfg.Server.Listen, listenKey)
	if err != nil {
		return err
	}
	defer ln.Close()
	var admin net.Listener
	if cfg.Server.AdminListen != "" {
		admin, err = server.Listen(cfg.Server.AdminListen, "[server] admin_listen")
		if err != nil {
			return err
		}
		defer admin.Close()
	}
	state, cleanup, err := server.PrepareState(cfg.Server.StateDir)
	if err != nil {
		return err
	}
	defer cleanup()

	var d *server.Demo
	if demo {
		d = &server.Demo{Self: server.SelfName()}
		if err := server.WriteDemoPrograms(state); err != nil {
			return err
		}
		if admin != nil {
			d.Admin = "http://" + admin.Addr().String() + "/"
		}
	}
	launch, err := server.NewLocal(cfg, log)
	if err != nil {
		return err
	}
	defer launch.Close()
	notes := launch.Notes
	if d != nil {
		d.Cells = notes[len(notes)-1]
	}
	opts := launch.Options(log, state)
	opts.Notes, opts.Demo = notes, d
	srv, err := server.New(cfg, opts)
	if err != nil {
		return err
	}
	log.Info("suserve listening", "addr", "http://"+ln.Addr().String()+"/", "config", displayName(cfg.File), "state_dir", state)
	for _, n := range notes {
		log.Info(n)
	}
	if admin != nil {
		log.Info("status page", "addr", "http://"+admin.Addr().String()+"/")
	}
	if demo {
		fmt.Fprintf(stdout, "suserve demo: open http://%s/ (Ctrl-C stops)\n", ln.Addr())
	}
	return server.ServeReloading(ctx, ln, admin, srv, rl.servers(ctx, cfg, opts, log))
}
