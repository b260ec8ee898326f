package app

import (
	"context"
	"os"
	"syscall"
)

// Launcher starts worker processes. The app package never switches users,
// never touches cgroups and never forks itself: it describes the worker in a
// Command and a Launcher starts it as the command's identity in that
// identity's cell. The server adapts spawn's launchers to this interface.
type Launcher interface {
	Start(ctx context.Context, cmd *Command) (Process, error)
}

// Command is one worker process as a pool wants it.
type Command struct {
	Path     string   // program to execute, absolute
	Args     []string // argv; Args[0] is the program's name
	Env      []string // the complete environment, KEY=VALUE; nothing else is inherited
	Dir      string   // working directory: the app's directory
	Identity string   // who the worker runs as; "" is the server's own user
	App      string   // the app's name (its URL path), for the launcher's policy checks and logs
	Socket   string   // the worker's socket path (SUSERVE_SOCKET in Env)
	Slot     int      // the worker's number in its pool (SUSERVE_WORKER in Env)

	// Stdin becomes descriptor 0. For a FastCGI worker it is the listening
	// socket (FastCGI 1.0 §2.2, FCGI_LISTENSOCK_FILENO); for an HTTP worker
	// it is /dev/null.
	Stdin *os.File
	// Stdout and Stderr become descriptors 1 and 2: the write end of the
	// pool's log pipe.
	Stdout, Stderr *os.File
	// ExtraFiles become descriptors 3, 4, ...: for an HTTP worker the
	// listening socket (LISTEN_FDS=1, the socket-activation convention).
	// No other descriptor may survive into the worker.
	ExtraFiles []*os.File
}

// Process is a started worker.
type Process interface {
	// Pid is the worker's process id, for the log and the status page.
	Pid() int
	// Signal sends sig to the worker (SIGTERM for a graceful stop).
	Signal(sig syscall.Signal) error
	// Wait blocks until the worker has exited. It returns nil for exit
	// status 0 and otherwise an error saying how the worker ended; errors
	// that implement cgi.Diagnosis (an OOM kill in the cell, say) keep their
	// cause.
	Wait() error
	// Kill kills the worker's whole process tree. It is safe to call more
	// than once, concurrently with Wait, and after Wait has returned.
	Kill()
}
