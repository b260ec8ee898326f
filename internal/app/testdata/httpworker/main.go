// Command httpworker is an HTTP worker for the app package's tests: it
// serves on the listening socket it inherits as descriptor 3 (LISTEN_FDS=1),
// including a WebSocket echo written against RFC 6455 with the standard
// library only.
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	switch os.Getenv("WORKER_MODE") {
	case "exit":
		fmt.Fprintln(os.Stderr, "missing configuration file /etc/app.conf")
		os.Exit(4)
	case "badhttp":
		serveBadHTTP()
		return
	}
	if os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintln(os.Stderr, "httpworker: no inherited socket")
		os.Exit(2)
	}
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpworker:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "httpworker ready on", os.Getenv("SUSERVE_SOCKET"))
	err = http.Serve(l, http.HandlerFunc(handle))
	fmt.Fprintln(os.Stderr, "httpworker:", err)
	os.Exit(1)
}

func handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/app/pid":
		fmt.Fprintf(w, "%d", os.Getpid())
	case "/app/uid":
		fmt.Fprintf(w, "%d %d", os.Getuid(), os.Getpid())
	case "/app/headers":
		r.Header.Write(w)
		fmt.Fprintf(w, "Host: %s\n", r.Host)
	case "/app/echo":
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	case "/app/big":
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(&pattern{}, n))
	case "/app/ws":
		websocketEcho(w, r)
	default:
		fmt.Fprintf(w, "hello from %d", os.Getpid())
	}
}

// pattern is an endless stream of the byte sequence 0, 1, ..., 250.
type pattern struct{ off int64 }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// websocketEcho completes the opening handshake (RFC 6455 §4.2.2) and
// echoes each unfragmented text or binary frame until a close frame.
func websocketEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Header.Get("Upgrade") != "websocket" || key == "" {
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	rw.Flush()
	for {
		op, payload, err := readFrame(rw.Reader)
		if err != nil || op == 8 {
			return
		}
		// Server frames are not masked (§5.1).
		hdr := []byte{0x80 | op}
		switch n := len(payload); {
		case n < 126:
			hdr = append(hdr, byte(n))
		case n < 1<<16:
			hdr = append(hdr, 126, byte(n>>8), byte(n))
		default:
			hdr = append(hdr, 127)
			hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
		}
		rw.Write(hdr)
		rw.Write(payload)
		rw.Flush()
	}
}

func readFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	op := h[0] & 0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame too large")
	}
	var mask [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return op, p, nil
}

// serveBadHTTP answers the readiness probe properly and every other request
// with a response whose header block is not HTTP.
func serveBadHTTP() {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		os.Exit(2)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(2)
		}
		go func(c net.Conn) {
			defer c.Close()
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			if req.Method == "OPTIONS" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nThis is not a header\r\n\r\n")
		}(c)
	}
}
