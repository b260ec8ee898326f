package fcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one request for a responder (FastCGI 1.0 §6.2).
type Request struct {
	// Params are the CGI meta-variables (RFC 3875 §4.1), sent as the
	// PARAMS stream in this order.
	Params []Param
	// Stdin is the request body, sent as the STDIN stream while the
	// response is read: it is never buffered whole, and a worker that
	// answers before reading its input does not deadlock the client. Nil
	// sends an empty stream. If reading it fails, the request is aborted
	// and Response.Read returns a *BodyError. The goroutine that sends it
	// returns when a Read of Stdin returns after the response has ended,
	// so a body that can block forever must be closed by its owner (as
	// net/http closes a request body when the handler returns).
	Stdin io.Reader
	// Stderr, if set, receives the worker's STDERR stream a line at a time,
	// without the line end; lines longer than 4 KiB arrive in pieces. It is
	// called from the goroutine that reads the Response and must not block.
	Stderr func(line string)
	// KeepConn asks the worker to keep the connection open after the
	// request (FCGI_KEEP_CONN, §5.1). Pool sets it.
	KeepConn bool
}

// abortWriteTimeout bounds how long an abort waits to hand ABORT_REQUEST to
// a worker that has stopped reading; the connection is closed either way.
const abortWriteTimeout = time.Second

// lastStdinTimeout bounds the write of the empty record that ends STDIN.
// A worker that has read the body makes room for eight bytes at once; one
// that has not is not waited for longer than this.
const lastStdinTimeout = time.Second

// Conn is a client connection to one FastCGI worker. It carries one request
// at a time (it never multiplexes; §3.5 allows that). Its methods may be
// called from any goroutine, but Do fails with ErrConnBusy until the
// previous Response has ended.
type Conn struct {
	nc net.Conn
	rd *Reader

	wmu  sync.Mutex // held while a record is written: STDIN and ABORT_REQUEST may race
	wbuf []byte     // BEGIN/PARAMS, then STDIN records; one writer at a time
	pbuf []byte     // the encoded params, kept for the next request

	busy   atomic.Bool
	broken atomic.Bool // the connection can no longer carry a request

	// release is called once when a request's exchange is over, with
	// whether the connection may carry another. Pool sets it; by default
	// a connection that may be reused stays open for the next Do.
	release func(c *Conn, reusable bool)
}

// wbufSize holds a header, a full record's content and its padding, so a
// STDIN record is read from the body straight into place. A connection
// grows its buffer to this size when it first sends a body.
const wbufSize = HeaderLen + MaxContentLength + 8

// NewConn returns a Conn over an established stream connection to a worker.
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, rd: NewReader(nc), wbuf: make([]byte, 0, 4<<10)}
}

// Dial connects to the worker listening at address ("unix" or "tcp").
func Dial(ctx context.Context, network, address string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, &ConnError{Op: "dial", Err: err}
	}
	return NewConn(nc), nil
}

// Close closes the connection; a Response in progress fails.
func (c *Conn) Close() error {
	c.broken.Store(true)
	return c.nc.Close()
}

// Broken reports whether the connection has failed or been closed and can
// carry no more requests.
func (c *Conn) Broken() bool { return c.broken.Load() }

func (c *Conn) done(reusable bool) {
	reusable = reusable && !c.broken.Load()
	if !reusable {
		c.Close()
	}
	c.busy.Store(false)
	if c.release != nil {
		c.release(c, reusable)
	}
}

