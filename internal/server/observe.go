package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/suserve/suserve/internal/cgi"
)

// requestIDs makes request ids: a random per-process prefix and a counter,
// unique across restarts without a random read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 4)
	rand.Read(b)
	return &requestIDs{prefix: hex.EncodeToString(b)}
}

func (g *requestIDs) next() string {
	n := g.n.Add(1)
	var buf [8 + 1 + 16]byte
	copy(buf[:], g.prefix)
	buf[8] = '-'
	const digits = "0123456789abcdef"
	i := len(buf)
	for {
		i--
		buf[i] = digits[n&15]
		n >>= 4
		if n == 0 || i == 9 {
			break
		}
	}
	return string(append(buf[:9:9], buf[i:]...))
}

var ids = newRequestIDs()

// observe gives each request an id and a record that the handlers fill in,
// and writes one access-log line per request when it ends.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &cgi.Record{ID: ids.next()}
		// The request also ends when this server is retired after a
		// reload and its requests outlive shutdown_timeout.
		ctx, cancel := context.WithCancel(cgi.NewContext(r.Context(), rec))
		defer cancel()
		defer context.AfterFunc(s.stopped, cancel)()
		r = r.WithContext(ctx)
		lw := &logWriter{ResponseWriter: w}
		s.active.Add(1)
		s.inflight.Add(1)
		defer func() {
			s.active.Add(-1)
			defer s.inflight.Done()
			status := lw.status // 0: the connection was aborted before a response
			attrs := []slog.Attr{
				slog.String("request_id", rec.ID),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Int64("bytes", lw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
			}
			if rec.User != "" {
				attrs = append(attrs, slog.String("user", rec.User))
			}
			if rec.Identity != "" {
				attrs = append(attrs, slog.String("identity", rec.Identity))
			}
			if rec.Cause != "" {
				attrs = append(attrs, slog.String("cause", rec.Cause))
				s.recent.add(failureEntry{When: start, ID: rec.ID, Path: r.URL.Path, Status: status, Program: rec.Program, Identity: rec.Identity, Cause: rec.Cause})
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "access", attrs...)
			s.metrics.observe(status, rec.Cause, time.Since(start))
		}()
		next.ServeHTTP(lw, r)
	})
}

// logWriter counts what a handler sends, for the access log. It keeps the
// Flusher and Hijacker of the connection (streaming and NPH need them).
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *logWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *logWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusOK // an NPH program writes its own status line
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// failureEntry is one failed request, for the status page.
type failureEntry struct {
	When     time.Time
	ID       string
	Path     string
	Status   int
	Program  string
	Identity string
	Cause    string
}

// recentFailures keeps the last failures for the status page.
type recentFailures struct {
	mu      sync.Mutex
	entries []failureEntry
	next    int
	total   uint64
}

func newRecentFailures(n int) *recentFailures {
	return &recentFailures{entries: make([]failureEntry, 0, n)}
}

func (f *recentFailures) add(e failureEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total++
	if len(f.entries) < cap(f.entries) {
		f.entries = append(f.entries, e)
		return
	}
	f.entries[f.next] = e
	f.next = (f.next + 1) % len(f.entries)
}

// list returns the failures newest first, and how many there were in all.
func (f *recentFailures) list() ([]failureEntry, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]failureEntry, 0, len(f.entries))
	for i := range f.entries {
		j := (f.next - 1 - i + 2*len(f.entries)) % len(f.entries)
		out = append(out, f.entries[j])
	}
	return out, f.total
}
