package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/fcgi"
)

// Pools chooses the pool that serves a request: a *Pool serves every
// request of an app that runs as one account, a *UserPools gives each
// authenticated user their own.
type Pools interface {
	PoolFor(r *http.Request) (*Pool, error)
}

// PoolFor returns p: an account app has one pool.
func (p *Pool) PoolFor(*http.Request) (*Pool, error) { return p, nil }

// Handler serves one [[app]]: it takes a worker from the request's pool and
// passes the request to it over FastCGI or HTTP, streaming both ways. Its
// fields are configuration.
type Handler struct {
	Pools Pools
	// Prefix is the URL path the app is mounted at ("/wiki/"). The rest of
	// the path names the script under Dir, as nginx's alias does.
	Prefix string
	// Dir is the app's document root: DOCUMENT_ROOT, and the directory
	// SCRIPT_FILENAME is under ($document_root$fastcgi_script_name).
	Dir string
	// Index is appended to a script path ending in "/" (nginx's
	// fastcgi_index), "index.php" for PHP; "" appends nothing.
	Index string
	// SplitPath ends the script name at the first path segment ending in it
	// (".php"); the rest becomes PATH_INFO, as nginx's
	// fastcgi_split_path_info ^(.+?\.php)(/.*)$ does. "" keeps the whole
	// path as the script name.
	SplitPath string
	// MaxRequestBody bounds the request body in bytes; 0 is no limit. A
	// chunked body is spooled to a temporary file first, because FastCGI
	// workers such as php-cgi need CONTENT_LENGTH.
	MaxRequestBody int64

	Diagnostics    bool   // show a failure's detail and stderr on the client's page too
	ServerSoftware string // SERVER_SOFTWARE; "" is "suserve"
	Logger         *slog.Logger

	proxyOnce sync.Once
	proxy     *httputil.ReverseProxy
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// maxAttempts bounds how often a request is offered to a worker: a worker
// that died leaves a socket that refuses connections until its exit is
// seen, and a request refused that way reached nobody and may go to its
// replacement.
const maxAttempts = 3

// ServeHTTP passes the request to a worker of the request's pool.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := cgi.RecordFrom(r.Context())
	if h.MaxRequestBody > 0 && r.ContentLength > h.MaxRequestBody {
		// Known too large before a byte is read: 413 before any worker
		// is asked, rather than whenever the worker's answer and the
		// limit happen to cross. Before full duplex, which net/http
		// cannot combine with a body the handler leaves unread.
		h.fail(w, r, rec, nil, &Failure{Cause: "request body too large", Detail: fmt.Sprintf("Content-Length %d is over the limit of %d bytes", r.ContentLength, h.MaxRequestBody), Status: http.StatusRequestEntityTooLarge, Exit: -1})
		return
	}
	// A worker may answer while the request body is still arriving (an
	// echo, a transcoder): HTTP/1.1 allows it, net/http only when asked.
	_ = http.NewResponseController(w).EnableFullDuplex()
	if h.MaxRequestBody > 0 && r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, h.MaxRequestBody)
	}
	for attempt := 1; ; attempt++ {
		p, wk, err := h.acquire(r)
		if err != nil {
			h.fail(w, r, rec, p, asFailure(err))
			return
		}
		rec.Identity = p.Identity
		rec.Program = p.Command[0]
		x := &exchange{p: p, wk: wk, lastTry: attempt == maxAttempts}
		func() {
			defer func() { p.release(wk, !x.failed && !x.retry) }()
			if p.Protocol == ProtocolHTTP {
				h.serveHTTP(w, r, x)
			} else {
				h.serveFastCGI(w, r, rec, x)
			}
		}()
		if !x.retry {
			return
		}
		t := time.NewTimer(time.Second)
		select {
		case <-wk.done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
}

// acquire takes a worker of the request's pool.
func (h *Handler) acquire(r *http.Request) (*Pool, *worker, error) {
	for try := 0; ; try++ {
		p, err := h.Pools.PoolFor(r)
		if err != nil {
			return nil, nil, err
		}
		wk, err := p.acquire(r.Context())
		if errors.Is(err, errRetired) && try < 3 {
			continue // a per-user pool went idle meanwhile: get its successor
		}
		return p, wk, err
	}
}

// refused reports whether err is a connection the worker's socket refused
// (or whose path is gone), or a worker whose exit was just seen: the
// request reached no worker.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.Is(err, fcgi.ErrPoolClosed)
}

func asFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return newFailure(StartFailed, err, "%v", err)
}

