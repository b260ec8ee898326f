package fcgi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	gofcgi "net/http/fcgi"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/suserve/suserve/internal/fcgi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// countingListener counts the connections a worker accepts, to tell a
// kept connection from a new one.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startGoWorker serves handler with Go's net/http/fcgi on a unix socket, the
// way a Go FastCGI program would, and returns the socket's path.
func startGoWorker(t testing.TB, handler http.Handler) (string, *countingListener) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: ul}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gofcgi.Serve(l, handler)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return path, l
}

// startScriptedWorker accepts one connection at a time on a unix socket,
// reads a whole request with the package's own record reader, and then lets
// answer write whatever bytes a misbehaving worker would. It returns the
// socket's path.
func startScriptedWorker(t testing.TB, answer func(c net.Conn)) (string, *countingListener) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scripted.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: ul}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if err := readRequest(c); err != nil {
				c.Close()
				continue
			}
			answer(c)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return path, l
}

// readRequest reads records up to and including the empty STDIN record.
func readRequest(c net.Conn) error {
	rd := fcgi.NewReader(c)
	for {
		h, err := rd.Next()
		if err != nil {
			return err
		}
		if h.Type == fcgi.TypeStdin && h.ContentLength == 0 {
			return nil
		}
	}
}

// record is the wire form of one record with its content padded to eight.
func record(t fcgi.RecordType, id uint16, content []byte) []byte {
	pad := -len(content) & 7
	b := []byte{1, byte(t), byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func endRequest(appStatus uint32, status fcgi.ProtocolStatus) []byte {
	return record(fcgi.TypeEndRequest, 1, []byte{byte(appStatus >> 24), byte(appStatus >> 16), byte(appStatus >> 8), byte(appStatus), byte(status), 0, 0, 0})
}

// cgiParams are the meta-variables of a request as the gateway would send
// them (RFC 3875 §4.1).
func cgiParams(method, uri string, bodyLen int64, extra ...fcgi.Param) []fcgi.Param {
	p := []fcgi.Param{
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"},
		{Name: "REQUEST_METHOD", Value: method},
		{Name: "REQUEST_URI", Value: uri},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "SERVER_NAME", Value: "localhost"},
		{Name: "SERVER_PORT", Value: "80"},
		{Name: "HTTP_HOST", Value: "localhost"},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"},
	}
	if bodyLen >= 0 {
		p = append(p, fcgi.Param{Name: "CONTENT_LENGTH", Value: strconv.FormatInt(bodyLen, 10)})
	}
	return append(p, extra...)
}

// roundTrip runs one request and returns all of stdout.
func roundTrip(ctx context.Context, do func(context.Context, *fcgi.Request) (*fcgi.Response, error), req *fcgi.Request) (string, error) {
	resp, err := do(ctx, req)
	if err != nil {
		return "", err
	}
	defer resp.Close()
	b, err := io.ReadAll(resp)
	return string(b), err
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n-r.off {
		p = p[:r.n-r.off]
	}
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(len(p))
	return len(p), nil
}

var errPattern = errors.New("byte differs from the pattern")

// patternChecker counts bytes written to it and checks them against the
// pattern patternReader produces.
type patternChecker struct {
	off int64
	err error
}

func (w *patternChecker) Write(p []byte) (int, error) {
	for i, c := range p {
		if c != byte((w.off+int64(i))%251) && w.err == nil {
			w.err = errPattern
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}
