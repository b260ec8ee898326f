package cgi

import (
	"context"
	"os"
	"time"
)

// Launcher starts the programs the gateway runs. The gateway never switches
// users, never touches cgroups and never forks itself: it describes the program
// in a Command and a Launcher starts it (in-process when suserve is not root,
// across the privilege boundary when it is). The server adapts spawn's
// launchers to this interface.
type Launcher interface {
	Start(ctx context.Context, cmd *Command) (Process, error)
}

// Command is one program run as the gateway wants it.
type Command struct {
	Path     string   // program to execute, absolute (SCRIPT_FILENAME)
	Args     []string // argv; Args[0] is the program's name
	Env      []string // the complete environment, KEY=VALUE; nothing else is inherited
	Dir      string   // working directory: the script's directory
	Identity string   // who the program runs as; "" is the server's own user
	Route    string   // the route that chose the program, for the launcher's policy checks
	RouteDir string   // that route's directory (after {user}/{home} expansion)

	// The child's ends of its standard streams. The launcher hands them to the
	// program; the caller closes its copies after Start returns. A nil
	// one is /dev/null (Stdin of a request without a body).
	Stdin, Stdout, Stderr *os.File
}

// Process is a started program.
type Process interface {
	// Pid is the program's process id, for the log.
	Pid() int
	// Wait blocks until the program has exited. It returns nil for exit status
	// 0 and otherwise an error saying how the program ended; launchers' errors
	// implement Diagnosis so the gateway can classify them.
	Wait() error
	// Kill kills the program's whole process tree (its background children
	// too). It is safe to call more than once, concurrently with Wait, and
	// after Wait has returned.
	Kill()
}

// Diagnosis is implemented by the errors a Launcher returns from Start and
// from Process.Wait, so that the gateway can say why a program failed without
// knowing how it was launched.
type Diagnosis interface {
	error
	// Cause is a short, stable class: "not found", "bad interpreter",
	// "exited", "killed by signal", "oom killed", "refused by policy", ...
	Cause() string
	// HTTPStatus is the status the client gets: 502 for a program that
	// failed, 403 for a policy refusal, 503 when no capacity is free, 504 for
	// a time-out.
	HTTPStatus() int
}

// RetryAfterer is implemented by launcher errors that ask the client to come
// back later (a full cell budget): the gateway sends Retry-After.
type RetryAfterer interface {
	RetryAfter() time.Duration
}