// fail logs f once and sends its page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rec *cgi.Record, p *Pool, f *Failure) {
	rec.Cause = string(f.Cause)
	lvl := slog.LevelError
	switch {
	case f.Cause == ClientGone:
		lvl = slog.LevelInfo
	case f.Status < 500 || f.Status == http.StatusServiceUnavailable:
		lvl = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("request_id", rec.ID),
		slog.String("cause", string(f.Cause)),
		slog.Int("status", f.Status),
		slog.String("detail", f.Detail),
	}
	if p != nil {
		attrs = append(attrs, slog.String("app", p.Name), slog.String("identity", p.Identity), slog.String("program", p.Command[0]))
	}
	if f.Exit >= 0 {
		attrs = append(attrs, slog.Int("exit", f.Exit))
	}
	if f.Signal != "" {
		attrs = append(attrs, slog.String("signal", f.Signal))
	}
	if len(f.Stderr) > 0 {
		attrs = append(attrs, slog.String("stderr", strings.Join(f.Stderr, "\n")))
	}
	h.logger().LogAttrs(r.Context(), lvl, "app failure", attrs...)
	if f.Cause == ClientGone {
		panic(http.ErrAbortHandler) // nobody reads a page
	}
	cgi.WriteErrorPage(w, cgi.ErrorPage{
		Status: f.Status, Cause: string(f.Cause), RequestID: rec.ID,
		Detail: f.Detail, Stderr: f.Stderr, RetryAfter: f.RetryAfter,
		ShowDetail: h.Diagnostics, Close: cgi.BodyMayBeUnread(r),
	})
}

// diagnose classifies an error talking to wk. A worker that died shows up
// first as a reset or a cut-short response; its exit is waited for briefly,
// so that the failure says how it ended.
func diagnose(ctx context.Context, wk *worker, err error) *Failure {
	if ctx.Err() != nil {
		return newFailure(ClientGone, err, "client went away: %v", context.Cause(ctx))
	}
	f := transportFailure(err)
	if f.Cause != Unreachable && f.Cause != ProtocolError {
		return f
	}
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-wk.done:
		ef := exitFailure(wk.exit, "while serving the request", wk.lastLines())
		ef.Err = err
		return ef
	case <-t.C:
		return f
	}
}

// serveFastCGI runs one FastCGI request (FastCGI 1.0 §6.2, the responder
// role) and reports whether it completed.
func (h *Handler) serveFastCGI(w http.ResponseWriter, r *http.Request, rec *cgi.Record, x *exchange) {
	ctx := r.Context()
	p, wk := x.p, x.wk
	script, ok := h.script(r.URL.Path)
	if !ok {
		h.fail(w, r, rec, p, &Failure{Cause: "bad request path", Detail: "\"..\" or NUL in " + strconv.Quote(r.URL.Path), Status: http.StatusBadRequest, Exit: -1})
		return
	}
	var body io.Reader
	length := r.ContentLength
	switch {
	case r.Body == nil || r.Body == http.NoBody || length == 0:
		length = 0
	case length < 0:
		// A client that stops sending must not hold the request past its
		// end (a time limit, shutdown, a reload's drain): the end
		// interrupts the read.
		stop := context.AfterFunc(ctx, func() { _ = http.NewResponseController(w).SetReadDeadline(time.Now()) })
		f, n, err := spool(r.Body)
		stop()
		if err != nil {
			h.fail(w, r, rec, p, bodyFailure(ctx, err))
			return
		}
		defer f.Close()
		body, length = f, n
	default:
		body = r.Body
	}
	// The request's logger is made only if something is logged: most
	// requests log nothing here.
	log := func() *slog.Logger {
		return h.logger().With("request_id", rec.ID, "app", p.Name, "identity", p.Identity, "pid", wk.pid)
	}
	req := &fcgi.Request{
		Params: h.params(r, rec, script, length),
		Stdin:  body,
		Stderr: func(line string) { log().Info("app stderr", "line", line) },
	}
	resp, err := wk.fc.Do(ctx, req)
	if err != nil {
		if refused(err) && !x.lastTry {
			x.retry = true
			return
		}
		x.failed = true
		h.fail(w, r, rec, p, diagnose(ctx, wk, err))
		return
	}
	defer resp.Close()
	br := readers.Get().(*bufio.Reader)
	br.Reset(resp)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	status, hdr, err := readCGIHeader(br)
	if err != nil {
		var he *cgi.HeaderError
		switch {
		case errors.As(err, &he):
			h.fail(w, r, rec, p, newFailure(Malformed, err, "%s", he.Detail()))
			return // the worker is sound; its output is not
		case errors.Is(err, cgi.ErrIncompleteHeader):
			h.fail(w, r, rec, p, newFailure(Malformed, err, "%v (app status %d)", err, resp.AppStatus()))
			return
		}
		x.failed = true
		h.fail(w, r, rec, p, diagnose(ctx, wk, err))
		return
	}
	for k, vv := range hdr {
		w.Header()[k] = vv
	}
	w.WriteHeader(status)
	if err := copyFlushing(w, br); err != nil {
		// The header is sent: all that is left is to cut the connection so
		// the client sees a truncated response, not a complete one.
		f := diagnose(ctx, wk, err)
		x.failed = f.Cause != ClientGone
		rec.Cause = string(f.Cause)
		log().Error("app failure after the response began", "cause", string(f.Cause), "detail", f.Detail)
		panic(http.ErrAbortHandler)
	}
}

