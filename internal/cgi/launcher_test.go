package cgi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"
)

// execLauncher starts programs as the test's own user, the way the in-process
// launcher does: a new session (so the process group is the program's tree),
// parent-death signal, and kill(-pgid) for the whole tree.
type execLauncher struct{}

func (execLauncher) Start(_ context.Context, cmd *Command) (Process, error) {
	stdin := cmd.Stdin
	if stdin == nil {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		defer null.Close()
		stdin = null
	}
	p, err := os.StartProcess(cmd.Path, cmd.Args, &os.ProcAttr{
		Dir:   cmd.Dir,
		Env:   cmd.Env,
		Files: []*os.File{stdin, cmd.Stdout, cmd.Stderr},
		Sys:   &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return nil, execDiagnosis(err)
	}
	return &execProcess{p: p}, nil
}

// execDiagnosis maps exec errors to simple diagnoses; the real launcher
// (internal/spawn) tells bad interpreters and CR line ends apart.
func execDiagnosis(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return &testDiag{cause: string(NotFound), status: http.StatusBadGateway, err: err}
	case errors.Is(err, syscall.EACCES):
		return &testDiag{cause: string(NotExecutable), status: http.StatusBadGateway, err: err}
	case errors.Is(err, syscall.ENOEXEC):
		return &testDiag{cause: string(ExecFormat), status: http.StatusBadGateway, err: err}
	}
	return err
}

type execProcess struct{ p *os.Process }

func (e *execProcess) Pid() int { return e.p.Pid }

func (e *execProcess) Kill() { _ = syscall.Kill(-e.p.Pid, syscall.SIGKILL) }

func (e *execProcess) Wait() error {
	st, err := e.p.Wait()
	if err != nil {
		return err
	}
	if st.Success() {
		return nil
	}
	return &exitDiag{st: st}
}

// exitDiag says how a program ended, as launchers' errors do: a Diagnosis
// with the exit code and the raw wait status.
type exitDiag struct{ st *os.ProcessState }

func (e *exitDiag) Error() string {
	ws := e.st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

func (e *exitDiag) Cause() string {
	if e.st.Sys().(syscall.WaitStatus).Signaled() {
		return string(Signaled)
	}
	return string(Exited)
}

func (e *exitDiag) HTTPStatus() int { return http.StatusBadGateway }
func (e *exitDiag) ExitCode() int   { return e.st.ExitCode() }
func (e *exitDiag) Sys() any        { return e.st.Sys() }

// testDiag is a launcher's diagnosis of a failed start.
type testDiag struct {
	cause  string
	status int
	retry  time.Duration
	err    error
}

func (d *testDiag) Error() string {
	if d.err != nil {
		return d.cause + ": " + d.err.Error()
	}
	return d.cause
}
func (d *testDiag) Cause() string   { return d.cause }
func (d *testDiag) HTTPStatus() int { return d.status }
func (d *testDiag) Unwrap() error   { return d.err }

// retryDiag is a diagnosis that asks the client to come back later.
type retryDiag struct{ testDiag }

func (d *retryDiag) RetryAfter() time.Duration { return d.retry }

// failingLauncher refuses every start with err, as a launcher does when
// policy or capacity says no.
type failingLauncher struct{ err error }

func (f failingLauncher) Start(context.Context, *Command) (Process, error) { return nil, f.err }
