package cgi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cause is a short, stable class of failure. It is what the log's cause
// attribute, the access log and the client's error page carry.
type Cause string

// Causes the gateway itself diagnoses. Launchers report further causes
// (out-of-memory kills, the pids limit, policy refusals, a full budget)
// through Diagnosis; their Cause string is kept as it is.
const (
	// Request problems, before any program runs.
	BadPath      Cause = "bad request path"       // "..", an encoded slash or NUL in the path (400)
	NoScript     Cause = "no such program"        // nothing executable at that URL, or a directory (404)
	BodyTooLarge Cause = "request body too large" // over max_request_body (413)
	BodyUnread   Cause = "request body unreadable"
	URITooLong   Cause = "request URI too long"            // the URL makes the environment too large (414)
	HeadersLarge Cause = "request header fields too large" // the header fields make it too large (431)

	// Launch failures and endings, as launchers name them (Diagnosis);
	// internal/spawn uses the same strings. Policy refusals are classes
	// beginning "refused: " ("refused: owner mismatch"), one per check.
	NotFound         Cause = "not found"         // the program file does not exist
	PermissionDenied Cause = "permission denied" // EACCES that the mode bits do not explain
	NotExecutable    Cause = "not executable"    // no execute bit for the identity
	NoExecMount      Cause = "noexec mount"      // the file lies on a noexec filesystem
	BadInterpreter   Cause = "bad interpreter"   // the #! line names a missing file
	InterpreterCR    Cause = "interpreter ends in carriage return"
	ExecFormat       Cause = "exec format error" // no #! and not a binary (ENOEXEC)
	OOMKilled        Cause = "oom killed"
	PidsLimit        Cause = "pids limit"
	BudgetFull       Cause = "cell budget full" // no cell free in time (503, Retry-After)
	LaunchFailed     Cause = "launch failed"    // a launcher error that carries no diagnosis

	// How the program ended or what it wrote.
	Exited                Cause = "exited"           // exited (with any status) before a complete header block
	Signaled              Cause = "killed by signal" // killed by a signal it did not ask for
	HeaderTimeout         Cause = "header timeout"   // no complete header block within header_timeout
	IdleTimeout           Cause = "idle timeout"     // no output for idle_timeout
	MalformedHeader       Cause = "malformed header"
	HeaderTooLarge        Cause = "header block too large"
	MissingContentType    Cause = "missing content-type"
	ContentLengthMismatch Cause = "content-length mismatch"
	RedirectLoop          Cause = "redirect loop"
	ClientGone            Cause = "client disconnected"
)

// Failure says why a program produced no usable response, or why the gateway
// refused to run one. It is logged once, where the gateway handles it, and
// becomes the client's error page.
type Failure struct {
	Cause      Cause
	Detail     string        // for the operator: the quoted line, the status, the signal
	Status     int           // the HTTP status the client gets
	Exit       int           // exit status, when the program exited; -1 otherwise
	Signal     string        // the signal that ended it, when it was killed ("" otherwise)
	Stderr     []string      // the last lines of its standard error
	RetryAfter time.Duration // > 0 when the client should come back later (503)
	Err        error         // the launcher's error, when there is one
}

func (f *Failure) Error() string {
	if f.Detail == "" {
		return string(f.Cause)
	}
	return string(f.Cause) + ": " + f.Detail
}

func (f *Failure) Unwrap() error { return f.Err }

// newFailure is a failure the gateway diagnosed itself.
func newFailure(c Cause, format string, args ...any) *Failure {
	st := http.StatusBadGateway
	switch c {
	case BadPath, BodyUnread:
		st = http.StatusBadRequest
	case NoScript:
		st = http.StatusNotFound
	case BodyTooLarge:
		st = http.StatusRequestEntityTooLarge
	case URITooLong:
		st = http.StatusRequestURITooLong
	case HeadersLarge:
		st = http.StatusRequestHeaderFieldsTooLarge
	case HeaderTimeout, IdleTimeout:
		st = http.StatusGatewayTimeout // RFC 9110 §15.6.5
	case ClientGone:
		st = 499 // never reaches the client; the access log's convention
	}
	d := format
	if len(args) > 0 {
		d = fmt.Sprintf(format, args...)
	}
	return &Failure{Cause: c, Detail: d, Status: st, Exit: -1}
}

// exitCoder is implemented by launcher errors that know the exit status
// (os/exec's *ExitError does too).
type exitCoder interface{ ExitCode() int }

// waitStatuser is implemented by errors that carry the raw wait status
// (os/exec's *ExitError through Sys()).
type waitStatuser interface{ Sys() any }

// launchFailure turns an error from Launcher.Start into a Failure: the
// launcher's own diagnosis when it has one.
func launchFailure(err error) *Failure {
	f := &Failure{Cause: LaunchFailed, Detail: err.Error(), Status: http.StatusBadGateway, Exit: -1, Err: err}
	var d Diagnosis
	if errors.As(err, &d) {
		f.Cause = Cause(d.Cause())
		if st := d.HTTPStatus(); st >= 400 && st <= 599 {
			f.Status = st
		}
	}
	var ra RetryAfterer
	if errors.As(err, &ra) {
		f.RetryAfter = ra.RetryAfter()
	}
	if errors.Is(err, context.Canceled) {
		f.Cause, f.Status = ClientGone, 499
	}
	return f
}

