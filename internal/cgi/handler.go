// Package cgi is suserve's RFC 3875 (CGI/1.1) gateway: an http.Handler that
// resolves a URL to a program under a route's directory, asks a Launcher to
// start it, streams the request body in and the response out, enforces the
// time limits, and when the program fails says why, once in the log and
// briefly to the client.
package cgi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxRedirects is how many local redirects one request may follow.
const maxRedirects = 10

// exitGrace is how long a program that closed its output is given to exit
// before its tree is killed.
const exitGrace = time.Second

// Handler runs the programs of one route. Its fields are configuration: the
// server may copy a Handler per request (to set Root and Identity for an
// owner route), so it holds no per-request state.
type Handler struct {
	Launcher Launcher
	Route    string // URL prefix of the route, "/cgi-bin/"
	Root     string // the route's directory, expanded
	// DocumentRoot is what PATH_TRANSLATED maps PATH_INFO onto and what
	// DOCUMENT_ROOT says; "" is Root.
	DocumentRoot string
	Identity     string   // who the programs run as; "" is the server's own user
	PassEnv      []string // names of server environment variables passed on

	HeaderTimeout  time.Duration // start to a complete header block; 0 = none
	IdleTimeout    time.Duration // longest silence of a program's output; 0 = none
	MaxRequestBody int64         // bytes; 0 = no limit

	Diagnostics    bool   // show a failure's detail on the client's page too
	ServerSoftware string // SERVER_SOFTWARE; "" = "suserve"
	Logger         *slog.Logger

	// Dispatch serves local redirects (RFC 3875 §6.2.2), which may name any
	// URL of the server; nil is this handler.
	Dispatch http.Handler
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// ServeHTTP runs the program the request's URL names.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := RecordFrom(r.Context())
	if loc := h.serve(w, r, rec); loc != "" {
		h.redirect(w, r, rec, loc)
	}
}

// resolve finds the program a URL path names: the longest existing
// path under the route's directory that is a file is the program, the rest
// of the path is PATH_INFO. "..", encoded slashes and NUL are refused.
func (h *Handler) resolve(r *http.Request) (*script, *Failure) {
	p := r.URL.Path
	if strings.IndexByte(p, 0) >= 0 {
		return nil, newFailure(BadPath, "NUL in the request path")
	}
	if raw := r.URL.RawPath; raw != "" && (strings.Contains(raw, "%2F") || strings.Contains(raw, "%2f")) {
		return nil, newFailure(BadPath, "encoded slash in the request path")
	}
	if !strings.HasPrefix(p, h.Route) {
		return nil, newFailure(NoScript, "%q is not under the route %q", p, h.Route)
	}
	for rest := p; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if seg == ".." || seg == "." {
			return nil, newFailure(BadPath, "dot segment in the request path")
		}
	}
	rel := p[len(h.Route):]
	cur := filepath.Clean(h.Root)
	for i := 0; i < len(rel); {
		end := strings.IndexByte(rel[i:], '/')
		if end < 0 {
			end = len(rel)
		} else {
			end += i
		}
		seg := rel[i:end]
		i = end + 1
		if seg == "" {
			continue
		}
		cur += "/" + seg
		fi, err := os.Stat(cur)
		if err != nil {
			return nil, newFailure(NoScript, "no program at %q: %v", p, err)
		}
		if fi.IsDir() {
			continue
		}
		return &script{
			file:     cur,
			name:     p[:len(h.Route)+end],
			pathInfo: p[len(h.Route)+end:],
			nph:      strings.HasPrefix(seg, "nph-"),
		}, nil
	}
	return nil, newFailure(NoScript, "%q is a directory, not a program", p)
}

var outputReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, copyBufferSize) }}

// exchange is one program run: its process and the gateway's ends of its
// streams.
type exchange struct {
	h    *Handler
	r    *http.Request
	rec  *Record
	proc Process
	out  *os.File
	br   *bufio.Reader
	errs *stderrLog
	body *requestBody

	waitc   chan error
	waited  bool
	waitErr error
	gone    atomic.Bool // the client went away
	killed  atomic.Bool // the gateway killed the program (time-out, disconnect)
}

func (x *exchange) kill() {
	x.killed.Store(true)
	x.proc.Kill()
}

