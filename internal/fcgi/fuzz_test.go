package fcgi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// replayConn is a worker whose every byte is given in advance: the fuzzer's
// input, read back as the worker's side of the connection. What the client
// writes is discarded.
type replayConn struct{ r *bytes.Reader }

func (c replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c replayConn) Close() error                     { return nil }
func (c replayConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix"} }
func (c replayConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c replayConn) SetDeadline(time.Time) error      { return nil }
func (c replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c replayConn) SetWriteDeadline(time.Time) error { return nil }

func fuzzSeeds() [][]byte {
	var ok []byte
	ok = appendRecord(ok, TypeStderr, 1, []byte("warning\nmore"))
	ok = appendRecord(ok, TypeStdout, 1, []byte("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"))
	ok = appendRecord(ok, TypeStdout, 1, nil)
	ok = appendRecord(ok, TypeEndRequest, 1, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	pairs, _ := AppendPair(nil, "FCGI_MPXS_CONNS", "0")
	pairs, _ = AppendPair(pairs, string(bytes.Repeat([]byte{'n'}, 200)), "v")
	return [][]byte{
		ok,
		nil,
		{1},
		{2, 6, 0, 1, 0, 0, 0, 0},
		{1, 99, 0, 1, 0, 0, 0, 0},
		{1, 6, 0, 1, 0xff, 0xff, 0xff, 0, 'x'},
		appendRecord(nil, TypeEndRequest, 1, []byte{0, 0, 0, 9, 2, 0, 0, 0}),
		appendRecord(nil, TypeEndRequest, 1, []byte{0, 0}),
		appendRecord(nil, TypeGetValuesResult, 0, pairs),
		appendRecord(nil, TypeGetValuesResult, 0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		appendRecord(ok[:0:0], TypeStdout, 2, []byte("other request")),
	}
}

// FuzzFastCGIRecord feeds arbitrary bytes to everything that reads a
// worker's output: the record reader, the response reader, GET_VALUES and
// the name-value decoder. None may panic, hang or fail with an error that is
// not one of the package's types, and none may hold more than its fixed
// buffers whatever lengths the input claims.
func FuzzFastCGIRecord(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(runFuzzBody)
}

func runFuzzBody(t *testing.T, data []byte) {
	{
		// The record reader, content read in small pieces.
		rd := NewReader(bytes.NewReader(data))
		for {
			h, err := rd.Next()
			if err != nil {
				checkTyped(t, "Next", err)
				break
			}
			var n int
			var buf [7]byte
			for {
				m, err := rd.Read(buf[:])
				n += m
				if err == io.EOF {
					break
				}
				if err != nil {
					checkTyped(t, "Read", err)
					break
				}
			}
			if n > int(h.ContentLength) {
				t.Fatalf("read %d bytes of a record of %d", n, h.ContentLength)
			}
		}

		// A whole response.
		c := NewConn(replayConn{bytes.NewReader(data)})
		resp, err := c.Do(context.Background(), &Request{
			Params: []Param{{"REQUEST_METHOD", "GET"}},
			Stderr: func(line string) {
				if len(line) > maxStderrLine {
					t.Fatalf("stderr line of %d bytes", len(line))
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp)
		if err != nil {
			checkTyped(t, "Response.Read", err)
		}
		if n > int64(len(data)) {
			t.Fatalf("%d bytes of stdout from %d bytes of input", n, len(data))
		}
		resp.Close()

		// A GET_VALUES answer.
		c = NewConn(replayConn{bytes.NewReader(data)})
		if _, err := c.Values(context.Background(), "FCGI_MAX_CONNS"); err != nil {
			checkTyped(t, "Values", err)
		}

		// Name-value pairs, decoded from the raw bytes.
		pairs, err := DecodePairs(data, 64)
		if err != nil {
			checkTyped(t, "DecodePairs", err)
		}
		total := 0
		for _, p := range pairs {
			total += len(p.Name) + len(p.Value)
		}
		if total > len(data) {
			t.Fatalf("decoded %d bytes of pairs from %d bytes", total, len(data))
		}
	}
}

func checkTyped(t *testing.T, op string, err error) {
	t.Helper()
	var pe *ProtocolError
	var re *RejectedError
	var ce *ConnError
	if err == io.EOF || errors.As(err, &pe) || errors.As(err, &re) || errors.As(err, &ce) {
		return
	}
	t.Fatalf("%s: untyped error %T: %v", op, err, err)
}

func TestHostileWorkerCannotMakeTheClientAllocate(t *testing.T) {
	// 16 MiB of the largest records the format allows (65535 bytes of
	// content, 255 of padding), unsolicited stderr among them: the client
	// reads them through fixed buffers.
	content := bytes.Repeat([]byte{'x'}, MaxContentLength)
	var one []byte
	one = append(one, 1, byte(TypeStdout), 0, 1, 0xff, 0xff, 0xff, 0)
	one = append(one, content...)
	one = append(one, make([]byte, 255)...)
	one = append(one, 1, byte(TypeStderr), 0, 1, 0xff, 0xff, 0xff, 0)
	one = append(one, content...)
	one = append(one, make([]byte, 255)...)
	input := bytes.Repeat(one, 128)
	input = appendRecord(input, TypeEndRequest, 1, make([]byte, 8))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewConn(replayConn{bytes.NewReader(input)})
	resp, err := c.Do(context.Background(), &Request{Params: []Param{{"REQUEST_METHOD", "GET"}}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyBuffer(io.Discard, resp, make([]byte, 32<<10))
	runtime.ReadMemStats(&after)
	if err != nil || n != 128*MaxContentLength {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<10 {
		t.Errorf("reading %d MiB of records allocated %d KiB", len(input)>>20, alloc>>10)
	}
}
