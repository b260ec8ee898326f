package app

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"

	"github.com/suserve/suserve/internal/cgi"
)

// exchangeKey carries the worker a request was given through the reverse
// proxy, to its transport and its error handler.
type exchangeKey struct{}

// exchange is one request's use of a worker.
type exchange struct {
	p       *Pool
	wk      *worker
	lastTry bool // no further attempt: a refused connection is a failure
	retry   bool // the worker refused the connection: nothing was sent or written
	failed  bool // the worker failed this request: it counts against its health
}

// workerTransport sends a request over the socket of the worker the
// request was given.
type workerTransport struct{}

func (workerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	return x.wk.tr.RoundTrip(r)
}

// RemoteUserHeader is the request field that tells an HTTP worker who
// authenticated; suserve removes whatever a client sent in it.
const RemoteUserHeader = "X-Remote-User"

func (h *Handler) reverseProxy() *httputil.ReverseProxy {
	h.proxyOnce.Do(func() {
		h.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = "app"
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
				// As for FastCGI params: the worker runs as another
				// identity and must not see the user's password.
				pr.Out.Header.Del("Authorization")
				pr.Out.Header.Del("Proxy-Authorization")
				pr.Out.Header.Del(RemoteUserHeader)
				if u := cgi.RecordFrom(pr.In.Context()).User; u != "" {
					pr.Out.Header.Set(RemoteUserHeader, u)
				}
			},
			Transport: workerTransport{},
			// Without a pool the proxy allocates a 32 KiB buffer for
			// every response.
			BufferPool: proxyBuffers{},
			// Responses of unknown length and event streams are flushed
			// at each write by the proxy itself; others within cgi.FlushDelay.
			FlushInterval: cgi.FlushDelay,
			ErrorHandler:  h.proxyError,
			ErrorLog:      log.New(slogWriter{h.logger()}, "", 0),
		}
	})
	return h.proxy
}

// proxyBuffers lends the reverse proxy the copy buffers the FastCGI path
// uses.
type proxyBuffers struct{}

func (proxyBuffers) Get() []byte { return *copyBufs.Get().(*[]byte) }

func (proxyBuffers) Put(b []byte) {
	if cap(b) < copyBufSize {
		return
	}
	b = b[:copyBufSize]
	copyBufs.Put(&b)
}

// serveHTTP proxies one request (WebSocket upgrades included: the reverse
// proxy splices the two connections after a 101) and reports whether it
// completed.
func (h *Handler) serveHTTP(w http.ResponseWriter, r *http.Request, x *exchange) {
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	h.reverseProxy().ServeHTTP(w, r)
}

func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := r.Context().Value(exchangeKey{}).(*exchange)
	// A refused connection sent nothing; the request may go to another
	// worker if its body (which the transport closes) was empty.
	if refused(err) && !x.lastTry && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0) {
		x.retry = true
		return
	}
	if malformedHTTP(err) {
		h.fail(w, r, cgi.RecordFrom(r.Context()), x.p, newFailure(Malformed, err, "%v", err))
		return // the worker is sound; its output is not
	}
	x.failed = true
	f := diagnose(r.Context(), x.wk, err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		f = bodyFailure(r.Context(), err)
	}
	if f.Cause == ClientGone {
		x.failed = false // the worker is not to blame
	}
	h.fail(w, r, cgi.RecordFrom(r.Context()), x.p, f)
}

// malformedHTTP reports whether the transport failed on the worker's
// response itself: a bad header line (a textproto.ProtocolError), or a bad
// status line or framing, which net/http's transport states only in words.
func malformedHTTP(err error) bool {
	var pe textproto.ProtocolError
	return errors.As(err, &pe) || strings.Contains(err.Error(), "malformed HTTP")
}

// slogWriter puts the reverse proxy's own messages (a failed upgrade copy,
// say) into the structured log.
type slogWriter struct{ l *slog.Logger }

func (s slogWriter) Write(b []byte) (int, error) {
	s.l.Warn("app proxy", "message", string(b))
	return len(b), nil
}