// wait returns how the program ended, waiting for it to end.
func (x *exchange) wait() error {
	if !x.waited {
		x.waitErr = <-x.waitc
		x.waited = true
	}
	return x.waitErr
}

// waitGrace waits for a program that closed its output, killing it after
// grace.
func (x *exchange) waitGrace(grace time.Duration) error {
	if x.waited {
		return x.waitErr
	}
	select {
	case err := <-x.waitc:
		x.waitErr, x.waited = err, true
		return err
	default:
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-x.waitc:
		x.waitErr, x.waited = err, true
	case <-t.C:
		x.kill()
		x.wait()
	}
	return x.waitErr
}

// failure completes f with the stderr tail; the tree must be dead or dying.
func (x *exchange) failure(f *Failure) *Failure {
	x.errs.finish()
	f.Stderr = x.errs.lastLines()
	return f
}

// readFailure kills the program and says why reading its output failed:
// the client left (the disconnect watch interrupts the read), a time limit
// passed, or the pipe failed.
func (x *exchange) readFailure(err error, timeout Cause, limit time.Duration, what string) *Failure {
	x.kill()
	x.wait()
	switch {
	case x.gone.Load():
		return x.failure(newFailure(ClientGone, "the client went away %s", what))
	case errors.Is(err, os.ErrDeadlineExceeded):
		if timeout == HeaderTimeout {
			return x.failure(newFailure(HeaderTimeout, "no complete header block within %v %s", limit, what))
		}
		return x.failure(newFailure(IdleTimeout, "no output for %v %s", limit, what))
	}
	return x.failure(newFailure(LaunchFailed, "reading the program's output: %v", err))
}

// serve runs the program once. It returns a local redirect's location, with
// the program finished, or "".
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rec *Record) string {
	sc, f := h.resolve(r)
	if f != nil {
		h.fail(w, r, rec, f)
		return ""
	}
	rec.Program = sc.file
	rec.Identity = h.Identity

	// The environment is bounded before any of the body is read: a request
	// refused for its URL or header fields spools nothing. CONTENT_LENGTH
	// is added once the body's length is known.
	env, fromRequest := h.env(r, rec, sc)
	if f := checkEnv(env[:fromRequest]); f != nil {
		h.fail(w, r, rec, f)
		return ""
	}
	body, f := h.openBody(w, r)
	if f != nil {
		h.fail(w, r, rec, f)
		return ""
	}
	defer body.stop()
	if body.length >= 0 {
		env = append(env, "CONTENT_LENGTH="+strconv.FormatInt(body.length, 10))
	}

	outR, outW, err := childPipe(false)
	if err != nil {
		h.fail(w, r, rec, &Failure{Cause: LaunchFailed, Detail: "stdout pipe: " + err.Error(), Status: http.StatusServiceUnavailable, Exit: -1, Err: err})
		return ""
	}
	errR, errW, err := childPipe(false)
	if err != nil {
		outR.Close()
		outW.Close()
		h.fail(w, r, rec, &Failure{Cause: LaunchFailed, Detail: "stderr pipe: " + err.Error(), Status: http.StatusServiceUnavailable, Exit: -1, Err: err})
		return ""
	}
	cmd := &Command{
		Path:     sc.file,
		Args:     []string{sc.file},
		Env:      env,
		Dir:      filepath.Dir(sc.file),
		Identity: h.Identity,
		Route:    h.Route,
		RouteDir: h.Root,
		Stdin:    body.child,
		Stdout:   outW,
		Stderr:   errW,
	}
	proc, err := h.Launcher.Start(r.Context(), cmd)
	outW.Close()
	errW.Close()
	body.closeChild()
	if err != nil {
		outR.Close()
		errR.Close()
		h.fail(w, r, rec, launchFailure(err))
		return ""
	}

	x := &exchange{h: h, r: r, rec: rec, proc: proc, out: outR, body: body, waitc: make(chan error, 1)}
	go func() {
		err := proc.Wait()
		// The program's main process is gone: its background children must
		// not outlive the request.
		proc.Kill()
		x.waitc <- err
	}()
	x.errs = newStderrLog(h, r.Context(), rec, errR)
	go x.errs.run()
	body.start(func() { x.gone.Store(r.Context().Err() != nil); x.kill() })
	stopWatch := context.AfterFunc(r.Context(), func() {
		x.gone.Store(true)
		x.kill()
		_ = outR.SetReadDeadline(time.Now())
	})
	x.br = outputReaders.Get().(*bufio.Reader)
	x.br.Reset(outR)
	defer func() {
		stopWatch()
		proc.Kill()
		x.wait()
		x.errs.finish()
		outR.Close()
		x.br.Reset(nil)
		outputReaders.Put(x.br)
	}()
	return x.respond(w, sc)
}