func bodyFailure(ctx context.Context, err error) *Failure {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Failure{Cause: "request body too large", Detail: err.Error(), Status: http.StatusRequestEntityTooLarge, Exit: -1, Err: err}
	}
	if ctx.Err() != nil {
		return newFailure(ClientGone, err, "%v", err)
	}
	return &Failure{Cause: "request body unreadable", Detail: err.Error(), Status: http.StatusBadRequest, Exit: -1, Err: err}
}

// spool copies a body of unknown length to an unlinked temporary file and
// returns it rewound, with its length.
func spool(body io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "suserve-body-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, body)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// copyBufSize is the size of the body copy buffers.
const copyBufSize = 32 << 10

// Buffers reused across requests: a response's header reader and its body
// copy buffer.
var (
	readers  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
)

// copyFlushing streams the response body, flushing what was written at most
// cgi.FlushDelay after it was written.
func copyFlushing(w http.ResponseWriter, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	lw := cgi.NewLatencyWriter(w)
	defer lw.Stop()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := lw.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// scriptPath is where a URL path points under the app.
type scriptPath struct {
	name     string // SCRIPT_NAME: the URL path of the script
	file     string // SCRIPT_FILENAME: Dir + the script's path under Prefix
	pathInfo string // PATH_INFO
}

// script maps a URL path to the script, nginx style: the part after Prefix,
// split at SplitPath, with Index appended to a directory.
func (h *Handler) script(urlPath string) (scriptPath, bool) {
	if strings.IndexByte(urlPath, 0) >= 0 {
		return scriptPath{}, false
	}
	for _, seg := range strings.Split(urlPath, "/") {
		if seg == ".." {
			return scriptPath{}, false
		}
	}
	base := strings.TrimSuffix(h.Prefix, "/")
	rest := strings.TrimPrefix(urlPath, base)
	if !strings.HasPrefix(rest, "/") {
		rest = "/" + rest
	}
	sc := scriptPath{}
	rel := rest
	if h.SplitPath != "" {
		if i := strings.Index(rest, h.SplitPath+"/"); i >= 0 {
			rel, sc.pathInfo = rest[:i+len(h.SplitPath)], rest[i+len(h.SplitPath):]
		}
	}
	if strings.HasSuffix(rel, "/") {
		rel += h.Index
	}
	sc.name = base + rel
	sc.file = filepath.Join(h.Dir, path.Clean(rel))
	if strings.HasSuffix(rel, "/") {
		sc.file += "/"
	}
	return sc, true
}

// params is the request's CGI meta-variables (RFC 3875 §4.1) as FastCGI
// params, built straight into the list the request sends.
func (h *Handler) params(r *http.Request, rec *cgi.Record, sc scriptPath, length int64) []fcgi.Param {
	ps := make([]fcgi.Param, 0, 24+len(r.Header))
	m := cgi.MetaVars{
		Software:       h.ServerSoftware,
		DocumentRoot:   h.Dir,
		ScriptName:     sc.name,
		ScriptFilename: sc.file,
		PathInfo:       sc.pathInfo,
		ContentLength:  length,
		AuthType:       rec.AuthType,
		User:           rec.User,
	}
	m.Each(r, func(name, value string) { ps = append(ps, fcgi.Param{Name: name, Value: value}) })
	// php-cgi refuses requests without it (cgi.force_redirect); nginx's
	// fastcgi_params sets it the same way.
	return append(ps, fcgi.Param{Name: "REDIRECT_STATUS", Value: "200"})
}
