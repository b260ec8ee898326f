package fcgi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	gofcgi "net/http/fcgi"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/fcgi"
)

// testTimeout bounds every exchange, so a deadlock fails the test with an
// abort instead of hanging it.
const testTimeout = 60 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func dialConn(t testing.TB, path string) *fcgi.Conn {
	t.Helper()
	c, err := fcgi.Dial(testContext(t), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGetReachesGoWorkerWithParamsOfAnyLength(t *testing.T) {
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := gofcgi.ProcessEnv(r)
		fmt.Fprintf(w, "%s %s x-long=%d custom=%d", r.Method, r.URL.RequestURI(), len(r.Header.Get("X-Long")), len(env["CUSTOM"]))
	}))
	tests := []struct {
		name string
		n    int
	}{
		{"empty value", 0},
		{"127 bytes, the longest one-byte length", 127},
		{"128 bytes, four-byte length", 128},
		{"70000 bytes, a pair straddling two PARAMS records", 70000},
		{"300000 bytes, five PARAMS records", 300000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialConn(t, path)
			v := strings.Repeat("v", tt.n)
			out, err := roundTrip(testContext(t), c.Do, &fcgi.Request{Params: cgiParams("GET", "/x?q=1", -1,
				fcgi.Param{Name: "HTTP_X_LONG", Value: v}, fcgi.Param{Name: "CUSTOM", Value: v})})
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("GET /x?q=1 x-long=%d custom=%d", tt.n, tt.n)
			if !strings.HasPrefix(out, "Status: 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\n"+want) {
				t.Errorf("stdout %q, want a 200 CGI response with body %q", out, want)
			}
		})
	}
}

func TestRequestBodyStreamsWhileOutputIsRead(t *testing.T) {
	// The worker writes 8 MiB before it reads a byte of its 8 MiB input:
	// a client that sent all of stdin before reading stdout would deadlock
	// as soon as both socket buffers filled.
	const size = 8 << 20
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, &patternReader{n: size})
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d", n)
	}))
	c := dialConn(t, path)
	out, err := roundTrip(testContext(t), c.Do, &fcgi.Request{
		Params: cgiParams("POST", "/", size),
		Stdin:  &patternReader{n: size},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("read %d", size); !strings.HasSuffix(out, want) {
		t.Errorf("stdout ends %q, want %q", out[max(0, len(out)-20):], want)
	}
}

// memProbe samples the heap as a stream passes, to show that memory stays
// flat however large the stream is.
type memProbe struct {
	w        io.Writer
	n, next  int64
	baseline uint64
	peak     uint64
}

func newMemProbe(w io.Writer) *memProbe {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &memProbe{w: w, baseline: ms.HeapAlloc}
}

func (p *memProbe) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.n >= p.next {
		p.next += 4 << 20
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.peak = max(p.peak, ms.HeapAlloc)
	}
	return p.w.Write(b)
}

func TestHundredMiBBothWaysWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	const size = 100 << 20
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body) // echo as it arrives
	}))
	c := dialConn(t, path)
	resp, err := c.Do(testContext(t), &fcgi.Request{
		Params: cgiParams("POST", "/echo", size),
		Stdin:  &patternReader{n: size},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	check := &patternChecker{}
	resetPeakRSS(t)
	rssBefore := peakRSS(t)
	probe := newMemProbe(check)
	// Skip the CGI header block the Go worker puts in front of the echo.
	var head []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := io.ReadFull(resp, one); err != nil {
			t.Fatalf("reading the header block: %v", err)
		}
		head = append(head, one[0])
	}
	if _, err := io.Copy(probe, resp); err != nil {
		t.Fatal(err)
	}
	if check.off != size || check.err != nil {
		t.Fatalf("echoed %d bytes (%v), want %d intact", check.off, check.err, size)
	}
	growth := int64(probe.peak) - int64(probe.baseline)
	rssGrowth := peakRSS(t) - rssBefore
	t.Logf("while 100 MiB went each way: heap peak %d KiB above baseline, peak RSS +%d KiB", growth>>10, rssGrowth>>10)
	if rssBefore > 0 && rssGrowth > 32<<20 {
		t.Errorf("peak RSS grew by %d MiB while streaming", rssGrowth>>20)
	}
	// Both ends run in this process; a buffered stream would be 100 MiB.
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB while streaming: memory is not flat", growth>>20)
	}
}

// resetPeakRSS resets the kernel's high-water mark of this process's
// resident memory (proc(5), /proc/pid/clear_refs, value 5).
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset peak RSS: %v", err)
	}
}