// respond reads the program's header block and answers the client.
func (x *exchange) respond(w http.ResponseWriter, sc *script) string {
	h, r, rec := x.h, x.r, x.rec
	start := time.Now()
	if h.HeaderTimeout > 0 {
		_ = x.out.SetReadDeadline(start.Add(h.HeaderTimeout))
	}
	resp, err := readResponseHeader(x.br, sc.nph)
	if cerr := x.body.clientErr(); err == nil && cerr != nil {
		err = cerr
	}
	var k kind
	if err == nil {
		k, err = resp.classify(sc.nph)
	}
	if err != nil {
		var f *Failure
		var he *HeaderError
		switch {
		case errors.As(err, &he):
			x.kill()
			x.wait()
			f = x.failure(newFailure(he.cause, "%s", he.detail))
		case errors.Is(err, ErrIncompleteHeader):
			grace := exitGrace
			if h.HeaderTimeout > 0 {
				grace = max(time.Until(start.Add(h.HeaderTimeout)), time.Millisecond)
			}
			werr := x.waitGrace(grace)
			what := fmt.Sprintf("before a complete header block (%d bytes of output)", resp.size)
			switch {
			case x.gone.Load():
				f = x.failure(newFailure(ClientGone, "the client went away %s", what))
			case x.body.clientErr() != nil:
				f = x.failure(bodyReadFailure(r.Context(), x.body.clientErr()))
			case x.killed.Load():
				f = x.failure(newFailure(HeaderTimeout, "output closed, and no exit within %v %s", grace, what))
			default:
				f = x.failure(exitFailure(werr, what))
			}
		case err == x.body.clientErr():
			x.kill()
			x.wait()
			f = x.failure(bodyReadFailure(r.Context(), err))
		default:
			f = x.readFailure(err, HeaderTimeout, h.HeaderTimeout, fmt.Sprintf("(%d bytes of output)", resp.size))
		}
		h.fail(w, r, rec, f)
		return ""
	}

	if h.IdleTimeout <= 0 {
		// The header deadline must not limit the body.
		_ = x.out.SetReadDeadline(time.Time{})
	}
	if k == localRedirect {
		if _, err := url.ParseRequestURI(resp.location); err != nil {
			x.kill()
			x.wait()
			h.fail(w, r, rec, x.failure(newFailure(MalformedHeader, "Location %s: %v", quoteLine([]byte(resp.location)), err)))
			return ""
		}
		// §6.2.2: the program's part is done; what it writes after the
		// header block is discarded.
		if err := x.drain(); err != nil {
			h.fail(w, r, rec, x.readFailure(err, IdleTimeout, h.IdleTimeout, "before a local redirect"))
			return ""
		}
		x.waitGrace(exitGrace)
		return resp.location
	}

	hdr := w.Header()
	for k, vv := range resp.header {
		hdr[k] = vv
	}
	if k == clientRedirect {
		hdr.Set("Location", resp.location)
	} else if sc.nph && resp.location != "" {
		hdr.Set("Location", resp.location)
	}
	if r.ProtoMajor == 1 && !x.body.fed() {
		// The program answers before it has read the whole body; if it
		// never does, the server must close the connection, and a client
		// must know that before it sends its next request on it.
		hdr.Set("Connection", "close")
	}
	w.WriteHeader(resp.status)
	x.copyBody(w, resp)
	return ""
}