// Do sends req and returns the response as it starts to arrive; the caller
// reads it to io.EOF (or to an error) and closes it. Cancelling ctx before
// the response has ended sends ABORT_REQUEST (§5.4) and closes the
// connection. Without KeepConn, the worker closes the connection after the
// request, and so does Do's Response: such a Conn carries one request.
func (c *Conn) Do(ctx context.Context, req *Request) (*Response, error) {
	if !c.busy.CompareAndSwap(false, true) {
		return nil, ErrConnBusy
	}
	if c.broken.Load() {
		c.busy.Store(false)
		return nil, &ConnError{Op: "write", Err: net.ErrClosed}
	}
	if err := context.Cause(ctx); err != nil {
		c.busy.Store(false) // nothing was sent: the connection is as it was
		return nil, fmt.Errorf("fastcgi: request not sent: %w", err)
	}
	r := &Response{c: c, req: req, keep: req.KeepConn, stdin: stdinSent}
	if req.Stderr != nil {
		r.stderr.emit = req.Stderr
	}
	r.stopCtx = context.AfterFunc(ctx, func() {
		r.abort(fmt.Errorf("fastcgi: request aborted: %w", context.Cause(ctx)))
	})

	b, err := c.appendRequestHead(c.wbuf[:0], req)
	if err != nil {
		r.finish(false)
		return nil, err
	}
	c.wmu.Lock()
	_, err = c.nc.Write(b)
	c.wmu.Unlock()
	if cap(b) <= wbufSize {
		c.wbuf = b[:0]
	}
	if err != nil {
		err = r.failure(&ConnError{Op: "write", Err: err})
		r.finish(false)
		return nil, err
	}
	if req.Stdin != nil {
		if cap(c.wbuf) < wbufSize {
			c.wbuf = make([]byte, 0, wbufSize)
		}
		r.stdin = stdinSending
		r.stdinDone = make(chan struct{})
		go r.sendStdin()
	}
	return r, nil
}

// appendRequestHead appends BEGIN_REQUEST, the PARAMS stream with its end,
// and, when there is no body, the empty STDIN record: all that the worker
// needs before the body, in one write.
func (c *Conn) appendRequestHead(b []byte, req *Request) ([]byte, error) {
	var flags byte
	if req.KeepConn {
		flags = flagKeepConn
	}
	b = appendRecord(b, TypeBeginRequest, requestID, []byte{0, roleResponder, flags, 0, 0, 0, 0, 0})
	// The pairs are encoded first and then cut into records, so a pair may
	// straddle two records as §3.4 permits and Go's child expects.
	pairs := c.pbuf[:0]
	var err error
	for _, p := range req.Params {
		if pairs, err = AppendPair(pairs, p.Name, p.Value); err != nil {
			return b, err
		}
	}
	if cap(pairs) <= wbufSize {
		c.pbuf = pairs[:0] // a huge one is not held for the next request
	}
	b = appendStream(b, TypeParams, requestID, pairs)
	b = appendRecord(b, TypeParams, requestID, nil)
	if req.Stdin == nil {
		b = appendRecord(b, TypeStdin, requestID, nil)
	}
	return b, nil
}

// writeRecord writes one record under the write lock. buf holds the
// record's content at buf[HeaderLen:HeaderLen+n] and has room for padding.
func (c *Conn) writeRecord(buf []byte, t RecordType, n int) error {
	appendHeader(buf[:0], t, requestID, n)
	pad := paddingFor(n)
	copy(buf[HeaderLen+n:], zeroPadding[:pad])
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(buf[:HeaderLen+n+pad])
	return err
}

// Values asks the worker for management variables with GET_VALUES (§4.1),
// such as FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS. A worker that
// answers is accepting connections and speaking FastCGI, which makes this
// the readiness probe for a freshly started worker.
func (c *Conn) Values(ctx context.Context, names ...string) (map[string]string, error) {
	if !c.busy.CompareAndSwap(false, true) {
		return nil, ErrConnBusy
	}
	var pairs []byte
	for _, n := range names {
		var err error
		if pairs, err = AppendPair(pairs, n, ""); err != nil {
			c.busy.Store(false)
			return nil, err
		}
	}
	if len(pairs) > MaxContentLength {
		c.busy.Store(false)
		return nil, fmt.Errorf("fastcgi: GET_VALUES of %d bytes does not fit in one record", len(pairs))
	}
	var failed atomic.Value
	stop := context.AfterFunc(ctx, func() {
		failed.Store(fmt.Errorf("fastcgi: GET_VALUES aborted: %w", context.Cause(ctx)))
		c.Close()
	})
	vals, err := c.values(appendRecord(nil, TypeGetValues, nullRequestID, pairs))
	if !stop() {
		if e, ok := failed.Load().(error); ok {
			err = e
		}
	}
	c.done(err == nil)
	return vals, err
}