// peakRSS returns VmHWM from /proc/self/status in bytes, or 0.
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Logf("cannot read peak RSS: %v", err)
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func TestWorkerRefusingTheBodyStillGetsItsAnswerDelivered(t *testing.T) {
	// The worker reads the request's head, answers 413 and closes without
	// reading the body: sending STDIN fails, the answer must still arrive.
	ln, err := net.Listen("unix", t.TempDir()+"/refuse.sock")
	if err != nil {
		t.Fatal(err)
	}
	var served sync.WaitGroup
	t.Cleanup(func() { ln.Close(); served.Wait() })
	served.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		rd := fcgi.NewReader(c)
		for {
			h, err := rd.Next()
			if err != nil {
				return
			}
			if h.Type == fcgi.TypeParams && h.ContentLength == 0 {
				break
			}
		}
		c.Write(append(record(fcgi.TypeStdout, 1, []byte("Status: 413 Content Too Large\r\n\r\n")), endRequest(0, 0)...))
	})
	c := dialConn(t, ln.Addr().String())
	out, err := roundTrip(testContext(t), c.Do, &fcgi.Request{
		Params: cgiParams("POST", "/", 64<<20),
		Stdin:  &patternReader{n: 64 << 20},
	})
	if err != nil || !strings.HasPrefix(out, "Status: 413") {
		t.Fatalf("stdout %q, %v; want the worker's 413", out, err)
	}
}

func TestPoolReusesKeptConnection(t *testing.T) {
	path, l := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", r.Method, len(b))
	}))
	p := fcgi.NewPool("unix", path, 2)
	defer p.Close()
	for i := range 10 {
		req := &fcgi.Request{Params: cgiParams("GET", "/", -1)}
		want := "GET 0"
		if i%2 == 0 {
			req = &fcgi.Request{Params: cgiParams("POST", "/", 5), Stdin: strings.NewReader("hello")}
			want = "POST 5"
		}
		out, err := roundTrip(testContext(t), p.Do, req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !strings.HasSuffix(out, want) {
			t.Fatalf("request %d: stdout %q, want body %q", i, out, want)
		}
	}
	if n := l.accepted.Load(); n != 1 {
		t.Errorf("worker accepted %d connections for 10 sequential requests, want 1", n)
	}
	if s := p.Stats(); s.Dialed != 1 || s.Reused != 9 || s.Idle != 1 {
		t.Errorf("pool stats %+v, want 1 dialed, 9 reused, 1 idle", s)
	}
}

func TestPoolKeepsAtMostMaxIdleConnections(t *testing.T) {
	release := make(chan struct{})
	path, l := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	p := fcgi.NewPool("unix", path, 2)
	defer p.Close()
	var resps []*fcgi.Response
	for range 4 {
		resp, err := p.Do(testContext(t), &fcgi.Request{Params: cgiParams("GET", "/", -1)})
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	close(release)
	for _, resp := range resps {
		if _, err := io.ReadAll(resp); err != nil {
			t.Fatal(err)
		}
		resp.Close()
	}
	if n, s := l.accepted.Load(), p.Stats(); n != 4 || s.Idle != 2 {
		t.Errorf("%d connections for 4 concurrent requests with %d kept idle, want 4 and 2", n, s.Idle)
	}
}

func TestConnectionNotReusedWhenWorkerAnswersBeforeReadingInput(t *testing.T) {
	path, l := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "early") // never reads the body
	}))
	p := fcgi.NewPool("unix", path, 2)
	defer p.Close()
	// Go's child calls the handler on the first STDIN record; the body then
	// stalls, as a slow client's would.
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("abc"))
	out, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("POST", "/", 1<<20), Stdin: pr})
	if err != nil || !strings.HasSuffix(out, "early") {
		t.Fatalf("stdout %q, %v; want the early answer", out, err)
	}
	// The body is still open: the rest of it must not reach the worker as
	// the start of another request on the same connection.
	out, err = roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)})
	if err != nil || !strings.HasSuffix(out, "early") {
		t.Fatalf("second request: stdout %q, %v", out, err)
	}
	if n := l.accepted.Load(); n != 2 {
		t.Errorf("worker accepted %d connections, want 2: the first must be discarded", n)
	}
}