// exitFailure says how a program ended, from the error of Process.Wait, for
// a program that produced no usable response. what says what it failed to do
// ("before a complete header block (12 bytes of output)").
func exitFailure(err error, what string) *Failure {
	f := &Failure{Cause: Exited, Status: http.StatusBadGateway, Exit: -1, Err: err}
	if err == nil {
		f.Exit = 0
		f.Detail = "exited with status 0 " + what
		return f
	}
	f.Detail = err.Error() + " " + what
	var ec exitCoder
	if errors.As(err, &ec) {
		f.Exit = ec.ExitCode()
	}
	var ws waitStatuser
	if errors.As(err, &ws) {
		if st, ok := ws.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			f.Cause = Signaled
			f.Signal = st.Signal().String()
		}
	}
	var d Diagnosis
	if errors.As(err, &d) {
		f.Cause = Cause(d.Cause())
		if st := d.HTTPStatus(); st >= 400 && st <= 599 {
			f.Status = st
		}
	} else if f.Cause == Exited && f.Exit >= 0 {
		f.Detail = "exited with status " + strconv.Itoa(f.Exit) + " " + what
	}
	return f
}

// logFailure writes the one log line of a failure.
func (h *Handler) logFailure(ctx context.Context, rec *Record, f *Failure) {
	rec.Cause = string(f.Cause)
	lvl := slog.LevelError
	switch {
	case f.Cause == ClientGone:
		lvl = slog.LevelInfo
	case f.Status < 500:
		lvl = slog.LevelWarn
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("request_id", rec.ID),
		slog.String("identity", rec.Identity),
		slog.String("program", rec.Program),
		slog.String("cause", string(f.Cause)),
		slog.Int("status", f.Status),
		slog.String("detail", f.Detail),
	)
	if f.Exit >= 0 {
		attrs = append(attrs, slog.Int("exit", f.Exit))
	}
	if f.Signal != "" {
		attrs = append(attrs, slog.String("signal", f.Signal))
	}
	if len(f.Stderr) > 0 {
		attrs = append(attrs, slog.String("stderr", strings.Join(f.Stderr, "\n")))
	}
	h.logger().LogAttrs(ctx, lvl, "cgi failure", attrs...)
}

// ErrorPage is the short page a client gets when a request fails: the
// status code, the cause class and the request id, which the failure's log
// line carries too. The detail and the program's standard error are shown
// only when the operator asked for them (diagnostics = "client"), because
// they name files and programs.
type ErrorPage struct {
	Status     int           // the HTTP status
	Cause      string        // the failure's cause class ("oom killed")
	RequestID  string        // the request's id, as logged
	Detail     string        // for the operator; shown only with ShowDetail
	Stderr     []string      // the program's last stderr lines; shown only with ShowDetail
	RetryAfter time.Duration // > 0 sets Retry-After (RFC 9110 §10.2.3), in seconds rounded up
	ShowDetail bool
	// Close makes the page the connection's last (BodyMayBeUnread). A
	// handler that enabled full duplex and returns with the body unread
	// has net/http read the next request while the body's read is still
	// pending: it panics and resets the connection before the client reads
	// the page (golang/go#68560). Without full duplex, net/http closes such
	// a connection itself.
	Close bool
}

// WriteErrorPage sends p as a plain-text response, replacing any header
// fields already set on w.
func WriteErrorPage(w http.ResponseWriter, p ErrorPage) {
	hdr := w.Header()
	for k := range hdr {
		delete(hdr, k)
	}
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	if p.Close {
		hdr.Set("Connection", "close")
	}
	if p.RetryAfter > 0 {
		secs := int64((p.RetryAfter + time.Second - 1) / time.Second)
		hdr.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString(strconv.Itoa(p.Status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(p.Status))
	b.WriteString("\n\ncause: ")
	b.WriteString(p.Cause)
	b.WriteString("\nrequest id: ")
	b.WriteString(p.RequestID)
	b.WriteByte('\n')
	if p.ShowDetail {
		if p.Detail != "" {
			b.WriteString("detail: ")
			b.WriteString(p.Detail)
			b.WriteByte('\n')
		}
		if len(p.Stderr) > 0 {
			b.WriteString("stderr:\n")
			for _, l := range p.Stderr {
				b.WriteString("  ")
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
	}
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(p.Status)
	_, _ = w.Write([]byte(b.String()))
}

// fail logs f once and sends its page (before any response was sent).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rec *Record, f *Failure) {
	h.logFailure(r.Context(), rec, f)
	if f.Cause == ClientGone {
		// Nobody reads a page; a half-closed connection must not see a
		// clean empty 200 either.
		panic(http.ErrAbortHandler)
	}
	WriteErrorPage(w, ErrorPage{
		Status: f.Status, Cause: string(f.Cause), RequestID: rec.ID,
		Detail: f.Detail, Stderr: f.Stderr, RetryAfter: f.RetryAfter,
		ShowDetail: h.Diagnostics, Close: BodyMayBeUnread(r),
	})
}

// BodyMayBeUnread reports whether r came with a body over HTTP/1, which a
// failing handler may leave unread: its error page then ends the
// connection (ErrorPage.Close).
func BodyMayBeUnread(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}