func (c *Conn) values(rec []byte) (map[string]string, error) {
	c.wmu.Lock()
	_, err := c.nc.Write(rec)
	c.wmu.Unlock()
	if err != nil {
		return nil, &ConnError{Op: "write", Err: err}
	}
	h, err := c.rd.Next()
	if err == io.EOF {
		return nil, &ProtocolError{Cause: CauseTruncated, Detail: "connection closed before GET_VALUES_RESULT", Err: io.ErrUnexpectedEOF}
	}
	if err != nil {
		return nil, err
	}
	if h.Type != TypeGetValuesResult || h.RequestID != nullRequestID {
		return nil, &ProtocolError{Cause: CauseUnexpectedRecord, Detail: fmt.Sprintf("%s for request %d in answer to GET_VALUES", h.Type, h.RequestID)}
	}
	content, err := c.rd.readContent(make([]byte, h.ContentLength))
	if err != nil {
		return nil, err
	}
	// The variables of §4.1 are few; a worker that sends more than a
	// record's worth of tiny pairs is still bounded by the record size.
	pairs, err := DecodePairs(content, 64)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.Name] = p.Value
	}
	return m, nil
}

// Response is a worker's answer to one request, read as it arrives. Read
// returns the STDOUT stream (a CGI response, RFC 3875 §6: header block, then
// body) and io.EOF once END_REQUEST has reported FCGI_REQUEST_COMPLETE.
type Response struct {
	c       *Conn
	req     *Request
	keep    bool
	stopCtx func() bool

	// Reading state, owned by the goroutine calling Read.
	inStdout  bool // the current record is STDOUT with content left
	stdoutEnd bool // the empty STDOUT record has arrived
	appStatus uint32
	stderr    lineSplitter
	scratch   [512]byte

	mu        sync.Mutex
	err       error // sticky result of Read: io.EOF or a failure
	abortErr  error // why the exchange was aborted, if it was
	over      bool  // finish has run
	stdin     stdinState
	stdinDone chan struct{} // closed when the STDIN sender returns

	// redo, set by Pool for a request that is safe to send again, sends it
	// on a new connection if this one, a kept one, turns out to be dead
	// before the worker has said anything. redone is that second response.
	redo   func() (*Response, error)
	redone *Response
	heard  bool // a record has arrived
}

// stdinState is how far the STDIN stream has been sent.
type stdinState int

const (
	stdinSending stdinState = iota // body records
	stdinEnding                    // the body has ended; writing the empty record
	stdinSent                      // all of it, empty record included
	stdinFailed                    // the worker stopped taking it
)

// AppStatus is the appStatus of END_REQUEST (§5.5), the worker's
// equivalent of an exit status. It is valid once Read has returned io.EOF.
func (r *Response) AppStatus() uint32 {
	if r.redone != nil {
		return r.redone.AppStatus()
	}
	return r.appStatus
}

// deadConn reports whether err is what a kept connection that the worker
// had already closed looks like: end of input or a reset, before any
// record.
func deadConn(err error) bool {
	var pe *ProtocolError
	var ce *ConnError
	return errors.As(err, &ce) || (errors.As(err, &pe) && pe.Cause == CauseTruncated)
}

// Read reads the worker's STDOUT stream, delivering STDERR lines to the
// request's Stderr callback on the way.
func (r *Response) Read(p []byte) (int, error) {
	if r.redone != nil {
		return r.redone.Read(p)
	}
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	for {
		if r.inStdout {
			if len(p) == 0 {
				return 0, nil
			}
			n, err := r.c.rd.Read(p)
			if r.c.rd.Remaining() == 0 {
				r.inStdout = false
			}
			if err != nil && err != io.EOF {
				return n, r.fail(err)
			}
			return n, nil
		}
		if err := r.next(); err != nil {
			if err == io.EOF {
				return 0, r.end()
			}
			err = r.fail(err)
			if r.redo != nil && !r.heard && deadConn(err) {
				redone, rerr := r.redo()
				r.redo = nil
				if rerr != nil {
					return 0, err
				}
				r.redone = redone
				return redone.Read(p)
			}
			return 0, err
		}
	}
}

