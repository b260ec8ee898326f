package cgi

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// FlushDelay is how long response bytes may wait in the server's buffer
// before they are flushed to the client. Flushing each write would cost a
// system call and a chunk per write, and deny net/http the chance to send a
// short response with a Content-Length in one write; never flushing would
// hold back a streamed response (server-sent events, progress output).
const FlushDelay = 10 * time.Millisecond

// LatencyWriter writes a response body to w and flushes it FlushDelay after
// a write, from a timer, unless the body has ended first (net/http then
// sends it with the end of the response). A ResponseWriter that cannot
// flush gets the body unflushed.
type LatencyWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu    sync.Mutex // the timer's flush and the copy's writes
	timer *time.Timer
	armed bool
	done  bool
	err   error // a failed flush: the client is gone
}

// NewLatencyWriter writes to w; call Stop when the body has ended.
func NewLatencyWriter(w http.ResponseWriter) *LatencyWriter {
	return &LatencyWriter{w: w, rc: http.NewResponseController(w)}
}

// Write writes p and arms the flush. It returns the error of an earlier
// flush, if one failed.
func (lw *LatencyWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.err != nil {
		return 0, lw.err
	}
	n, err := lw.w.Write(p)
	if err != nil {
		return n, err
	}
	if !lw.armed {
		lw.armed = true
		if lw.timer == nil {
			lw.timer = time.AfterFunc(FlushDelay, lw.flush)
		} else {
			lw.timer.Reset(FlushDelay)
		}
	}
	return n, nil
}

// flush is the timer's: it flushes what the last writes left unflushed.
func (lw *LatencyWriter) flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.armed {
		lw.flushLocked()
	}
}

// Flush sends what was written now: before a response is cut short, so
// that the client sees its header and the part of the body there is, and
// then the abort.
func (lw *LatencyWriter) Flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.flushLocked()
}

func (lw *LatencyWriter) flushLocked() {
	if lw.done {
		return
	}
	lw.armed = false
	if err := lw.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) && lw.err == nil {
		lw.err = err
	}
}

// Hold disarms the pending flush: the body has ended, and what is left
// of it goes out with the end of the response, or with a Flush before
// the response is cut short. A later Write arms the flush again.
func (lw *LatencyWriter) Hold() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.disarmLocked()
}

// Stop ends the flushing; after it returns the timer never touches w.
func (lw *LatencyWriter) Stop() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.done = true
	lw.disarmLocked()
}

// disarmLocked cancels the pending flush.
func (lw *LatencyWriter) disarmLocked() {
	lw.armed = false
	if lw.timer != nil {
		lw.timer.Stop()
	}
}
