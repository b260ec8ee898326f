package app

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/fcgi"
)

// Cause is a short, stable class of failure: what the log's cause attribute
// and the client's error page carry.
type Cause string

// Causes an app pool or handler diagnoses. A launcher's own causes ("oom
// killed", "refused by policy", "no capacity") are kept as the launcher
// names them through cgi.Diagnosis.
const (
	StartFailed   Cause = "worker failed to start"         // the launcher refused or could not exec
	NeverReady    Cause = "worker never opened its socket" // no answer to the readiness probe within start_timeout
	WorkerExited  Cause = "worker exited"                  // exited, or was killed, while starting or serving
	CrashLoop     Cause = "crash loop"                     // restarts are held back after repeated failures (503)
	QueueFull     Cause = "queue full"                     // every worker busy and max_queue requests waiting (503)
	QueueTimeout  Cause = "queue timeout"                  // waited queue_timeout for a free worker (503)
	PoolStopped   Cause = "app stopped"                    // the pool was shut down (503)
	Malformed     Cause = "malformed response"             // the response header block cannot be used
	ProtocolError Cause = "protocol error"                 // the worker broke FastCGI or HTTP framing
	Unreachable   Cause = "worker unreachable"             // its socket refused or reset the connection
	Rejected      Cause = "worker rejected the request"    // FastCGI END_REQUEST other than REQUEST_COMPLETE
	NoUser        Cause = "no authenticated user"          // per-user app without an authenticated user (401)
	ClientGone    Cause = "client disconnected"
)

// Failure says why an app produced no usable response. It is logged once,
// where it is handled, and becomes the client's short error page.
type Failure struct {
	Cause      Cause
	Detail     string        // for the operator: exit status, the quoted line
	Status     int           // the HTTP status the client gets
	Exit       int           // exit status when the worker exited; -1 otherwise
	Signal     string        // the signal that ended the worker, "" otherwise
	Stderr     []string      // the worker's last stderr lines
	RetryAfter time.Duration // > 0: the client should come back later
	Err        error         // the underlying error, when there is one
}

func (f *Failure) Error() string {
	if f.Detail == "" {
		return "app: " + string(f.Cause)
	}
	return "app: " + string(f.Cause) + ": " + f.Detail
}

func (f *Failure) Unwrap() error { return f.Err }

func newFailure(c Cause, err error, format string, args ...any) *Failure {
	st := http.StatusBadGateway
	switch c {
	case CrashLoop, QueueFull, QueueTimeout, PoolStopped:
		st = http.StatusServiceUnavailable
	case NeverReady:
		st = http.StatusGatewayTimeout
	case NoUser:
		st = http.StatusUnauthorized
	case ClientGone:
		st = 499 // never reaches the client; the access log's convention
	}
	d := format
	if len(args) > 0 {
		d = fmt.Sprintf(format, args...)
	}
	return &Failure{Cause: c, Detail: d, Status: st, Exit: -1, Err: err}
}

// exitFailure says how a worker ended, from the error of Process.Wait.
func exitFailure(err error, what string, stderr []string) *Failure {
	f := &Failure{Cause: WorkerExited, Status: http.StatusBadGateway, Exit: -1, Err: err, Stderr: stderr}
	if err == nil {
		f.Exit = 0
		f.Detail = "exited with status 0 " + what
		return f
	}
	f.Detail = err.Error() + " " + what
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		f.Exit = ec.ExitCode()
	}
	var ws interface{ Sys() any }
	if errors.As(err, &ws) {
		if st, ok := ws.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			f.Signal = st.Signal().String()
			f.Detail = "killed by signal " + f.Signal + " " + what
		}
	}
	var d cgi.Diagnosis
	if errors.As(err, &d) {
		f.Cause = Cause(d.Cause())
		if st := d.HTTPStatus(); st >= 400 && st <= 599 {
			f.Status = st
		}
	} else if f.Signal == "" && f.Exit >= 0 {
		f.Detail = "exited with status " + strconv.Itoa(f.Exit) + " " + what
	}
	return f
}

// launchFailure turns an error of Launcher.Start into a Failure, keeping the
// launcher's diagnosis when it has one.
func launchFailure(err error) *Failure {
	f := newFailure(StartFailed, err, "%v", err)
	var d cgi.Diagnosis
	if errors.As(err, &d) {
		f.Cause = Cause(d.Cause())
		if st := d.HTTPStatus(); st >= 400 && st <= 599 {
			f.Status = st
		}
	}
	var ra cgi.RetryAfterer
	if errors.As(err, &ra) {
		f.RetryAfter = ra.RetryAfter()
	}
	return f
}

// transportFailure classifies an error talking to a live worker.
func transportFailure(err error) *Failure {
	var pe *fcgi.ProtocolError
	var re *fcgi.RejectedError
	var be *fcgi.BodyError
	switch {
	case errors.As(err, &be):
		f := newFailure(ClientGone, err, "reading the request body: %v", be.Err)
		var mbe *http.MaxBytesError
		if errors.As(be.Err, &mbe) {
			f.Cause, f.Status = "request body too large", http.StatusRequestEntityTooLarge
		}
		return f
	case errors.As(err, &re):
		f := newFailure(Rejected, err, "%s (app status %d)", re.Status, re.AppStatus)
		f.Status = re.HTTPStatus()
		return f
	case errors.As(err, &pe):
		return newFailure(ProtocolError, err, "%v", err)
	}
	return newFailure(Unreachable, err, "%v", err)
}