func TestMalformedWorkerOutputIsAProtocolError(t *testing.T) {
	stdout := record(fcgi.TypeStdout, 1, []byte("Status: 200 OK\r\n\r\nhi"))
	tests := []struct {
		name   string
		answer []byte
		cause  fcgi.ProtocolCause
	}{
		{"version 2", append([]byte{2, 6, 0, 1, 0, 0, 0, 0}, endRequest(0, 0)...), fcgi.CauseBadVersion},
		{"unknown record type 200", append([]byte{1, 200, 0, 1, 0, 0, 0, 0}, endRequest(0, 0)...), fcgi.CauseUnknownType},
		{"record for another request", append(record(fcgi.TypeStdout, 2, []byte("x")), endRequest(0, 0)...), fcgi.CauseWrongRequestID},
		{"management record mid-request", append(record(fcgi.TypeUnknownType, 0, make([]byte, 8)), endRequest(0, 0)...), fcgi.CauseUnexpectedRecord},
		{"a record only a server sends", append(record(fcgi.TypeParams, 1, nil), endRequest(0, 0)...), fcgi.CauseUnexpectedRecord},
		{"END_REQUEST of 4 bytes", append(stdout, record(fcgi.TypeEndRequest, 1, []byte{0, 0, 0, 0})...), fcgi.CauseBadEndRequest},
		{"stdout after its end", append(append(append(stdout, record(fcgi.TypeStdout, 1, nil)...), stdout...), endRequest(0, 0)...), fcgi.CauseUnexpectedRecord},
		{"closed before END_REQUEST", stdout, fcgi.CauseTruncated},
		{"closed inside a record", stdout[:12], fcgi.CauseTruncated},
		{"closed inside a header", append(stdout, 1, 3, 0), fcgi.CauseTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := startScriptedWorker(t, func(c net.Conn) { c.Write(tt.answer) })
			p := fcgi.NewPool("unix", path, 2)
			defer p.Close()
			_, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)})
			var pe *fcgi.ProtocolError
			if !errors.As(err, &pe) || pe.Cause != tt.cause {
				t.Fatalf("error %v, want a *ProtocolError with cause %q", err, tt.cause)
			}
			if s := p.Stats(); s.Idle != 0 || s.Discarded != 1 {
				t.Errorf("pool %+v after a protocol error, want the connection discarded", s)
			}
		})
	}
}

func TestRejectedRequestIsATypedError(t *testing.T) {
	tests := []struct {
		status   fcgi.ProtocolStatus
		sentinel error
		http     int
	}{
		{fcgi.StatusCantMultiplex, fcgi.ErrCantMultiplex, http.StatusBadGateway},
		{fcgi.StatusOverloaded, fcgi.ErrOverloaded, http.StatusServiceUnavailable},
		{fcgi.StatusUnknownRole, fcgi.ErrUnknownRole, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.status.String(), func(t *testing.T) {
			path, _ := startScriptedWorker(t, func(c net.Conn) { c.Write(endRequest(7, tt.status)) })
			c := dialConn(t, path)
			_, err := roundTrip(testContext(t), c.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)})
			var re *fcgi.RejectedError
			if !errors.As(err, &re) || re.Status != tt.status || re.AppStatus != 7 || !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %v, want a *RejectedError %s with app status 7", err, tt.status)
			}
			if re.HTTPStatus() != tt.http {
				t.Errorf("HTTPStatus() = %d, want %d", re.HTTPStatus(), tt.http)
			}
		})
	}
}

