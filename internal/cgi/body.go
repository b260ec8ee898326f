package cgi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// spoolMemory is how much of a chunked body is held in memory before
	// the rest goes to a temporary file.
	spoolMemory = 1 << 20
	// pipeWriteSafe is what a new pipe always takes without a reader: one
	// page, even when the user's pipe-user-pages-soft limit shrinks new
	// pipes to one page (pipe(7)). Bodies this small are written before the
	// program starts, without a goroutine.
	pipeWriteSafe  = 4096
	copyBufferSize = 32 << 10
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// requestBody is how a request's body reaches the program's standard input
// (RFC 3875 §4.2): streamed from the client through a pipe while the
// program's output is read, or from a spool when the client sent it chunked
// and CONTENT_LENGTH had to be learnt first.
type requestBody struct {
	length int64    // CONTENT_LENGTH, -1 when the request has no body
	child  *os.File // the program's stdin; closed once the program started

	spool *os.File  // a chunked body spooled to a temporary file
	src   io.Reader // what the feeder copies: the client's body or the memory spool
	pipe  *os.File  // our end of the stdin pipe, while a feeder writes it

	rc   *http.ResponseController
	done chan struct{}

	// readErr is the client's body failing; written by the feeder before
	// it sets failed, read only after failed is seen.
	readErr  error
	failed   atomic.Bool
	complete atomic.Bool // the whole body reached the program
}

// clientErr is the error of the client's body, if it failed.
func (b *requestBody) clientErr() error {
	if b.failed.Load() {
		return b.readErr
	}
	return nil
}

// openBody prepares the request body before the program starts. Over
// max_request_body is 413 before any program runs, so that
// no program sees a body it may not have.
func (h *Handler) openBody(w http.ResponseWriter, r *http.Request) (*requestBody, *Failure) {
	b := &requestBody{length: -1}
	max := h.MaxRequestBody
	switch {
	case r.ContentLength > 0:
		if max > 0 && r.ContentLength > max {
			return nil, newFailure(BodyTooLarge, "Content-Length %d is over the limit of %d bytes", r.ContentLength, max)
		}
		b.length = r.ContentLength
		if r.ContentLength <= pipeWriteSafe {
			buf := make([]byte, r.ContentLength)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				return nil, bodyReadFailure(r.Context(), err)
			}
			return b, b.preload(buf)
		}
		b.src = r.Body
		b.rc = http.NewResponseController(w)
		// Programs may write their whole response before reading their
		// input; HTTP/1 must then read and write at once.
		_ = b.rc.EnableFullDuplex()
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		if f := b.spoolChunked(r, max); f != nil {
			return nil, f
		}
		if b.spool != nil {
			b.child = b.spool
			return b, nil
		}
	default:
		if r.Header.Get("Content-Length") != "" || r.Method == http.MethodPost || r.Method == http.MethodPut {
			b.length = 0
		}
		// No body: the program's stdin is /dev/null, which the launcher
		// keeps open for every program (child nil).
		return b, nil
	}
	if mem, ok := b.src.(*bytes.Reader); ok && mem.Len() <= pipeWriteSafe {
		buf := make([]byte, mem.Len())
		_, _ = mem.Read(buf)
		return b, b.preload(buf)
	}
	pw, pr, err := childPipe(true)
	if err != nil {
		return nil, &Failure{Cause: LaunchFailed, Detail: "stdin pipe: " + err.Error(), Status: http.StatusServiceUnavailable, Exit: -1, Err: err}
	}
	b.child, b.pipe = pr, pw
	return b, nil
}

// preload writes a small body into a new pipe and closes it: the program
// reads it and then end of file.
func (b *requestBody) preload(buf []byte) *Failure {
	pw, pr, err := childPipe(true)
	if err != nil {
		return &Failure{Cause: LaunchFailed, Detail: "stdin pipe: " + err.Error(), Status: http.StatusServiceUnavailable, Exit: -1, Err: err}
	}
	_, err = pw.Write(buf)
	pw.Close()
	if err != nil {
		pr.Close()
		return &Failure{Cause: LaunchFailed, Detail: "stdin pipe: " + err.Error(), Status: http.StatusInternalServerError, Exit: -1, Err: err}
	}
	b.child = pr
	return nil
}

func bodyReadFailure(ctx context.Context, err error) *Failure {
	if ctx.Err() != nil {
		return newFailure(ClientGone, "while sending the request body: %v", err)
	}
	f := newFailure(BodyUnread, "reading the request body: %v", err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		f = newFailure(BodyTooLarge, "%v", err)
	}
	f.Err = err
	return f
}