// next reads records until STDOUT content is ready (nil), END_REQUEST has
// arrived (io.EOF) or something went wrong.
func (r *Response) next() error {
	rd := r.c.rd
	for {
		h, err := rd.Next()
		if err == io.EOF {
			return &ProtocolError{Cause: CauseTruncated, Detail: "connection closed before END_REQUEST", Err: io.ErrUnexpectedEOF}
		}
		if err != nil {
			return err
		}
		r.heard = true
		if h.RequestID != requestID {
			if h.RequestID == nullRequestID && h.Type == TypeGetValuesResult && h.ContentLength == 0 {
				// Go's net/http/fcgi ends its GET_VALUES_RESULT with an
				// empty record of the same type, as if it were a stream;
				// it can only follow an earlier Values call.
				continue
			}
			if h.RequestID == nullRequestID {
				return &ProtocolError{Cause: CauseUnexpectedRecord, Detail: fmt.Sprintf("management record %s during a request", h.Type)}
			}
			return &ProtocolError{Cause: CauseWrongRequestID, Detail: fmt.Sprintf("%s for request %d, want %d", h.Type, h.RequestID, requestID)}
		}
		switch h.Type {
		case TypeStdout:
			if r.stdoutEnd {
				return &ProtocolError{Cause: CauseUnexpectedRecord, Detail: "STDOUT after the end of the stdout stream"}
			}
			if h.ContentLength == 0 {
				r.stdoutEnd = true
				continue
			}
			r.inStdout = true
			return nil
		case TypeStderr:
			if err := r.readStderr(); err != nil {
				return err
			}
		case TypeEndRequest:
			if h.ContentLength != 8 {
				return &ProtocolError{Cause: CauseBadEndRequest, Detail: fmt.Sprintf("content length %d, want 8", h.ContentLength)}
			}
			b, err := rd.readContent(r.scratch[:8])
			if err != nil {
				return err
			}
			r.appStatus = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			if st := ProtocolStatus(b[4]); st != StatusRequestComplete {
				return &RejectedError{Status: st, AppStatus: r.appStatus}
			}
			return io.EOF
		default:
			return &ProtocolError{Cause: CauseUnexpectedRecord, Detail: fmt.Sprintf("%s from a worker", h.Type)}
		}
	}
}