func TestAppStatusIsReportedAfterTheStream(t *testing.T) {
	path, _ := startScriptedWorker(t, func(c net.Conn) {
		c.Write(append(record(fcgi.TypeStdout, 1, []byte("Status: 200 OK\r\n\r\n")), endRequest(3, fcgi.StatusRequestComplete)...))
	})
	c := dialConn(t, path)
	resp, err := c.Do(testContext(t), &fcgi.Request{Params: cgiParams("GET", "/", -1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp); err != nil {
		t.Fatal(err)
	}
	if got := resp.AppStatus(); got != 3 {
		t.Errorf("AppStatus() = %d, want 3", got)
	}
}

func TestStderrArrivesAsLines(t *testing.T) {
	long := strings.Repeat("x", 5000)
	path, _ := startScriptedWorker(t, func(c net.Conn) {
		var b []byte
		b = append(b, record(fcgi.TypeStderr, 1, []byte("line one\nline tw"))...)
		b = append(b, record(fcgi.TypeStdout, 1, []byte("Status: 200 OK\r\n\r\n"))...)
		b = append(b, record(fcgi.TypeStderr, 1, []byte("o\r\n"+long+"\npartial"))...)
		b = append(b, record(fcgi.TypeStdout, 1, nil)...)
		b = append(b, record(fcgi.TypeStderr, 1, nil)...)
		c.Write(append(b, endRequest(0, 0)...))
	})
	c := dialConn(t, path)
	var lines []string
	out, err := roundTrip(testContext(t), c.Do, &fcgi.Request{
		Params: cgiParams("GET", "/", -1),
		Stderr: func(line string) { lines = append(lines, line) },
	})
	if err != nil || out != "Status: 200 OK\r\n\r\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	want := []string{"line one", "line two", long[:4096], long[4096:], "partial"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("stderr lines %q,\nwant %q", lines, want)
	}
}

func TestGoWorkerStderrReachesTheCallback(t *testing.T) {
	// Go's child reports a request it cannot parse on FCGI_STDERR.
	path, _ := startGoWorker(t, http.NotFoundHandler())
	c := dialConn(t, path)
	var lines []string
	out, err := roundTrip(testContext(t), c.Do, &fcgi.Request{
		Params: []fcgi.Param{{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"}},
		Stderr: func(line string) { lines = append(lines, line) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Status: 500") || len(lines) != 1 || !strings.Contains(lines[0], "no REQUEST_METHOD") {
		t.Errorf("stdout %q, stderr %q; want a 500 and the worker's complaint", out, lines)
	}
}

func TestCancelSendsAbortRequest(t *testing.T) {
	bodyErr := make(chan error, 1)
	started := make(chan struct{})
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadFull(r.Body, make([]byte, 5))
		close(started)
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	}))
	c := dialConn(t, path)
	ctx, cancel := context.WithCancel(testContext(t))
	pr, pw := io.Pipe()
	defer pw.Close()
	resp, err := c.Do(ctx, &fcgi.Request{Params: cgiParams("POST", "/", 100), Stdin: pr})
	if err != nil {
		t.Fatal(err)
	}
	go pw.Write([]byte("hello"))
	<-started
	cancel() // the client went away
	if _, err := io.ReadAll(resp); !errors.Is(err, context.Canceled) {
		t.Errorf("response read %v, want the cancellation", err)
	}
	if err := <-bodyErr; !errors.Is(err, gofcgi.ErrRequestAborted) {
		t.Errorf("worker's body read ended with %v, want %v: ABORT_REQUEST did not arrive", err, gofcgi.ErrRequestAborted)
	}
	if !c.Broken() {
		t.Error("connection still usable after an abort")
	}
}

func TestCancelWhileWaitingForOutput(t *testing.T) {
	release := make(chan struct{})
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer close(release)
	c := dialConn(t, path)
	ctx, cancel := context.WithCancelCause(testContext(t))
	resp, err := c.Do(ctx, &fcgi.Request{Params: cgiParams("GET", "/", -1)})
	if err != nil {
		t.Fatal(err)
	}
	reason := errors.New("client disconnected")
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err = io.ReadAll(resp)
	})
	cancel(reason)
	wg.Wait()
	if !errors.Is(err, reason) {
		t.Errorf("response read %v, want the cancellation cause", err)
	}
}

func TestClosingAnUnfinishedResponseAbortsIt(t *testing.T) {
	path, l := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, &patternReader{n: 1 << 20})
	}))
	p := fcgi.NewPool("unix", path, 2)
	defer p.Close()
	resp, err := p.Do(testContext(t), &fcgi.Request{Params: cgiParams("GET", "/", -1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Close()
	if _, err := resp.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if _, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)}); err != nil {
		t.Fatal(err)
	}
	if n := l.accepted.Load(); n != 2 {
		t.Errorf("worker accepted %d connections, want 2: an aborted one is not reused", n)
	}
}

func TestBodyReadErrorAbortsTheRequest(t *testing.T) {
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	c := dialConn(t, path)
	body := http.MaxBytesReader(nil, io.NopCloser(&patternReader{n: 1 << 20}), 1000)
	_, err := roundTrip(testContext(t), c.Do, &fcgi.Request{Params: cgiParams("POST", "/", 1<<20), Stdin: body})
	var be *fcgi.BodyError
	var mbe *http.MaxBytesError
	if !errors.As(err, &be) || !errors.As(err, &mbe) {
		t.Fatalf("error %v, want a *BodyError wrapping *http.MaxBytesError", err)
	}
}

