package cgi

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

const (
	stderrTailLines = 10   // lines kept for the diagnosis
	stderrLineMax   = 1024 // a longer line is cut, in the log and in the tail
	stderrBurst     = 100  // lines logged at once before rate limiting starts
	stderrPerSecond = 20   // lines per second after the burst
)

var stderrReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// stderrLog copies a program's standard error to the log line by line,
// tagged with the request id, rate-limited so that a program cannot flood
// the log, and keeps the last lines for the failure diagnosis.
type stderrLog struct {
	h    *Handler
	ctx  context.Context
	rec  *Record
	pipe *os.File
	done chan struct{}

	// Written by run, read after done is closed.
	tail       [stderrTailLines]string
	lines      int
	suppressed int

	tokens float64
	last   time.Time
}

func newStderrLog(h *Handler, ctx context.Context, rec *Record, pipe *os.File) *stderrLog {
	return &stderrLog{h: h, ctx: ctx, rec: rec, pipe: pipe, done: make(chan struct{}), tokens: stderrBurst}
}

func (s *stderrLog) run() {
	defer close(s.done)
	br := stderrReaders.Get().(*bufio.Reader)
	br.Reset(s.pipe)
	defer func() {
		br.Reset(nil)
		stderrReaders.Put(br)
	}()
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Keep the start of an over-long line and skip the rest of it.
			s.line(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				break
			}
			continue
		}
		if len(line) > 0 {
			s.line(line)
		}
		if err != nil {
			break
		}
	}
	if s.suppressed > 0 {
		s.h.logger().LogAttrs(s.ctx, slog.LevelWarn, "cgi stderr rate-limited",
			slog.String("request_id", s.rec.ID), slog.String("program", s.rec.Program), slog.Int("suppressed", s.suppressed))
	}
}

func (s *stderrLog) line(b []byte) {
	b = trimEOL(b)
	if len(b) > stderrLineMax {
		b = b[:stderrLineMax]
	}
	text := strings.ToValidUTF8(string(b), "\uFFFD")
	s.tail[s.lines%stderrTailLines] = text
	s.lines++
	if !s.allow() {
		s.suppressed++
		return
	}
	s.h.logger().LogAttrs(s.ctx, slog.LevelWarn, "cgi stderr",
		slog.String("request_id", s.rec.ID), slog.String("program", s.rec.Program), slog.String("line", text))
}

// allow is a token bucket: stderrBurst lines at once, then stderrPerSecond.
func (s *stderrLog) allow() bool {
	now := time.Now()
	if !s.last.IsZero() {
		s.tokens += now.Sub(s.last).Seconds() * stderrPerSecond
		if s.tokens > stderrBurst {
			s.tokens = stderrBurst
		}
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// finish waits until the program's standard error has ended: all its writers
// are gone once its process tree is killed. A writer that escaped the tree
// gets a second before the gateway stops listening.
func (s *stderrLog) finish() {
	select {
	case <-s.done:
	default:
		_ = s.pipe.SetReadDeadline(time.Now().Add(time.Second))
		<-s.done
	}
	s.pipe.Close()
}

// lastLines returns the kept tail, oldest first. Call after finish.
func (s *stderrLog) lastLines() []string {
	n := min(s.lines, stderrTailLines)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := s.lines - n; i < s.lines; i++ {
		out = append(out, s.tail[i%stderrTailLines])
	}
	return out
}

func trimEOL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}