// drain discards the rest of the program's output.
func (x *exchange) drain() error {
	for {
		if x.h.IdleTimeout > 0 {
			_ = x.out.SetReadDeadline(time.Now().Add(x.h.IdleTimeout))
		}
		if _, err := x.br.Discard(x.br.Buffered()); err != nil {
			return err
		}
		if _, err := x.br.Peek(1); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// copyBody streams the program's output to the client as it comes, and
// makes a broken response visibly broken: once the header is sent, a
// program that dies, is killed, or writes less than its Content-Length ends
// the response with the connection aborted (a chunked body without its last
// chunk, or a short one), never with a clean end.
func (x *exchange) copyBody(w http.ResponseWriter, resp *response) {
	h, r, rec := x.h, x.r, x.rec
	noBody := r.Method == http.MethodHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified
	// What the program wrote reaches the client within FlushDelay while
	// its output is open; a body whose output closes sooner goes out
	// whole, with a Content-Length.
	lw := NewLatencyWriter(w)
	defer lw.Stop()
	var written int64
	var rerr error
	for {
		if x.br.Buffered() == 0 {
			if h.IdleTimeout > 0 {
				_ = x.out.SetReadDeadline(time.Now().Add(h.IdleTimeout))
			}
			if _, rerr = x.br.Peek(1); rerr != nil {
				break
			}
		}
		b, _ := x.br.Peek(x.br.Buffered())
		if !noBody {
			n, err := lw.Write(b)
			written += int64(n)
			if err != nil {
				x.clientWriteFailed(err, written)
			}
		}
		_, _ = x.br.Discard(len(b))
	}

	what := fmt.Sprintf("after %d bytes of body", written)
	if rerr != io.EOF {
		h.logFailure(r.Context(), rec, x.readFailure(rerr, IdleTimeout, h.IdleTimeout, what))
		lw.Flush()
		panic(http.ErrAbortHandler)
	}
	// The body is complete but for the exit status. Flushing it while
	// the exit is awaited would gain the client nothing, since the
	// response ends only with the exit, and would cost a write and a
	// chunked encoding: a short body then goes out whole with a
	// Content-Length, and one cut short by a bad exit is flushed first.
	lw.Hold()
	werr := x.waitGrace(exitGrace)
	var f *Failure
	if x.gone.Load() {
		h.logFailure(r.Context(), rec, x.failure(newFailure(ClientGone, "the client went away %s", what)))
		panic(http.ErrAbortHandler)
	}
	if werr != nil && !x.killed.Load() {
		f = exitFailure(werr, what)
	}
	switch {
	case f != nil && f.Cause != Exited:
		// Killed by a signal (or out of memory) while writing its body.
	case !noBody && resp.contentLength >= 0 && written != resp.contentLength:
		f = newFailure(ContentLengthMismatch, "Content-Length %d, but the program wrote %d bytes", resp.contentLength, written)
	case f != nil:
		// Exited non-zero after a complete response: the client has what
		// the program meant to send; the operator still hears of it.
		f.Status = resp.status
		h.logFailure(r.Context(), rec, x.failure(f))
		return
	default:
		return
	}
	h.logFailure(r.Context(), rec, x.failure(f))
	lw.Flush()
	panic(http.ErrAbortHandler)
}

// clientWriteFailed handles an error writing to the client: the response
// cannot be completed, so the connection is aborted.
func (x *exchange) clientWriteFailed(err error, written int64) {
	x.kill()
	x.wait()
	var f *Failure
	if errors.Is(err, http.ErrContentLength) {
		f = newFailure(ContentLengthMismatch, "the program wrote more than its Content-Length")
	} else {
		f = newFailure(ClientGone, "writing the response after %d bytes of body: %v", written, err)
	}
	x.h.logFailure(x.r.Context(), x.rec, x.failure(f))
	panic(http.ErrAbortHandler)
}

// redirect serves a local redirect: the location is dispatched inside the
// server as a new GET request without a body (RFC 3875 §6.2.2).
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, rec *Record, loc string) {
	depth := redirectDepth(r.Context()) + 1
	if depth > maxRedirects {
		h.fail(w, r, rec, newFailure(RedirectLoop, "more than %d local redirects, the last to %q", maxRedirects, loc))
		return
	}
	u, err := url.ParseRequestURI(loc)
	if err != nil {
		h.fail(w, r, rec, newFailure(MalformedHeader, "Location %q: %v", loc, err))
		return
	}
	r2 := r.Clone(context.WithValue(r.Context(), redirectKey{}, depth))
	if r2.Method != http.MethodHead {
		r2.Method = http.MethodGet
	}
	r2.URL = u
	r2.RequestURI = loc
	r2.Body = http.NoBody
	r2.ContentLength = 0
	r2.TransferEncoding = nil
	r2.Header.Del("Content-Length")
	r2.Header.Del("Content-Type")
	d := h.Dispatch
	if d == nil {
		d = h
	}
	d.ServeHTTP(w, r2)
}