func TestUnreachableWorkerIsAConnError(t *testing.T) {
	_, err := fcgi.Dial(testContext(t), "unix", t.TempDir()+"/none.sock")
	var ce *fcgi.ConnError
	if !errors.As(err, &ce) || ce.Op != "dial" {
		t.Fatalf("error %v, want a dial *ConnError", err)
	}
	p := fcgi.NewPool("unix", t.TempDir()+"/none.sock", 1)
	defer p.Close()
	if _, err := p.Do(testContext(t), &fcgi.Request{}); !errors.As(err, &ce) || ce.Op != "dial" {
		t.Fatalf("Pool.Do error %v, want a dial *ConnError", err)
	}
}

func TestConnCarriesOneRequestAtATime(t *testing.T) {
	release := make(chan struct{})
	path, _ := startGoWorker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	c := dialConn(t, path)
	resp, err := c.Do(testContext(t), &fcgi.Request{Params: cgiParams("GET", "/", -1), KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(testContext(t), &fcgi.Request{}); !errors.Is(err, fcgi.ErrConnBusy) {
		t.Errorf("second Do = %v, want ErrConnBusy", err)
	}
	close(release)
	if _, err := io.ReadAll(resp); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(testContext(t), c.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1), KeepConn: true}); err != nil {
		t.Errorf("request after the first ended: %v", err)
	}
}

func TestPoolRedialsWhenWorkerClosedAKeptConnection(t *testing.T) {
	// This worker ignores FCGI_KEEP_CONN and closes after every request,
	// as a worker that restarted would have.
	path, l := startScriptedWorker(t, func(c net.Conn) {
		c.Write(append(record(fcgi.TypeStdout, 1, []byte("Status: 200 OK\r\n\r\n")), endRequest(0, 0)...))
	})
	p := fcgi.NewPool("unix", path, 2)
	defer p.Close()
	for i := range 3 {
		if _, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := l.accepted.Load(); n != 3 {
		t.Errorf("worker accepted %d connections, want 3", n)
	}
}

func TestValuesProbesAGoWorker(t *testing.T) {
	path, _ := startGoWorker(t, http.NotFoundHandler())
	p := fcgi.NewPool("unix", path, 1)
	defer p.Close()
	vals, err := p.Values(testContext(t), "FCGI_MPXS_CONNS")
	if err != nil {
		t.Fatal(err)
	}
	if vals["FCGI_MPXS_CONNS"] != "1" {
		t.Errorf("values %q, want FCGI_MPXS_CONNS=1 as Go's child answers", vals)
	}
	if _, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)}); err != nil {
		t.Fatal(err)
	}
}

func TestValuesRejectsAWrongAnswer(t *testing.T) {
	// The scripted worker waits for a whole request; a GET_VALUES probe is
	// a single record, so this worker answers the first record it reads.
	ln, err := net.Listen("unix", t.TempDir()+"/v.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fcgi.NewReader(c).Next()
		c.Write(record(fcgi.TypeGetValuesResult, 0, []byte{0x80, 0, 0, 0}))
	}()
	c := dialConn(t, ln.Addr().String())
	_, err = c.Values(testContext(t), "FCGI_MAX_CONNS")
	var pe *fcgi.ProtocolError
	if !errors.As(err, &pe) || pe.Cause != fcgi.CauseBadPair {
		t.Fatalf("error %v, want a malformed pair", err)
	}
}

func TestPoolDiscardsConnectionWithBytesAfterEndRequest(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/junk.sock")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		accepted.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	accepted.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			// The worker keeps the connection open but follows its
			// answer with a stray record.
			if readRequest(c) == nil {
				answer := append(record(fcgi.TypeStdout, 1, []byte("Status: 200 OK\r\n\r\n")), endRequest(0, 0)...)
				c.Write(append(answer, record(fcgi.TypeStdout, 1, []byte("stray"))...))
			}
		}
	})
	p := fcgi.NewPool("unix", ln.Addr().String(), 2)
	defer p.Close()
	for i := range 2 {
		if _, err := roundTrip(testContext(t), p.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1)}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if s := p.Stats(); s.Dialed != 2 || s.Reused != 0 {
		t.Errorf("pool %+v, want a new connection for the second request", s)
	}
}

func TestDoWithCancelledContextSendsNothing(t *testing.T) {
	path, _ := startGoWorker(t, hello)
	c := dialConn(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Do(ctx, &fcgi.Request{Params: cgiParams("GET", "/", -1), KeepConn: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want the cancellation", err)
	}
	if _, err := roundTrip(testContext(t), c.Do, &fcgi.Request{Params: cgiParams("GET", "/", -1), KeepConn: true}); err != nil {
		t.Errorf("the connection is unusable after a cancelled Do: %v", err)
	}
}
