package spawn

import (
	"fmt"
	"net/http"
	"syscall"
)

// Cause is why a program did not run, or how it ended. Each exec failure,
// each ending and each policy check has its own value, so that the log names
// exactly what went wrong.
type Cause int

// Exec failures and endings (502 Bad Gateway).
const (
	NotFound         Cause = iota + 1 // the program file does not exist
	PermissionDenied                  // EACCES not explained by the mode bits or the mount
	NotExecutable                     // no execute bit for the identity (at exec time)
	NoExecMount                       // the file lies on a filesystem mounted noexec
	BadInterpreter                    // the #! line (or the ELF interpreter) names a missing or unusable file
	InterpreterCR                     // the #! line ends in a carriage return: Windows line endings
	ExecFormat                        // no #! line and not a binary the kernel runs (ENOEXEC)
	ExecFailed                        // any other exec or fork error
	Exited                            // exited with a status other than 0
	Signaled                          // killed by a signal
	OOMKilled                         // its cell's OOM killer killed it or a child
	PidsLimit                         // a fork failed at its cell's pids limit
	BadDir                            // the working directory is missing or not a directory
)

// Policy refusals (403 Forbidden): one per check of DESIGN.md "Run-as
// modes". Refused reports whether a Cause is one of them.
const (
	RootIdentity    Cause = iota + 100 // uid 0, gid 0 or a supplementary group 0
	BelowMinimum                       // uid or primary gid below UIDMin/GIDMin
	UnknownIdentity                    // the identity source does not know the name
	NotSelf                            // the server is not root and the identity is not its own user
	NoRouteDir                         // the spec names no route directory to confine the program
	DotDot                             // the path has a ".." component
	Outside                            // the path is not under the route directory, or a symlink leads out of it
	Symlink                            // the path goes through a symlink (even one that stays inside)
	NotRegular                         // not a regular file
	NoExecBit                          // no execute permission for the identity
	SetID                              // setuid or setgid bit
	WritableFile                       // writable by group or others
	WritableDir                        // a directory on the way is writable by group or others
	OwnerMismatch                      // not owned by the identity (or root, where the mode allows it)
	BadMode                            // an unknown run-as mode
)

var causeNames = map[Cause]string{
	NotFound:         "not found",
	PermissionDenied: "permission denied",
	NotExecutable:    "not executable",
	NoExecMount:      "noexec mount",
	BadInterpreter:   "bad interpreter",
	InterpreterCR:    "interpreter ends in carriage return",
	ExecFormat:       "exec format error",
	ExecFailed:       "launch failed",
	Exited:           "exited",
	Signaled:         "killed by signal",
	OOMKilled:        "oom killed",
	PidsLimit:        "pids limit",
	BadDir:           "bad working directory",

	RootIdentity:    "refused: root identity",
	BelowMinimum:    "refused: below uid_min/gid_min",
	UnknownIdentity: "refused: unknown identity",
	NotSelf:         "refused: not the server's user",
	NoRouteDir:      "refused: no route directory",
	DotDot:          "refused: dot-dot in path",
	Outside:         "refused: outside route directory",
	Symlink:         "refused: symlink in path",
	NotRegular:      "refused: not a regular file",
	NoExecBit:       "refused: not executable",
	SetID:           "refused: setuid or setgid",
	WritableFile:    "refused: writable by others",
	WritableDir:     "refused: directory writable by others",
	OwnerMismatch:   "refused: owner mismatch",
	BadMode:         "refused: unknown run-as mode",
}

// String is the cause's short, stable class, as the log and the client's
// error page carry it. Refusals all begin with "refused: ".
func (c Cause) String() string {
	if s, ok := causeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("cause(%d)", int(c))
}

// Refused reports whether c is a policy refusal rather than a failure of
// the program.
func (c Cause) Refused() bool { return c >= RootIdentity }

// Failure says why a program could not be started or how it ended. Start
// returns one for every refusal and exec failure, and Wait for every ending
// but exit status 0. It satisfies the gateway's Diagnosis interface.
type Failure struct {
	Kind   Cause
	Path   string // the program (or, for a refusal, the file the check failed on)
	Detail string // for the operator: "line 1: #!/bin/sh\r — ..."
	Exit   int    // exit status when Kind is Exited, else -1
	Signal syscall.Signal
	Killed bool       // the signal came from Process.Kill
	Cell   CellEvents // what the program's cell saw, when it has one
	Err    error      // the errno or lookup error behind it, if any
}

func (f *Failure) Error() string {
	switch f.Kind {
	case Exited:
		return fmt.Sprintf("exited with status %d", f.Exit)
	case Signaled:
		s := "killed by signal " + signalName(f.Signal)
		if f.Killed {
			s += " (sent by suserve)"
		}
		return s
	}
	s := f.Kind.String()
	if f.Path != "" {
		s += " " + f.Path
	}
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

// Unwrap returns the underlying errno or lookup error.
func (f *Failure) Unwrap() error { return f.Err }

// Cause is the short class, as Kind.String.
func (f *Failure) Cause() string { return f.Kind.String() }

// HTTPStatus is 403 for a policy refusal and 502 for everything else: the
// program, not the client, failed.
func (f *Failure) HTTPStatus() int {
	if f.Kind.Refused() {
		return http.StatusForbidden
	}
	return http.StatusBadGateway
}

// ExitCode is the exit status, or -1 when the program did not exit by
// itself (as os.ProcessState.ExitCode).
func (f *Failure) ExitCode() int { return f.Exit }

// Sys is the raw wait status for a program that ended, so that callers that
// know os/exec's errors can read it the same way; nil otherwise.
func (f *Failure) Sys() any {
	switch f.Kind {
	case Exited:
		return syscall.WaitStatus(f.Exit << 8)
	case Signaled, OOMKilled:
		if f.Signal != 0 {
			return syscall.WaitStatus(f.Signal)
		}
	}
	return nil
}

func refuse(c Cause, path, format string, args ...any) *Failure {
	return &Failure{Kind: c, Path: path, Detail: fmt.Sprintf(format, args...), Exit: -1}
}

// signalName is "SIGKILL" rather than Go's "killed": the name operators
// search for.
func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGILL: "SIGILL", syscall.SIGTRAP: "SIGTRAP", syscall.SIGABRT: "SIGABRT",
	syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2",
	syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGXCPU: "SIGXCPU", syscall.SIGXFSZ: "SIGXFSZ", syscall.SIGSYS: "SIGSYS",
}