func (r *Response) readStderr() error {
	rd := r.c.rd
	if r.stderr.emit == nil {
		return nil // Next skips the content
	}
	for rd.Remaining() > 0 {
		n, err := rd.Read(r.scratch[:])
		r.stderr.write(r.scratch[:n])
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// end completes a request the worker finished normally. The connection
// can carry another request only if the STDIN stream was sent whole: if the
// worker answered before the body ended, the rest is not sent, since the
// worker would read it as the start of the next request. If only the empty
// record that ends STDIN is still being written (a worker that reads
// CONTENT_LENGTH bytes, such as php-cgi, may answer before it arrives, and
// Go's child answers as soon as it has), end waits for that write, which
// is bounded by lastStdinTimeout.
func (r *Response) end() error {
	r.stderr.flush()
	r.mu.Lock()
	state := r.stdin
	r.mu.Unlock()
	if state == stdinEnding {
		<-r.stdinDone
	}
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return err // aborted meanwhile
	}
	r.err = io.EOF
	reusable := r.keep && r.stdin == stdinSent
	r.mu.Unlock()
	r.finish(reusable)
	return io.EOF
}

// fail records err as the outcome of the exchange, or the abort that
// caused it, and gives up the connection.
func (r *Response) fail(err error) error {
	r.stderr.flush()
	err = r.failure(err)
	r.mu.Lock()
	if r.err == nil || r.err == io.EOF {
		r.err = err
	}
	err = r.err
	r.mu.Unlock()
	r.finish(false)
	return err
}

// failure prefers the reason for an abort over the I/O error it caused.
func (r *Response) failure(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abortErr != nil {
		return r.abortErr
	}
	return err
}

// finish ends the exchange once: it stops watching the context and hands
// the connection back, reusable or not.
func (r *Response) finish(reusable bool) {
	r.mu.Lock()
	if r.over {
		r.mu.Unlock()
		return
	}
	r.over = true
	r.mu.Unlock()
	r.stopCtx()
	if !reusable {
		r.c.broken.Store(true)
	}
	r.c.done(reusable && !r.c.broken.Load())
}

// abort ends an exchange that has not ended: it tells the worker with
// ABORT_REQUEST (§5.4) if the connection is free to write, and closes the
// connection, which is also an abort for a worker that does not multiplex.
func (r *Response) abort(why error) {
	r.mu.Lock()
	if r.over || r.abortErr != nil || r.err == io.EOF {
		r.mu.Unlock()
		return
	}
	r.c.broken.Store(true) // before Read can see the abort
	r.abortErr = why
	if r.err == nil {
		r.err = why
	}
	r.mu.Unlock()

	c := r.c
	// The STDIN sender may hold the write lock, stuck in a write the worker
	// is not reading; then closing the connection is the only abort left.
	if c.wmu.TryLock() {
		c.nc.SetWriteDeadline(time.Now().Add(abortWriteTimeout))
		c.nc.Write(appendRecord(make([]byte, 0, 16), TypeAbortRequest, requestID, nil))
		c.wmu.Unlock()
	}
	c.broken.Store(true)
	c.nc.Close()
	r.finish(false)
}

// Close ends the response. Closing it before Read has returned io.EOF
// aborts the request; after, it does nothing.
func (r *Response) Close() error {
	if r.redone != nil {
		return r.redone.Close()
	}
	r.abort(errResponseClosed)
	return nil
}

var errResponseClosed = errors.New("fastcgi: response closed before END_REQUEST")

// sendStdin streams the request body as STDIN records, each read from the
// body straight into the record buffer, then the empty record that ends the
// stream.
func (r *Response) sendStdin() {
	defer close(r.stdinDone)
	c := r.c
	buf := c.wbuf[:wbufSize]
	for {
		n, rerr := r.req.Stdin.Read(buf[HeaderLen : HeaderLen+MaxContentLength])
		if r.stopped() {
			return
		}
		if n > 0 {
			if err := c.writeRecord(buf, TypeStdin, n); err != nil {
				// The worker closed or reset the connection; what it
				// said before that is for the reader to find.
				r.setStdin(stdinFailed)
				return
			}
		}
		if rerr == io.EOF {
			// The response may end while this record is written, and
			// end waits for it: bound the wait in case the worker has
			// stopped reading.
			r.setStdin(stdinEnding)
			c.nc.SetWriteDeadline(time.Now().Add(lastStdinTimeout))
			err := c.writeRecord(buf, TypeStdin, 0)
			c.nc.SetWriteDeadline(time.Time{})
			if err != nil {
				r.setStdin(stdinFailed)
			} else {
				r.setStdin(stdinSent)
			}
			return
		}
		if rerr != nil {
			r.abort(&BodyError{Err: rerr})
			return
		}
	}
}

// setStdin records the STDIN stream's progress.
func (r *Response) setStdin(s stdinState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stdin = s
}

func (r *Response) stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.over || r.abortErr != nil || r.err != nil
}

// lineSplitter cuts the STDERR stream into lines for the callback, holding
// at most maxStderrLine bytes of an unfinished line.
type lineSplitter struct {
	emit func(string)
	buf  []byte
}

const maxStderrLine = 4 << 10

func (s *lineSplitter) write(p []byte) {
	for len(p) > 0 {
		i := 0
		for i < len(p) && p[i] != '\n' {
			i++
		}
		room := maxStderrLine - len(s.buf)
		if i > room {
			s.buf = append(s.buf, p[:room]...)
			p = p[room:]
			s.flush()
			continue
		}
		s.buf = append(s.buf, p[:i]...)
		if i == len(p) {
			return
		}
		p = p[i+1:]
		s.line()
	}
}

func (s *lineSplitter) line() {
	b := s.buf
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	s.emit(string(b))
	s.buf = s.buf[:0]
}

func (s *lineSplitter) flush() {
	if s.emit != nil && len(s.buf) > 0 {
		s.line()
	}
}