// spoolChunked reads a body of unknown length, so that CONTENT_LENGTH can be
// set (RFC 3875 §4.1.2 requires it whenever there is a body): up to
// spoolMemory in memory, the rest in an unlinked temporary file.
func (b *requestBody) spoolChunked(r *http.Request, max int64) *Failure {
	limit := int64(-1)
	if max > 0 {
		limit = max + 1
	}
	first := int64(spoolMemory + 1)
	if limit >= 0 && limit < first {
		first = limit
	}
	var mem bytes.Buffer
	n, err := mem.ReadFrom(io.LimitReader(r.Body, first))
	if err != nil {
		return bodyReadFailure(r.Context(), err)
	}
	if max > 0 && n > max {
		return newFailure(BodyTooLarge, "chunked body over the limit of %d bytes", max)
	}
	if n <= spoolMemory {
		b.length = n
		b.src = bytes.NewReader(mem.Bytes())
		return nil
	}
	f, err := os.CreateTemp("", "suserve-body-*")
	if err != nil {
		return &Failure{Cause: LaunchFailed, Detail: "spooling the request body: " + err.Error(), Status: http.StatusInternalServerError, Exit: -1, Err: err}
	}
	// Unlinked at once: nothing is left behind, whatever happens next.
	_ = os.Remove(f.Name())
	fail := func(fl *Failure) *Failure { f.Close(); return fl }
	if _, err := f.Write(mem.Bytes()); err != nil {
		return fail(&Failure{Cause: LaunchFailed, Detail: "spooling the request body: " + err.Error(), Status: http.StatusInternalServerError, Exit: -1, Err: err})
	}
	rest := io.Reader(r.Body)
	if limit >= 0 {
		rest = io.LimitReader(r.Body, limit-n)
	}
	bp := copyBuffers.Get().(*[]byte)
	m, err := io.CopyBuffer(onlyWriter{f}, onlyReader{rest}, *bp)
	copyBuffers.Put(bp)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fail(&Failure{Cause: LaunchFailed, Detail: "spooling the request body: " + err.Error(), Status: http.StatusInternalServerError, Exit: -1, Err: err})
		}
		return fail(bodyReadFailure(r.Context(), err))
	}
	n += m
	if max > 0 && n > max {
		return fail(newFailure(BodyTooLarge, "chunked body over the limit of %d bytes", max))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(&Failure{Cause: LaunchFailed, Detail: "spooling the request body: " + err.Error(), Status: http.StatusInternalServerError, Exit: -1, Err: err})
	}
	b.length = n
	b.spool = f
	return nil
}

// closeChild closes the gateway's copy of the program's stdin once the
// program has it.
func (b *requestBody) closeChild() {
	if b.child != nil {
		b.child.Close() // a spool file is the child's end too
		b.child, b.spool = nil, nil
	}
}

// start feeds the body to the program, when it is not already in place.
// onClientError runs when the client's body fails: the program must not take
// half a body for a whole one.
func (b *requestBody) start(onClientError func()) {
	if b.pipe == nil {
		return
	}
	b.done = make(chan struct{})
	go func() {
		defer close(b.done)
		defer b.pipe.Close()
		bp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bp)
		buf := *bp
		for {
			n, rerr := b.src.Read(buf)
			if n > 0 {
				if _, werr := b.pipe.Write(buf[:n]); werr != nil {
					// The program stopped reading (EPIPE) or the
					// gateway gave up on it: the rest is not needed.
					return
				}
			}
			if rerr == io.EOF {
				b.complete.Store(true)
				return
			}
			if rerr != nil {
				b.readErr = rerr
				b.failed.Store(true)
				onClientError()
				return
			}
		}
	}()
}

// fed reports whether the whole body has reached the program, or was never
// the feeder's to send.
func (b *requestBody) fed() bool {
	if b.done == nil {
		return true
	}
	return b.complete.Load()
}

// stop ends the feeder, unblocking it if it waits on the client or the
// program, and releases what the body held. The request's body must not be
// read after the handler returns.
func (b *requestBody) stop() {
	if b.done != nil {
		select {
		case <-b.done:
		default:
			if b.rc != nil {
				_ = b.rc.SetReadDeadline(time.Now())
			}
			b.pipe.Close()
			<-b.done
		}
	}
	b.closeChild()
}

type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
